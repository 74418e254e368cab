"""HTTP API of the insights app: logging in for a bearer token."""

from __future__ import annotations

from datetime import UTC

from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from insights.authentication import WWW_AUTHENTICATE
from insights.services import AccessDenied, access_token_obtain


class AuthenticateApi(APIView):
    """`POST /_rest/v4/authenticate` `{"username", "password"}` -> 200 `{"token", "expires_at"}` (24 h).

    Any refusal (unknown user, wrong password, no `insights.use_api` permission, no customer link) is the
    same 401, so the answer tells nothing about which accounts exist.
    """

    authentication_classes = []
    permission_classes = []

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        expires_at = serializers.DateTimeField(format="%Y-%m-%dT%H:%M:%SZ", default_timezone=UTC)

    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            token, raw = access_token_obtain(**serializer.validated_data)
        except AccessDenied:
            raise exceptions.AuthenticationFailed() from None
        output = self.OutputSerializer({"token": raw, "expires_at": token.expires_at})
        return Response(output.data)

    def get_authenticate_header(self, request: Request) -> str:
        # Keeps DRF's own status for the refusal at 401 (without a challenge it would downgrade it to 403).
        return WWW_AUTHENTICATE
