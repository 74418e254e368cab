"""The one exception handler: every API error leaves as {"code": <status>, "message": ...}."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)

UNAUTHORIZED_BODY = {"code": 401, "error": "Unauthorized"}


class ApiError(exceptions.APIException):
    """An error whose `message` is sent as is (a string or an object), with `status_code`."""

    def __init__(
        self,
        message: Any,
        *,
        status_code: int = status.HTTP_400_BAD_REQUEST,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail="")
        self.message = message
        self.status_code = status_code
        self.headers = headers or {}

    @property
    def body(self) -> Any:
        return {"code": self.status_code, "message": self.message}


def _detail_message(detail: Any) -> Any:
    """DRF's ErrorDetail tree as plain strings and containers."""
    if isinstance(detail, list):
        return [_detail_message(d) for d in detail]
    if isinstance(detail, dict):
        return {k: _detail_message(v) for k, v in detail.items()}
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):  # Django's own body limit, met before our parser can count
        return Response(
            {
                "code": 413,
                "message": f"Request body too large: the limit is {settings.API_MAX_BODY_BYTES} bytes.",
            },
            status=413,
        )
    if isinstance(exc, ApiError):
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
