"""Prometheus metrics: how every process records them, what each HTTP request adds, and `GET /metrics`.

Multiprocess mode: gunicorn runs several web processes and Celery several pool processes, and a scrape reaches
one web process, which must report them all. So every process writes its samples into files of its own in
settings.PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode), and `/metrics` merges the files of
every process, the workers' included: web and workers must share that directory (compose: the var volume).

A process's files are named by host name and pid (`process_identity`), not by pid alone as prometheus-client
does: in compose every container has its own pids, and the web container's process 7 and the worker
container's process 7 would write into one file and corrupt it.

A process that ends leaves its counters and histograms behind on purpose: a total must not drop because a
process exited (Prometheus would read that as a reset). Only its "live" gauge (`insights_processes`) goes, in
gunicorn's `child_exit` hook and on Celery's `worker_process_shutdown` (`process_dead`). Processes killed before
they could say so are forgotten when gunicorn or a Celery worker starts on the same host (`dead_processes_forget`;
`make run` drops their totals too, as any restart of the whole service does).

Importing this module prepares the directory and prometheus-client's value class: every module that defines
metrics imports it first (queries.metrics does).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.module_loading import import_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# insights.middleware's, not imported from there: it imports this module (for PROBES).
GetResponse = Callable[[HttpRequest], HttpResponseBase]

_HOST = socket.gethostname().replace("_", "-")  # prometheus-client splits file names at "_"


def process_identity(pid: int | None = None) -> str:
    """What names a process's metric files: its host and its pid (this process's by default)."""
    return f"{_HOST}-{os.getpid() if pid is None else pid}"


def _multiprocess_prepare() -> None:
    directory = Path(settings.PROMETHEUS_MULTIPROC_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    # Settings put it there already; this covers a process that changed the setting after start (a test).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # Set explicitly rather than left to prometheus-client's import: whatever imported it first, before or
    # after the settings set the variable, every value from here on is written to the shared files.
    values.ValueClass = values.MultiProcessValue(process_identifier=process_identity)


_multiprocess_prepare()

PROCESSES = Gauge(
    "insights_processes",
    "Live processes of the service, by role (web: gunicorn workers; worker: Celery pool processes).",
    ["role"],
    multiprocess_mode="livesum",
)
HTTP_REQUESTS = Counter(
    "insights_http_requests",
    "HTTP requests answered, by method, route (the URL pattern, <unmatched> for none) and status.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "insights_http_request_duration_seconds",
    "Time to answer an HTTP request (until the response starts: a streamed download's body is not counted).",
    ["route"],
)

UNMATCHED = "<unmatched>"
# Any other method (a client may send any token) is counted as "other": labels must stay few.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(request: HttpRequest) -> str:
    """The URL pattern that answered (`_rest/v4/dwh/Q/<str:guid>/status`), never the path: one series per
    route, not per guid. Requests answered before URL resolution (static files, redirects to HTTPS, rejected
    hosts) or matching no pattern are UNMATCHED."""
    match = request.resolver_match
    if match is None:
        return UNMATCHED
    return match.route or "/"  # the root pattern is the empty string


def http_metrics(get_response: GetResponse) -> GetResponse:
    """Count every request and time it. Per request: two clock reads and two in-memory writes (an mmap, under
    prometheus-client's one lock per process); no database, no file system call, so status polling stays
    as cheap as it was."""

    def middleware(request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = get_response(request)
        route = route_label(request)
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)
        return response

    return middleware


# -- GET /metrics -------------------------------------------------------------------------------------------

# A request that came through a proxy is not a local client, even when the proxy runs on this host.
_PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Every process's metrics, merged, plus the gauges of settings.METRICS_COLLECTORS (read now, once).

    Answered before the host checks (insights.middleware.PROBES), for a scraper inside the deployment. With
    METRICS_TOKEN set it takes `Authorization: Bearer <token>` (else 401, whatever was wrong); without one it
    answers only loopback clients that came through no proxy (else 403), so `make run` needs no setup and a
    deployment exposes nothing it did not choose to."""
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
    for dotted_path in settings.METRICS_COLLECTORS:
        registry.register(import_string(dotted_path)())
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(registry), content_type=content_type)


def _refusal(request: HttpRequest) -> HttpResponse | None:
    token = str(settings.METRICS_TOKEN)
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        response = HttpResponse("401 Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if _loopback(request):
        return None
    return HttpResponse(
        "403 Forbidden: without METRICS_TOKEN, /metrics answers only local requests\n",
        status=403,
        content_type="text/plain",
    )


def _loopback(request: HttpRequest) -> bool:
    if any(header in request.META for header in _PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


# -- process lifetimes --------------------------------------------------------------------------------------


def process_live(role: str) -> None:
    """This process is one of the service's `role` processes until it ends (gunicorn's post_worker_init,
    Celery's worker_process_init)."""
    PROCESSES.labels(role).set(1)


def process_dead(pid: int) -> None:
    """The process `pid` of this host ended: its live gauge goes (its totals stay)."""
    mark_process_dead(process_identity(pid), settings.PROMETHEUS_MULTIPROC_DIR)


def dead_processes_forget(*, totals: bool = False) -> int:
    """Remove the files of this host's processes that are gone without saying so (a SIGKILL, a container
    killed and restarted): their live gauges, and with `totals` their counters and histograms too. Returns
    the number of files removed. Another host's files are never touched: its pids mean nothing here."""
    removed = 0
    for path in Path(settings.PROMETHEUS_MULTIPROC_DIR).glob("*.db"):
        host, _, pid = path.stem.rpartition("_")[2].rpartition("-")
        if host != _HOST or not pid.isdigit() or _alive(int(pid)):
            continue
        if totals or path.name.startswith("gauge_live"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True
