"""Writes on QueryRequest from the API and the admin: create (with the concurrency slot) and cancel.

A run's own transitions (claim, heartbeat, complete, fail, the reaper's) live in queries.lifecycle.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from insights.models import Customer
from queries.compiler import query_compile
from queries.dispatch import query_enqueue
from queries.errors import ConcurrencyLimitReached
from queries.lifecycle import query_cancel
from queries.models import QueryRequest, QueryStatus
from queries.plan import plan_build
from queries.validation import query_validate
from queries.warehouse import warehouse_dialect

__all__ = ["body_text", "query_cancel", "query_create"]


def body_text(body: Any) -> str:
    """The body as stored: JSON text in the customer's own key order, ASCII-only so any text column holds
    it (a `\\u0000` in a customer's string stays an escape)."""
    return json.dumps(body, ensure_ascii=True)


def query_create(*, customer: Customer, body: Any) -> QueryRequest:
    """Validate and compile the body once, take a slot and persist the plan a run will execute; the run is
    enqueued once the row is committed (a failed hand-over still answers: the reaper sends it again).

    Raises QueryValidationError (400) or ConcurrencyLimitReached (429).
    """
    query_spec = query_validate(body, max_window=timedelta(days=customer.max_window_days))
    statement = query_compile(query_spec, customer_id=customer.key, dialect=warehouse_dialect())
    plan = plan_build(query_spec, statement)
    with transaction.atomic():
        # The customer row lock serialises concurrent POSTs of one customer on PostgreSQL; on SQLite the
        # IMMEDIATE transaction mode (settings) takes the write lock at BEGIN, which serialises them too.
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        live = QueryRequest.objects.filter(customer=locked, status=QueryStatus.PENDING).count()
        if live >= locked.max_concurrent_queries:
            raise ConcurrencyLimitReached(locked.max_concurrent_queries)
        created = QueryRequest.objects.create(
            customer=locked,
            body=body_text(body),
            fingerprint=query_spec.fingerprint,
            plan=plan,
            enqueued_at=timezone.now(),
        )
        transaction.on_commit(lambda: query_enqueue(query_id=created.pk))
    return created
