"""DRF authentication and permission for the customer API: `Authorization: Bearer <API key or token>`.

`request.auth` is the Customer the call acts for; `request.user` is the Django user (access tokens) or an
`ApiKeyPrincipal` (API keys). Every failure ends as 401 `{"code": 401, "error": "Unauthorized"}` through
`insights.errors.exception_handler`.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from rest_framework import authentication, exceptions, permissions

from insights.models import Customer
from insights.services import Credential, credential_resolve
from insights.throttling import auth_failure_record, auth_failures_check

if TYPE_CHECKING:  # DRF imports this module while rest_framework.views is still loading
    from rest_framework.request import Request
    from rest_framework.views import APIView

BEARER = b"bearer"
WWW_AUTHENTICATE = 'Bearer realm="insights"'


class BearerAuthentication(authentication.BaseAuthentication):
    """Resolves `Authorization: Bearer <credential>` to `(principal, customer)`.

    No Authorization header, or another scheme, returns None (DRF's convention: not ours to judge), and the
    IsCustomer permission then answers 401. A Bearer header that is malformed or names no valid credential
    raises AuthenticationFailed.
    """

    def authenticate(self, request: Request) -> tuple[Any, Customer] | None:
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() != BEARER:
            return None
        try:
            return self._resolve(parts)
        except exceptions.AuthenticationFailed:
            # Counted and checked on the failure path only, so a valid request costs no cache round trip:
            # keys carry 256 random bits, so the limit is against load and scanning, not against guessing.
            auth_failures_check(request._request)
            auth_failure_record(request._request)
            raise

    def _resolve(self, parts: list[bytes]) -> tuple[Any, Customer]:
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.") from None
        credential = RECENT.resolve(raw)
        if credential is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked credential.")
        return credential.principal, credential.customer

    def authenticate_header(self, request: Request) -> str:
        # A non-empty challenge makes DRF answer 401 rather than 403 when no credential was sent.
        return WWW_AUTHENTICATE


class RecentCredentials:
    """Credentials this process resolved in the last AUTH_CACHE_SECONDS (default 1 s; 0 turns it off).

    A client polling a status endpoint presents the same credential many times a second; without this, its
    lookup is half of each poll's database time. The price is bounded staleness: revoking a key or token,
    deactivating a customer or user, or a token's expiry takes effect in every process within that lifetime.
    Only valid credentials are kept (an unknown one is looked up every time and counted as a failure), keyed
    by the credential itself, in this process's memory only; at most MAX_ENTRIES, then it starts over.
    """

    MAX_ENTRIES = 4096

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[float, Credential]] = {}
        self._lock = threading.Lock()

    def resolve(self, raw: str) -> Credential | None:
        lifetime = float(settings.AUTH_CACHE_SECONDS)
        now = self._clock()
        entry = self._entries.get(raw)
        if entry is not None and entry[0] > now:
            return entry[1]
        credential = credential_resolve(raw)
        with self._lock:
            if credential is None or lifetime <= 0:
                self._entries.pop(raw, None)
                return credential
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[raw] = (now + lifetime, credential)
        return credential

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


RECENT = RecentCredentials()


class IsCustomer(permissions.BasePermission):
    """The request was authenticated for a customer (by BearerAuthentication)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, Customer)
