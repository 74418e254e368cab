"""The `Insights-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with the
webhook's secret (its UTF-8 bytes), as Stripe signs. The timestamp is signed with the body, so a receiver that
rejects old timestamps also rejects a captured request replayed later."""

from __future__ import annotations

import hashlib
import hmac
import secrets

HEADER = "Insights-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix that says what the value is, not a secret)


def secret_new() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(*, secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>`."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(*, secret: str, body: bytes, timestamp: int) -> str:
    return f"t={timestamp},v1={signature(secret=secret, body=body, timestamp=timestamp)}"


def signature_verify(*, secret: str, body: bytes, header: str, now: int, tolerance: int = 300) -> bool:
    """What a receiver does: the header's `v1` matches (compared in constant time) and its `t` is within
    `tolerance` seconds of `now`."""
    fields: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret=secret, body=body, timestamp=timestamp)
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))
