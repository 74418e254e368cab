"""Throttling of failed authentication: a client that keeps presenting bad credentials is answered 429.

A fixed one-minute window per client address, counted in the shared cache (Redis in production), so every
web process sees the same count. Successful requests are never counted. When the cache cannot be reached the
throttle stands aside (logged): a refused credential stays a 401 and a good one still works; the limit is a
guard against load and scanning, not what keeps an account safe.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from rest_framework import exceptions

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


def _client(request: HttpRequest) -> str:
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return str(request.META.get("REMOTE_ADDR", "unknown"))


def _key(request: HttpRequest) -> tuple[str, int]:
    window = int(time.time() // WINDOW_SECONDS)
    wait = (window + 1) * WINDOW_SECONDS - int(time.time())
    return f"insights:auth-failures:{_client(request)}:{window}", max(wait, 1)


def auth_failures_exceeded(request: HttpRequest) -> int | None:
    """Seconds until the client may try again, once its failures this minute reached the limit; else None."""
    key, wait = _key(request)
    try:
        failures = int(cache.get(key, 0))
    except Exception:  # the cache backend's own errors (redis.ConnectionError, OSError): fail open
        logger.warning(
            "failed-authentication throttle: the cache is unavailable; not throttling", exc_info=True
        )
        return None
    return wait if failures >= settings.AUTH_FAILURES_PER_MINUTE else None


def auth_failures_check(request: HttpRequest) -> None:
    """Raise Throttled (429, with Retry-After) once the client's failures this minute reached the limit."""
    wait = auth_failures_exceeded(request)
    if wait is not None:
        raise exceptions.Throttled(wait=wait, detail="Too many failed authentication attempts; retry later.")


def auth_failure_record(request: HttpRequest) -> None:
    key, _ = _key(request)
    try:
        if not cache.add(key, 1, timeout=WINDOW_SECONDS * 2):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=WINDOW_SECONDS * 2)
    except Exception:  # see auth_failures_exceeded: the cache being down must not turn a 401 into a 500
        logger.warning(
            "failed-authentication throttle: the cache is unavailable; failure not counted", exc_info=True
        )
