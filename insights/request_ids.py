"""A request id on every web log line and on every response (`X-Request-ID`), so a client's report, the access
line and whatever the request logged meet on one value.

A sane incoming `X-Request-ID` (a proxy's or the client's) is kept; anything else gets a new one. The id stays
bound until the server closes the response (Django's `request_finished`), not just until the view returns:
Django logs a 4xx/5xx after the last middleware has returned, a streamed body is read later still, and gunicorn
writes its access line before it closes the response. Status polling runs through here, so it is cheap: one
regex match or 8 random bytes, no uuid, no database.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponseBase

from insights.logs import log_context_clear, log_context_set

GetResponse = Callable[[HttpRequest], HttpResponseBase]

HEADER = "X-Request-ID"
_META_KEY = "HTTP_X_REQUEST_ID"
# Printable ASCII without spaces, up to 64 characters: a uuid, a trace id or a proxy's id fits; a value that
# could break a log line or a response header (CR, LF, quotes of another encoding) does not.
_SANE = re.compile(r"[!-~]{1,64}")


def request_id_from(incoming: str | None) -> str:
    """The incoming id if it is sane, else a new one (16 hex characters)."""
    if incoming and _SANE.fullmatch(incoming):
        return incoming
    return os.urandom(8).hex()


def request_ids(get_response: GetResponse) -> GetResponse:
    def middleware(request: HttpRequest) -> HttpResponseBase:
        request_id = request_id_from(request.META.get(_META_KEY))
        log_context_set(request_id=request_id)
        response = get_response(request)
        response[HEADER] = request_id
        return response

    return middleware


def _request_id_clear(**kwargs: object) -> None:
    log_context_clear()


request_finished.connect(_request_id_clear, dispatch_uid="insights.request_ids.clear")
