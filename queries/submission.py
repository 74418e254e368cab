"""POST /dwh/Q, whole: an `Idempotency-Key` replay (queries.idempotency), a reused result (queries.reuse), or a new
query (queries.services.query_create), decided under one lock.

The customer's row lock that query_create takes for the concurrency limit is taken first, here, around all
three: the key's lookup and record, the reuse's check that its original is still what it was, and the
creation with its slot. So concurrent POSTs of one customer with one key make one query and take one slot,
and a reuse never races the end of the query it takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction

from insights.models import Customer
from queries.export_settings import KEYS as EXPORT_KEYS
from queries.export_settings import export_settings_split
from queries.idempotency import idempotency_key_record, idempotent_replay, request_fingerprint
from queries.models import QueryRequest, QueryStatus
from queries.reuse import reuse_candidate, reuse_create, reuse_manifest_write
from queries.services import body_text, query_create
from queries.validation import query_validate


@dataclass(frozen=True, slots=True)
class Submission:
    query: QueryRequest
    created: bool  # False: an earlier POST with the same Idempotency-Key made it (200, not 201)


def query_submit(
    *,
    customer: Customer,
    body: Any,
    author: str = "",
    idempotency_key: str | None = None,
    max_age: int | None = None,
) -> Submission:
    """Submit `body` for `customer`. With `idempotency_key`: a key already used with this body returns that
    query (created False), with another body raises IdempotencyKeyReused (422). With `max_age`: a result the
    customer has, or a run it is waiting for, is taken instead of a new run (queries.reuse). Otherwise, and
    when neither applies, a new query (QueryValidationError 400, ConcurrencyLimitReached 429)."""
    if idempotency_key is None and max_age is None:
        return Submission(query=query_create(customer=customer, body=body, author=author), created=True)
    export, query_body = export_settings_split(body)
    query_spec = query_validate(
        query_body, max_window=timedelta(days=customer.max_window_days), settings_keys=EXPORT_KEYS
    )
    fingerprint = request_fingerprint(query_fingerprint=query_spec.fingerprint, export=export)
    candidate = None
    if max_age is not None:  # before the lock: it reads the storage
        candidate = reuse_candidate(customer=customer, query_spec=query_spec, export=export, max_age=max_age)
    with transaction.atomic():
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        if idempotency_key is not None:
            replay = idempotent_replay(customer=locked, key=idempotency_key, fingerprint=fingerprint)
            if replay is not None:
                return Submission(query=replay, created=False)
        query = None
        if candidate is not None:
            query = reuse_create(
                customer=locked,
                original=candidate,
                body=body_text(body),
                query_spec=query_spec,
                export=export,
                author=author,
            )
        if query is None:
            query = query_create(customer=locked, body=body, author=author)
        if idempotency_key is not None:
            idempotency_key_record(customer=locked, key=idempotency_key, fingerprint=fingerprint, query=query)
    if query.reused_from_id is not None and query.status == QueryStatus.COMPLETED:
        reuse_manifest_write(query)
        query.refresh_from_db()
    return Submission(query=query, created=True)
