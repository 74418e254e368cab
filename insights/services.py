"""Services for customers and their credentials: create customers, issue and revoke API keys and access
tokens, and resolve a presented bearer credential to its customer.

Credential format: `<kind>_<prefix>_<secret>`, where kind is `ik` (API key) or `it` (access token), prefix
is 8 random hex characters kept in clear for operators, and secret is 32 random bytes (urlsafe base64).
Only the SHA-256 of the whole string is stored, so a database leak yields no usable credential.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.db.models import Q
from django.utils import timezone

from insights.models import AccessToken, ApiKey, ApiUser, Customer

API_KEY_KIND = "ik"
ACCESS_TOKEN_KIND = "it"  # noqa: S105 (a tag, not a secret)
ACCESS_TOKEN_TTL = timedelta(hours=24)
# last_used_at is informational; refreshing it at most once a minute spares the database a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Far longer than any credential we issue; anything longer is refused before hashing.
MAX_CREDENTIAL_LENGTH = 200


class AccessDenied(Exception):
    """A login was refused. One type with no detail on purpose: the API must not tell a wrong password from
    a user without the permission, or a user from no user at all."""


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """`request.user` for a request made with an API key: not a Django user, but an authenticated caller."""

    api_key_id: int
    name: str
    customer_key: str

    is_authenticated: ClassVar[bool] = True
    is_anonymous: ClassVar[bool] = False
    is_active: ClassVar[bool] = True
    is_staff: ClassVar[bool] = False
    is_superuser: ClassVar[bool] = False

    def __str__(self) -> str:
        return f"API key {self.name!r} of {self.customer_key}"


@dataclass(frozen=True)
class Credential:
    """A resolved bearer credential: who is calling (`principal`) and for which customer."""

    principal: ApiKeyPrincipal | User
    customer: Customer


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _new_secret(kind: str) -> tuple[str, str]:
    """A fresh `(prefix, raw credential)` of the given kind."""
    prefix = secrets.token_hex(4)
    return prefix, f"{kind}_{prefix}_{secrets.token_urlsafe(32)}"


# Customers


def customer_create(*, key: str, name: str, max_concurrent_queries: int | None = None) -> Customer:
    """Create a customer; raises django's ValidationError on a bad or already taken key, or a bad limit."""
    customer = Customer(key=key, name=name)
    if max_concurrent_queries is not None:
        customer.max_concurrent_queries = max_concurrent_queries
    customer.full_clean()
    customer.save()
    return customer


# API keys


def api_key_create(*, customer: Customer, name: str) -> tuple[ApiKey, str]:
    """Create an API key for `customer`. Returns the row and the raw key: the only time it exists in clear,
    so the caller must show it once and drop it."""
    prefix, raw = _new_secret(API_KEY_KIND)
    api_key = ApiKey(customer=customer, name=name, prefix=prefix, hashed=_digest(raw))
    api_key.full_clean()
    api_key.save()
    return api_key, raw


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke the key from now on. Idempotent: a revoked key keeps its first revocation time."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=api_key.revoked_at)
    return api_key


# Users and access tokens


def api_user_link(*, user: User, customer: Customer) -> ApiUser:
    """Let `user` log in for `customer` (it still needs the `insights.use_api` permission)."""
    api_user, _ = ApiUser.objects.update_or_create(user=user, defaults={"customer": customer})
    return api_user


def _api_customer_of(user: User) -> Customer:
    """The active customer `user` may obtain tokens for; AccessDenied otherwise."""
    # has_perm is False for an inactive user and True for an active superuser.
    if not user.is_active or not user.has_perm("insights.use_api"):
        raise AccessDenied
    link = ApiUser.objects.select_related("customer").filter(user_id=user.pk).first()
    if link is None or not link.customer.is_active:
        raise AccessDenied
    return link.customer


