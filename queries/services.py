"""Writes on QueryRequest from the API and the admin: create (with the concurrency slot) and cancel.

A run's own transitions (claim, heartbeat, complete, fail, the reaper's) live in queries.lifecycle.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from exports.errors import StorageError
from insights.models import Customer
from queries.compiler import query_compile
from queries.delivery import query_storage
from queries.dispatch import query_enqueue
from queries.errors import ConcurrencyLimitReached, ResultUnavailable
from queries.export_settings import KEYS as EXPORT_KEYS
from queries.export_settings import export_settings_split
from queries.lifecycle import query_cancel, query_deleted
from queries.models import QueryRequest, QueryStatus
from queries.plan import plan_build
from queries.queue_eta import slots_held
from queries.reuse import result_keys, reuses_expire
from queries.slicing import slice_plan
from queries.validation import query_validate
from queries.warehouse import warehouse_dialect
from queries.webhook_events import query_event_emit

__all__ = ["body_text", "export_delete", "query_cancel", "query_create"]

logger = logging.getLogger(__name__)


def body_text(body: Any) -> str:
    """The body as stored: JSON text in the customer's own key order, ASCII-only so any text column holds
    it (a `\\u0000` in a customer's string stays an escape)."""
    return json.dumps(body, ensure_ascii=True)


def query_create(
    *, customer: Customer, body: Any, author: str = "", max_window: timedelta | None = None
) -> QueryRequest:
    """Validate and compile the body once, take a slot and persist the plan a run will execute; the run is
    enqueued once the row is committed (a failed hand-over still answers: the reaper sends it again).
    `author` is who asked (an API key's or a user's name). `max_window` replaces the customer's widest window
    (a schedule's calendar month is 31 local days, and in UTC also the hour a DST change adds: schedules.runs).

    Raises QueryValidationError (400) or ConcurrencyLimitReached (429).
    """
    export, query_body = export_settings_split(body)
    widest = max_window if max_window is not None else timedelta(days=customer.max_window_days)
    query_spec = query_validate(query_body, max_window=widest, settings_keys=EXPORT_KEYS)
    # The hidden summary columns ride along: the export counts its summary in the same pass (exports.summary).
    statement = query_compile(query_spec, customer_id=customer.key, dialect=warehouse_dialect(), summary=True)
    display = export.output.get("header") == "display"
    titles = [field.display_name if display else field.name for field in query_spec.columns]
    slices = slice_plan(query_spec, customer_id=customer.key, dialect=warehouse_dialect())
    plan = plan_build(query_spec, statement, output=export.output, titles=titles, slices=slices)
    with transaction.atomic():
        # The customer row lock serialises concurrent POSTs of one customer on PostgreSQL; on SQLite the
        # IMMEDIATE transaction mode (settings) takes the write lock at BEGIN, which serialises them too.
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        live = slots_held(locked).count()  # Pending queries, reuses following another's run aside
        if live >= locked.max_concurrent_queries:
            raise ConcurrencyLimitReached(locked.max_concurrent_queries)
        created = QueryRequest.objects.create(
            customer=locked,
            body=body_text(body),
            fingerprint=query_spec.fingerprint,
            plan=plan,
            output=export.output,
            description=export.description,
            filename=export.filename,
            author=author[:150],
            enqueued_at=timezone.now(),
        )
        query_event_emit(query_id=created.pk, type="query.submitted")  # delivered once this commits
        transaction.on_commit(lambda: query_enqueue(query_id=created.pk))
    return created


def export_delete(*, query: QueryRequest) -> QueryRequest:
    """DELETE /dwh/exports/{guid}: a Pending query is canceled; an ended one becomes Deleted and its files go
    from its destination, manifest last. Idempotent: a delete that failed midway (a storage that could not be
    reached) is finished by the next one. Raises ResultUnavailable (503) when the files cannot be removed yet."""
    if query.status == QueryStatus.PENDING:
        # Canceled at once, or flagged for its worker, which stops it within a heartbeat: delete again then.
        return query_cancel(query=query)
    query_deleted(query=query)
    query_event_emit(query_id=query.pk, type="query.deleted")
    reuses_expire(original=query)
    keys, manifest = result_keys(query)  # a reuse's parts are its original's: it owns its manifest only
    try:
        with query_storage(query) as storage:
            storage.delete(keys)
            if manifest:
                storage.delete([manifest])
    except StorageError as error:
        logger.warning("query %s: its files could not be deleted yet: %s", query.guid, error)
        raise ResultUnavailable(
            "The result's files could not be deleted yet; send the DELETE again."
        ) from None
    query.refresh_from_db()
    return query
