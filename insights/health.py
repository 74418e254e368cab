"""Liveness and readiness probes, for compose, load balancers and orchestrators.

`GET /healthz`: the web process answers (no dependency is touched). `GET /readyz`: every dependency a request
or a run needs answers within a short timeout: the metadata database, the broker, the warehouse and the local
export storage. 503 names what failed, never how it is configured (a URL may hold a password).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from exports.engines import engine_from_url
from insights.celery import app

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 2


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {name: _outcome(name, probe) for name, probe in PROBES.items()}
    ready = all(outcome == "ok" for outcome in checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


def _outcome(name: str, probe: Callable[[], None]) -> str:
    try:
        probe()
    except Exception as error:  # a probe reports, it never raises: any failure is "not ready"
        logger.warning("readiness: %s is unavailable: %s", name, error)
        return f"unavailable ({type(error).__name__})"
    return "ok"


def _database() -> None:
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker() -> None:
    with app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=PROBE_TIMEOUT_SECONDS)


def _warehouse() -> None:
    engine = engine_from_url(settings.WAREHOUSE_URL, lake_path=settings.WAREHOUSE_LAKE_PATH)
    try:
        engine.ping()
    finally:
        engine.close()


def _storage() -> None:
    """Local export storage: downloads of local results are read from it, and workers write it."""
    root = Path(settings.EXPORT_LOCAL_DIR)
    root.mkdir(parents=True, exist_ok=True)
    if not os.access(root, os.R_OK | os.W_OK | os.X_OK):
        raise PermissionError("the export directory is not readable and writable")


PROBES: dict[str, Callable[[], None]] = {
    "database": _database,
    "broker": _broker,
    "warehouse": _warehouse,
    "storage": _storage,
}
