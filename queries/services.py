"""Writes on QueryRequest: create (with the concurrency slot), cancel, and the run's state transitions.

Every transition is a conditional UPDATE on (status, attempt), so two workers, a cancel and the reaper can race
without a lost update: whoever loses changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import kombu.exceptions
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from insights.models import Customer, Destination
from queries.compiler import query_compile
from queries.errors import ConcurrencyLimitReached, QueryConflict
from queries.models import QueryRequest, QueryStatus
from queries.validation import query_validate
from queries.warehouse import warehouse_dialect

logger = logging.getLogger(__name__)


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.QUERY_LEASE_SECONDS)


def query_create(*, customer: Customer, body: Any) -> QueryRequest:
    """Validate, compile, take a slot and persist; the run is enqueued once the row is committed.

    Raises QueryValidationError (400) or ConcurrencyLimitReached (429).
    """
    query = query_validate(body, max_window=timedelta(days=customer.max_window_days))
    statement = query_compile(query, customer_id=customer.key, dialect=warehouse_dialect())
    with transaction.atomic():
        # The customer row lock serialises concurrent POSTs of one customer on PostgreSQL; on SQLite the
        # IMMEDIATE transaction mode (settings) takes the write lock at BEGIN, which serialises them too.
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        live = QueryRequest.objects.filter(customer=locked, status=QueryStatus.PENDING).count()
        if live >= locked.max_concurrent_queries:
            raise ConcurrencyLimitReached(locked.max_concurrent_queries)
        request = QueryRequest.objects.create(
            customer=locked, body=body, fingerprint=query.fingerprint, compiled_sql=statement.sql
        )
        transaction.on_commit(lambda: query_enqueue(query_id=request.pk))
    return request


def query_enqueue(*, query_id: int) -> None:
    from queries.tasks import query_run_task  # tasks import services: import here to keep the graph acyclic

    try:
        query_run_task.delay(query_id)
    except kombu.exceptions.OperationalError:
        # The query is committed: the reaper enqueues it once it has waited QUERY_REQUEUE_AFTER_SECONDS.
        logger.warning(
            "query %s: the broker is unreachable; the reaper will enqueue it", query_id, exc_info=True
        )


def query_cancel(*, request: QueryRequest) -> QueryRequest:
    """Cancel a pending query. Idempotent; a finished query is a QueryConflict (409).

    A query no worker holds ends Canceled at once; a running one is flagged and its worker stops the warehouse
    query, removes its temporary files and ends it Canceled (freeing the slot) within a heartbeat.
    """
    now = timezone.now()
    if request.status == QueryStatus.CANCELED:
        return request
    if request.status != QueryStatus.PENDING:
        raise QueryConflict(f"Query {request.guid} already finished with status {request.status}.")
    unheld = QueryRequest.objects.filter(pk=request.pk, status=QueryStatus.PENDING).exclude(
        lease_expires_at__gt=now
    )
    ended = unheld.update(
        status=QueryStatus.CANCELED,
        cancel_requested=True,
        finished_at=now,
        messages=["Canceled at the customer's request."],
    )
    if not ended:
        QueryRequest.objects.filter(pk=request.pk, status=QueryStatus.PENDING).update(cancel_requested=True)
    request.refresh_from_db()
    if request.status not in (QueryStatus.PENDING, QueryStatus.CANCELED):
        raise QueryConflict(f"Query {request.guid} already finished with status {request.status}.")
    return request


@dataclass(frozen=True)
class Claim:
    request: QueryRequest
    attempt: int


def query_claim(*, query_id: int) -> Claim | None:
    """Take the run lease of a pending query no live worker holds; None if there is nothing to do."""
    now = timezone.now()
    claimable = QueryRequest.objects.filter(pk=query_id, status=QueryStatus.PENDING, cancel_requested=False)
    claimable = claimable.exclude(lease_expires_at__gt=now)
    taken = claimable.update(
        attempts=F("attempts") + 1, lease_expires_at=now + lease_duration(), started_at=now
    )
    if not taken:
        return None
    request = QueryRequest.objects.select_related("customer").get(pk=query_id)
    return Claim(request=request, attempt=request.attempts)


def query_heartbeat(*, claim: Claim, rows: int, bytes_written: int) -> bool:
    """Extend the lease and record progress; False when the lease is lost or a cancel was asked for."""
    return _renew(claim, progress_rows=rows, progress_bytes=bytes_written)


def query_lease_renew(*, claim: Claim) -> bool:
    """Extend the lease if this attempt still holds it and no cancel was asked for (the publish fence)."""
    return _renew(claim)


def query_complete(
    *,
    claim: Claim,
    files: list[dict[str, Any]],
    manifest_path: str,
    rows: int,
    bytes_written: int,
    destination: Destination | None = None,
) -> bool:
    """Record the published result, if this attempt still holds the lease (the fencing check)."""
    return _finish(
        claim,
        status=QueryStatus.COMPLETED,
        messages=[],
        files=files,
        manifest_path=manifest_path,
        row_count=rows,
        progress_rows=rows,
        progress_bytes=bytes_written,
        destination=destination,
    )


def query_delivery_attempted(*, claim: Claim) -> None:
    _held(claim).update(delivery_attempts=F("delivery_attempts") + 1)


def query_fail(*, claim: Claim, message: str, status: str = QueryStatus.FAILED) -> bool:
    return _finish(claim, status=status, messages=[message])


def _held(claim: Claim) -> Any:
    return QueryRequest.objects.filter(
        pk=claim.request.pk, status=QueryStatus.PENDING, attempts=claim.attempt
    )


def _renew(claim: Claim, **fields: Any) -> bool:
    held = _held(claim).filter(cancel_requested=False)
    return bool(held.update(lease_expires_at=timezone.now() + lease_duration(), **fields))


def _finish(claim: Claim, *, status: str, **fields: Any) -> bool:
    return bool(
        _held(claim).update(status=status, finished_at=timezone.now(), lease_expires_at=None, **fields)
    )
