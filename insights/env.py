"""Typed helpers that read settings from the environment and fail at start-up on a bad value.

An empty variable counts as unset (its default applies), as `VAR=` in a sourced `.env` file means.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name: str, default: str | None = None) -> str:
    """The variable's value, or `default`; a missing variable with no default is a start-up error."""
    value = os.environ.get(name) or None
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"{name} must be set")
        return default
    return value


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {value}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def public_url(raw: str) -> str:
    """INSIGHTS_PUBLIC_URL checked: "" (unset), or an http(s) URL with a host (and maybe a port and a path), with
    no credentials, query or fragment; returned without its trailing slash, so that an API path can follow it."""
    if not raw:
        return ""
    refused = ImproperlyConfigured(
        "INSIGHTS_PUBLIC_URL must be an http(s) URL with a host and no credentials, query or fragment, such as "
        f"https://insights.example.com, not {raw!r}"
    )
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - read for its check: a port that is not a number in range raises
    except ValueError:
        raise refused from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "?" in raw or "#" in raw:
        raise refused
    if parts.username is not None or parts.password is not None:
        raise refused
    return raw.rstrip("/")


def broker_url(raw: str) -> str:
    """CELERY_BROKER_URL as kombu should get it: `filesystem://` names no host, so kombu warned "No hostname was
    supplied" in every process; the host it falls back to (the transport ignores it) is written out."""
    return "filesystem://localhost//" if raw == "filesystem://" else raw
