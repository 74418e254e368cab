"""Middleware that must see every request first: probes answered before host checks, HEAD without a body."""

from __future__ import annotations

import io
from collections.abc import Callable

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from insights.health import healthz, readyz
from insights.metrics import metrics_view

GetResponse = Callable[[HttpRequest], HttpResponseBase]

# Probes come from inside the deployment (compose, a load balancer, an orchestrator) with whatever Host it
# uses (127.0.0.1:8000): they are answered before ALLOWED_HOSTS, the HTTPS redirect or a session is looked at.
# So is a Prometheus scrape, which guards itself (METRICS_TOKEN).
PROBES = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics_view}


def health_probes(get_response: GetResponse) -> GetResponse:
    def middleware(request: HttpRequest) -> HttpResponseBase:
        probe = PROBES.get(request.path_info)
        return probe(request) if probe is not None else get_response(request)

    return middleware


def head_without_body(get_response: GetResponse) -> GetResponse:
    """A HEAD answer carries the headers its GET would (Content-Length included) and no body, whatever view or
    error handler made it: WSGI servers drop the bytes, but gunicorn logs a warning for each such response."""

    def middleware(request: HttpRequest) -> HttpResponseBase:
        response = get_response(request)
        if request.method != "HEAD":
            return response
        if response.streaming:
            response.streaming_content = []  # type: ignore[attr-defined]  # the original is still closed
        elif isinstance(response, HttpResponse):
            if not response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
            response.content = b""
        return response

    return middleware


def chunked_body(get_response: GetResponse) -> GetResponse:
    """A body sent with `Transfer-Encoding: chunked` (no Content-Length) is read, up to the API's body limit
    (+1 byte, so the parser still answers 413 beyond it). Django reads only Content-Length bytes, so such a
    body looked empty ("the query body must have a timestamp"). gunicorn de-chunks it and says so with
    `wsgi.input_terminated`; the body is then handed to Django as if it had come with its length."""

    def middleware(request: HttpRequest) -> HttpResponseBase:
        meta = request.META
        chunked = "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and meta.get("wsgi.input_terminated") and not meta.get("CONTENT_LENGTH"):
            raw = meta["wsgi.input"].read(int(settings.API_MAX_BODY_BYTES) + 1)
            meta["CONTENT_LENGTH"] = str(len(raw))
            request._stream = LimitedStream(io.BytesIO(raw), len(raw))  # type: ignore[assignment]
        return get_response(request)

    return middleware
