"""Secrets at rest: destination credentials encrypted with Fernet under settings.SECRETS_KEY."""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _fernet() -> Fernet:
    try:
        return Fernet(settings.SECRETS_KEY)
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "INSIGHTS_SECRETS_KEY must be a Fernet key (32 url-safe base64 bytes)"
        ) from None


def secrets_encrypt(values: dict[str, str]) -> str:
    """The non-empty values, encrypted; empty string when there is nothing to keep."""
    kept = {k: v for k, v in values.items() if v}
    return _fernet().encrypt(json.dumps(kept).encode()).decode() if kept else ""


def secrets_decrypt(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        return dict(json.loads(_fernet().decrypt(token.encode())))
    except InvalidToken:
        raise ImproperlyConfigured(
            "a destination secret cannot be decrypted: INSIGHTS_SECRETS_KEY changed since it was saved"
        ) from None
