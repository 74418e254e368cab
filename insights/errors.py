"""Errors as the API shows them: a small domain-error base, and the one exception handler that renders every
error as `{"code": <status>, "message": <string or object>}` (docs/DESIGN.md §3).

DomainError knows nothing of DRF: services, validation and selectors raise its subclasses (queries.errors,
queries.validation) with the status and headers they mean, and only this module turns them into responses.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

logger = logging.getLogger(__name__)

UNAUTHORIZED_BODY = {"code": 401, "error": "Unauthorized"}


class DomainError(Exception):
    """An error a caller is shown: `message` (a string, or an object for the documented structured ones),
    the HTTP `status_code` it means, and `headers` to send with it."""

    status_code = 400

    def __init__(
        self, message: Any, *, status_code: int | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.headers = headers or {}

    @property
    def body(self) -> Any:
        """The JSON body: the error envelope."""
        return {"code": self.status_code, "message": self.message}


class BodyTooLarge(DomainError):
    status_code = 413

    def __init__(self) -> None:
        super().__init__(f"Request body too large: the limit is {settings.API_MAX_BODY_BYTES} bytes.")


def _detail_message(detail: Any) -> Any:
    """DRF's ErrorDetail tree as plain strings and containers."""
    if isinstance(detail, list):
        return [_detail_message(d) for d in detail]
    if isinstance(detail, dict):
        return {k: _detail_message(v) for k, v in detail.items()}
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):  # Django's own body limit, met before our parser can count
        exc = BodyTooLarge()
    if isinstance(exc, DomainError):
        return Response(exc.body, status=exc.status_code, headers=exc.headers)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        auth_header = getattr(exc, "auth_header", None)
        return Response(
            UNAUTHORIZED_BODY, status=401, headers={"WWW-Authenticate": auth_header} if auth_header else None
        )
    if isinstance(exc, Http404):
        return Response({"code": 404, "message": "Not found."}, status=404)
    if isinstance(exc, exceptions.APIException):
        headers: dict[str, str] = {}
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            headers["Retry-After"] = str(int(wait) + 1)
        if isinstance(exc, exceptions.MethodNotAllowed):
            headers["Allow"] = ", ".join(context["view"].allowed_methods)
        return Response(
            {"code": exc.status_code, "message": _detail_message(exc.detail)},
            status=exc.status_code,
            headers=headers,
        )
    logger.exception("unhandled error in %s", context.get("view"))
    return Response({"code": 500, "message": "Internal error; it has been logged."}, status=500)
