"""Secrets at rest: destination credentials encrypted with Fernet under settings.SECRETS_KEY.

Without INSIGHTS_SECRETS_KEY (only allowed on the embedded default, SQLite metadata), the key is generated at
random the first time a secret is used and kept in `$INSIGHTS_VAR_DIR/secrets.key` (mode 0600), beside the
database it protects: a copy of the database alone decrypts nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

LOCAL_KEY_FILE = "secrets.key"


def _fernet() -> Fernet:
    try:
        return Fernet(settings.SECRETS_KEY or local_key())
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "INSIGHTS_SECRETS_KEY must be a Fernet key (32 url-safe base64 bytes)"
        ) from None


def local_key() -> str:
    """The embedded default's key: read from the var dir, or generated there once. Several processes may
    race to create it: the file is written under a temporary name and linked into place, so the first one
    wins and every process reads the same key."""
    path = Path(settings.VAR_DIR) / LOCAL_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{LOCAL_KEY_FILE}.{os.getpid()}")
        temporary.unlink(missing_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(Fernet.generate_key())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
        temporary.unlink()
    return path.read_text().strip()


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
