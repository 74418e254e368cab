"""The admin's login page behind the same failed-login throttle as the API (per client, shared cache)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from insights.throttling import auth_failure_record, auth_failures_exceeded


def admin_login(request: HttpRequest) -> HttpResponse:
    """Django admin's login view; a client past AUTH_FAILURES_PER_MINUTE failed logins this minute is
    answered 429 (with Retry-After) before its password is even looked at."""
    if request.method == "POST":
        wait = auth_failures_exceeded(request)
        if wait is not None:
            response = HttpResponse(
                f"Too many failed logins from this address; try again in {wait} seconds.\n",
                status=429,
                content_type="text/plain; charset=utf-8",
            )
            response["Retry-After"] = str(wait)
            return response
    response = admin.site.login(request)
    if request.method == "POST" and not 300 <= response.status_code < 400:  # not redirected in: refused
        auth_failure_record(request)
    return response
