"""`Idempotency-Key` on POST /dwh/Q: a client that retries a POST (after a timeout, a dropped connection) gets
the query its first POST created, not a second job.

- The key: 1 to 255 printable ASCII characters, no space at either end (anything else is a 400); keys are
  per customer.
- The same key with the same body within IDEMPOTENCY_KEY_HOURS: the same guid, 200 instead of 201, nothing new
  created or enqueued. "The same body" is the query's fingerprint (queries.spec: key order, condition order,
  both filter layouts and equivalent bounds do not matter) together with the export's settings (output,
  description, filename); `max_age` and the URL's parameters are how to answer, not what is asked.
- The same key with another body: 422 in the error envelope, naming the query the key belongs to.
- An older key is forgotten: the next POST with it creates a query again.

The check and the record happen inside the transaction that holds the customer's row lock (queries.submission),
the lock that already serialises a customer's POSTs for the concurrency limit: of concurrent POSTs with one
key, exactly one creates the query and takes a slot; the others find its key.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from insights.models import Customer
from queries.errors import QueryError
from queries.export_settings import ExportSettings
from queries.models import IdempotencyKey, QueryRequest
from queries.validation import QueryValidationError

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Printable ASCII; no space at either end, which HTTP would strip from a header value anyway.
KEY_PATTERN = r"^[!-~]([ -~]*[!-~])?$"
_KEY = re.compile(KEY_PATTERN)


class IdempotencyKeyReused(QueryError):
    """The key was used with another body (422)."""

    status_code = 422


def idempotency_key_read(value: str | None) -> str | None:
    """The header's key, or None without one; QueryValidationError (400) for a key that is not 1 to 255
    printable ASCII characters (with no space at either end)."""
    if value is None:
        return None
    if len(value) > MAX_KEY_LENGTH or not _KEY.fullmatch(value):
        raise QueryValidationError(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters, with no space at either end."
        )
    return value


def request_fingerprint(*, query_fingerprint: str, export: ExportSettings) -> str:
    """What makes two POSTs "the same body" for a key: the query's fingerprint and the export's settings."""
    identity = {
        "query": query_fingerprint,
        "output": export.output,
        "description": export.description,
        "filename": export.filename,
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def idempotent_replay(*, customer: Customer, key: str, fingerprint: str) -> QueryRequest | None:
    """The query an earlier POST of the customer made with this key, if the key is still remembered; None when
    it is new (or forgotten). Raises IdempotencyKeyReused when it came with another body. Call it with the
    customer's row locked (see the module docstring)."""
    remembered = (
        IdempotencyKey.objects.filter(customer_id=customer.pk, key=key, created_at__gte=_oldest_remembered())
        .select_related("query")
        .first()
    )
    if remembered is None:
        return None
    if remembered.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            f"This {HEADER} was used within the last {settings.IDEMPOTENCY_KEY_HOURS} h with another body "
            f"(query {remembered.query.guid}); send a new key for a new query."
        )
    return remembered.query


def idempotency_key_record(*, customer: Customer, key: str, fingerprint: str, query: QueryRequest) -> None:
    """Remember the key for `query`, replacing a forgotten one of the same name; the customer's other forgotten
    keys are dropped on the way. Call it in the transaction that created the query."""
    IdempotencyKey.objects.filter(customer_id=customer.pk, created_at__lt=_oldest_remembered()).delete()
    IdempotencyKey.objects.create(
        customer_id=customer.pk, key=key, request_fingerprint=fingerprint, query=query
    )


def _oldest_remembered() -> datetime:
    return timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
