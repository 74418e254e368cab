"""HTTP API of the insights app: logging in for a bearer token."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from insights.authentication import WWW_AUTHENTICATE
from insights.services import AccessDenied, access_token_obtain
from insights.throttling import auth_failure_record, auth_failures_check

UNAUTHORIZED_SCHEMA = {
    "type": "object",
    "properties": {
        "code": {"type": "integer", "enum": [401]},
        "error": {"type": "string", "enum": ["Unauthorized"]},
    },
    "required": ["code", "error"],
}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "code": {"type": "integer"},
        "message": {"oneOf": [{"type": "string"}, {"type": "object", "additionalProperties": True}]},
    },
    "required": ["code", "message"],
}


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents BearerAuthentication as the OpenAPI security scheme `Bearer` (an API key or a login token)."""

    target_class = "insights.authentication.BearerAuthentication"
    name = "Bearer"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (created in the admin) or a 24-hour token from POST /_rest/v4/authenticate.",
        }


class AuthenticateApi(APIView):
    """`POST /_rest/v4/authenticate` `{"username", "password"}` -> 200 `{"token", "expires_at"}` (24 h).

    Any refusal (unknown user, wrong password, no `insights.use_api` permission, no customer link) is the
    same 401, so the answer tells nothing about which accounts exist.
    """

    authentication_classes = []
    permission_classes = []

    @extend_schema_serializer(component_name="Credentials")
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)

    @extend_schema_serializer(component_name="AccessToken")
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        expires_at = serializers.DateTimeField(format="%Y-%m-%dT%H:%M:%SZ", default_timezone=UTC)

    @extend_schema(
        operation_id="authenticate",
        summary="Log in for a 24-hour bearer token",
        tags=["auth"],
        request=InputSerializer,
        parameters=[
            OpenApiParameter(
                "WWW-Authenticate",
                str,
                OpenApiParameter.HEADER,
                required=True,
                description=f"The challenge: {WWW_AUTHENTICATE}.",
                response=[401],
            ),
            OpenApiParameter(
                "Retry-After",
                int,
                OpenApiParameter.HEADER,
                required=True,
                description="Seconds until the client may try again.",
                response=[429],
            ),
        ],
        responses={
            200: OutputSerializer,
            400: OpenApiResponse(ERROR_SCHEMA, "The body is not JSON, or lacks username or password."),
            401: OpenApiResponse(UNAUTHORIZED_SCHEMA, "Wrong credentials, or an account without API access."),
            413: OpenApiResponse(ERROR_SCHEMA, "The body is larger than the limit (API_MAX_BODY_BYTES)."),
            415: OpenApiResponse(ERROR_SCHEMA, "The body is not application/json."),
            429: OpenApiResponse(
                ERROR_SCHEMA,
                "Too many failed logins from this client this minute: retry after Retry-After seconds.",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # Checked before the password is: a client over the limit learns nothing more this minute.
        auth_failures_check(request._request)
        try:
            token, raw = access_token_obtain(**serializer.validated_data)
        except AccessDenied:
            auth_failure_record(request._request)
            raise exceptions.AuthenticationFailed() from None
        output = self.OutputSerializer({"token": raw, "expires_at": token.expires_at})
        return Response(output.data)

    def get_authenticate_header(self, request: Request) -> str:
        # Keeps DRF's own status for the refusal at 401 (without a challenge it would downgrade it to 403).
        return WWW_AUTHENTICATE
