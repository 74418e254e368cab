"""Throttling of failed authentication: a client that keeps presenting bad credentials is answered 429.

A fixed one-minute window per client address, counted in the shared cache (Redis in production), so every
web process sees the same count. Successful requests are never counted.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from rest_framework import exceptions

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


def auth_failures_check(request: HttpRequest) -> None:
    """Raise Throttled (429, with Retry-After) once the client's failures this minute reached the limit."""
    key, wait = _key(request)
    if int(cache.get(key, 0)) >= settings.AUTH_FAILURES_PER_MINUTE:
        raise exceptions.Throttled(wait=wait, detail="Too many failed authentication attempts; retry later.")


def auth_failure_record(request: HttpRequest) -> None:
    key, _ = _key(request)
    if not cache.add(key, 1, timeout=WINDOW_SECONDS * 2):
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=WINDOW_SECONDS * 2)