def access_token_issue(*, user: User) -> tuple[AccessToken, str]:
    """Issue a 24-hour token to `user` for its linked customer; returns the row and the raw token (shown
    once). Raises AccessDenied when the user lacks the `insights.use_api` permission (superusers have it),
    an ApiUser link, or an active customer."""
    customer = _api_customer_of(user)
    prefix, raw = _new_secret(ACCESS_TOKEN_KIND)
    now = timezone.now()
    token = AccessToken.objects.create(
        customer=customer,
        user=user,
        prefix=prefix,
        hashed=_digest(raw),
        created_at=now,
        expires_at=now + ACCESS_TOKEN_TTL,
    )
    return token, raw


def access_token_obtain(*, username: str, password: str) -> tuple[AccessToken, str]:
    """Check a username and password (through Django's auth backends) and issue a token; AccessDenied on any
    refusal."""
    user = authenticate(username=username, password=password)
    if not isinstance(user, User):  # None: refused by every backend
        raise AccessDenied
    return access_token_issue(user=user)


def access_token_revoke(*, token: AccessToken) -> AccessToken:
    """Revoke the token from now on. Idempotent."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        AccessToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=token.revoked_at)
    return token


def access_token_delete_expired(*, now: datetime | None = None) -> int:
    """Delete tokens past their expiry (they can never authenticate again); returns how many.
    For a periodic (beat) task."""
    deleted, _ = AccessToken.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted


# Resolving a presented credential


def _api_key_touch(api_key: ApiKey, now: datetime) -> None:
    """Record use, at most once per LAST_USED_RESOLUTION; the conditional UPDATE makes concurrent requests
    write once between them."""
    stale_before = now - LAST_USED_RESOLUTION
    if api_key.last_used_at is not None and api_key.last_used_at >= stale_before:
        return
    ApiKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_before)
    ).update(last_used_at=now)


def _api_key_resolve(raw: str, now: datetime) -> Credential | None:
    # get() rather than filter().first(): the model's default ordering would add ORDER BY + LIMIT to a unique
    # lookup made on every request (measured: a third of the lookup's CPU).
    try:
        api_key = ApiKey.objects.select_related("customer").get(hashed=_digest(raw))
    except ApiKey.DoesNotExist:
        return None
    if api_key.revoked_at is not None or not api_key.customer.is_active:
        return None
    _api_key_touch(api_key, now)
    principal = ApiKeyPrincipal(api_key_id=api_key.pk, name=api_key.name, customer_key=api_key.customer.key)
    return Credential(principal=principal, customer=api_key.customer)


def _access_token_resolve(raw: str, now: datetime) -> Credential | None:
    try:
        token = AccessToken.objects.select_related("customer", "user").get(hashed=_digest(raw))
    except AccessToken.DoesNotExist:
        return None
    if token.revoked_at is not None or token.expires_at <= now:
        return None
    # Deactivating the user or the customer cuts its tokens off at once. (Removing the use_api permission
    # does not: checking it would cost queries on every request; revoke the tokens in the admin instead.)
    if not token.user.is_active or not token.customer.is_active:
        return None
    return Credential(principal=token.user, customer=token.customer)


def credential_resolve(raw: str) -> Credential | None:
    """The caller behind a raw bearer credential, or None when it is unknown, revoked, expired, or its
    customer (or, for a token, its user) is inactive.

    One indexed query: the kind in the credential's first characters picks the table, and the lookup is by
    the SHA-256 of the credential. No constant-time compare is needed: the database compares digests, and
    timing that comparison tells an attacker about the digest of their own guess, not about any secret.
    """
    if len(raw) > MAX_CREDENTIAL_LENGTH:
        return None
    kind, _, _ = raw.partition("_")
    now = timezone.now()
    if kind == API_KEY_KIND:
        return _api_key_resolve(raw, now)
    if kind == ACCESS_TOKEN_KIND:
        return _access_token_resolve(raw, now)
    return None


def credential_authenticate(raw: str) -> Customer | None:
    """The customer a raw bearer credential (API key or token) acts for, or None (see credential_resolve)."""
    credential = credential_resolve(raw)
    return credential.customer if credential is not None else None
