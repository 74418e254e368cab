"""The QueryRequest state machine: every change of a query's status, and of the lease that guards its run.

    Pending (queued) --claim--> Pending (leased by attempt n) --complete--> Completed --retention--> Expired
        |                          |--fail--------------------------------> Failed
        |                          |--cancel seen, time limit--------------> Canceled
        |                          |--retryable failure, attempts left-----> Pending (queued again)
        |                          `--lease expired (its worker died)------> reaper: queued again, Failed once
        |                                                                   the attempts are spent, Canceled if
        |                                                                   a cancel was asked for; a run that
        |                                                                   died mid-publish is first settled
        |                                                                   from its journal: Completed with its
        |                                                                   files, or rolled back
        `--cancel (no worker holds it)---------------------------------------> Canceled

Every transition is one conditional UPDATE on (status, attempt), so two workers, a cancel and the reaper can
race without a lost update: whoever loses changes nothing. The messages a customer reads for each ending are
here too, written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from insights.models import Customer
from queries.end_signals import query_end_publish
from queries.errors import QueryConflict
from queries.history import run_record
from queries.models import QueryRequest, QuerySlice, QueryStatus, SliceState
from queries.reuse import followers_of_settle
from queries.webhook_events import query_end_emit, query_event_emit

CANCELED_BY_CUSTOMER = "Canceled at the customer's request."
TIMED_OUT = (
    "The query ran longer than the time limit and was canceled; narrow the timestamp window or the filters."
)
INTERNAL_ERROR = "The query failed because of an internal error; it has been logged."


def cap_exceeded_message(customer: Customer) -> str:
    return (
        f"The result is larger than this account's per-query cap of {customer.max_bytes_per_query} bytes; "
        "narrow the timestamp window, the fields or the filters."
    )


def gave_up_message(attempts: int) -> str:
    return f"The query did not finish after {attempts} attempts; it has been logged for review."


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.QUERY_LEASE_SECONDS)


@dataclass(frozen=True)
class Claim:
    """A run's right to work on a query: `attempt` is the fencing token only its holder may write with."""

    query: QueryRequest
    attempt: int


# -- a run: claim, heartbeat, publish, end -----------------------------------------------------------------


def query_claim(*, query_id: int) -> Claim | None:
    """Take the run lease of a pending query no live worker holds; None if there is nothing to do.

    A new attempt starts from nothing: its progress counts from zero. A query whose last run died while
    publishing is not claimed until the reaper has settled that publication (see `query_publication_settle`)."""
    now = timezone.now()
    claimable = QueryRequest.objects.filter(
        pk=query_id, status=QueryStatus.PENDING, cancel_requested=False, publication__isnull=True
    )
    claimable = claimable.exclude(lease_expires_at__gt=now).exclude(_has_live_slices())
    taken = claimable.update(
        attempts=F("attempts") + 1,
        lease_expires_at=now + lease_duration(),
        started_at=now,
        progress_rows=0,
        progress_bytes=0,
    )
    if not taken:
        return None
    query = QueryRequest.objects.select_related("customer").get(pk=query_id)
    query_event_emit(query_id=query_id, type="query.started")  # once per query, whatever the attempt
    return Claim(query=query, attempt=query.attempts)


def query_heartbeat(*, claim: Claim, rows: int, bytes_written: int) -> bool:
    """Extend the lease and record progress; False when the lease is lost or a cancel was asked for."""
    return _renew(claim, progress_rows=rows, progress_bytes=bytes_written)


def query_lease_renew(*, claim: Claim) -> bool:
    """Extend the lease if this attempt still holds it and no cancel was asked for (the publish fence)."""
    return _renew(claim)


def query_delivery_attempted(*, claim: Claim) -> None:
    _held(claim).update(delivery_attempts=F("delivery_attempts") + 1)


def query_publication_record(*, claim: Claim, journal: dict[str, Any]) -> bool:
    """Write the publication journal and extend the lease, if this attempt still holds the query: the last
    step before any file gets its final name. False: the lease is lost, publish nothing."""
    return _renew(claim, publication=journal)


def query_publication_take(*, claim: Claim, journal: dict[str, Any]) -> bool:
    """As query_publication_record, for the one of a sliced run's slices that publishes: only the first to ask
    gets it (no journal written yet)."""
    return _renew(claim, publication=journal, _open=True)


def query_complete(
    *,
    claim: Claim,
    files: list[dict[str, Any]],
    manifest_path: str,
    rows: int,
    bytes_written: int,
    destination_id: int | None,
    summary: str = "",
) -> bool:
    """Record the published result and its summary (JSON text), if this attempt still holds the lease (the
    fencing check); the run is then recorded for the dry run's estimates (queries.history)."""
    completed = _finish(
        claim,
        status=QueryStatus.COMPLETED,
        messages=[],
        files=files,
        manifest_path=manifest_path,
        row_count=rows,
        progress_rows=rows,
        progress_bytes=bytes_written,
        destination_id=destination_id,
        summary=summary,
    )
    if completed:
        run_record(query_id=claim.query.pk)
    return completed


def query_completed_with(*, query_id: int, files: list[dict[str, Any]]) -> bool:
    """Whether the query ended Completed with exactly these files (a stalled run asks before removing them)."""
    completed = QueryRequest.objects.filter(pk=query_id, status=QueryStatus.COMPLETED)
    return completed.values_list("files", flat=True).first() == files


def query_fail(*, claim: Claim, message: str) -> bool:
    return _finish(claim, status=QueryStatus.FAILED, messages=[message])


def query_stopped(*, claim: Claim, timed_out: bool) -> bool:
    """The run stopped: at the time limit (Canceled, saying so), or because the customer canceled it (only if
    a cancel was asked for: a run that stopped because it lost its lease has nothing to say about the query)."""
    if timed_out:
        return _finish(claim, status=QueryStatus.CANCELED, messages=[TIMED_OUT])
    held = _held(claim).filter(cancel_requested=True)
    stopped = bool(
        held.update(
            status=QueryStatus.CANCELED,
            finished_at=timezone.now(),
            lease_expires_at=None,
            publication=None,
            messages=[CANCELED_BY_CUSTOMER],
        )
    )
    query_end_emit(query_id=claim.query.pk)  # the customer's webhook (queries.webhook_events)
    if stopped:
        followers_of_settle(original_id=claim.query.pk)  # reuses that joined it end Canceled too
    return stopped


def query_release(*, claim: Claim, message: str) -> bool:
    """A failure worth another attempt: give the lease back and mark the query queued again (True; the caller
    enqueues it), or end it Failed with `message` once QUERY_MAX_ATTEMPTS attempts are spent (False)."""
    if claim.attempt < settings.QUERY_MAX_ATTEMPTS:
        return bool(_held(claim).update(lease_expires_at=None, enqueued_at=timezone.now()))
    query_fail(claim=claim, message=message)
    return False


def _has_live_slices() -> Exists:
    """A query's current attempt has slices not done yet (queries.slice_lifecycle)."""
    live = QuerySlice.objects.filter(query=OuterRef("pk"), attempt=OuterRef("attempts")).exclude(
        state=SliceState.DONE
    )
    return Exists(live)


def _held(claim: Claim) -> QuerySet[QueryRequest]:
    return QueryRequest.objects.filter(pk=claim.query.pk, status=QueryStatus.PENDING, attempts=claim.attempt)


def _renew(claim: Claim, *, _open: bool = False, **fields: Any) -> bool:
    held = _held(claim).filter(cancel_requested=False)
    if _open:
        held = held.filter(publication__isnull=True)
    return bool(held.update(lease_expires_at=timezone.now() + lease_duration(), **fields))


def _finish(claim: Claim, *, status: str, **fields: Any) -> bool:
    finished = bool(
        _held(claim).update(
            status=status, finished_at=timezone.now(), lease_expires_at=None, publication=None, **fields
        )
    )
    if finished:
        query_end_publish(query_id=claim.query.pk)  # wakes a POST waiting for it (?wait=N)
        query_end_emit(query_id=claim.query.pk)  # the customer's webhook (queries.webhook_events)
        followers_of_settle(original_id=claim.query.pk)  # reuses that joined it take its end, and announce it
    return finished


# -- the customer: cancel -------------------------------------------------------------------------------------


def query_cancel(*, query: QueryRequest) -> QueryRequest:
    """Cancel a pending query. Idempotent; a finished query is a QueryConflict (409).

    A query no worker holds ends Canceled at once; a running one is flagged and its worker stops the warehouse
    query, removes its temporary files and ends it Canceled (freeing the slot) within a heartbeat.
    """
    now = timezone.now()
    if query.status == QueryStatus.CANCELED:
        return query
    if query.status != QueryStatus.PENDING:
        raise QueryConflict(f"Query {query.guid} already finished with status {query.status}.")
    pending = QueryRequest.objects.filter(pk=query.pk, status=QueryStatus.PENDING)
    unheld = pending.exclude(lease_expires_at__gt=now).filter(publication__isnull=True)
    ended = unheld.update(
        status=QueryStatus.CANCELED, cancel_requested=True, finished_at=now, messages=[CANCELED_BY_CUSTOMER]
    )
    if not ended:
        pending.update(cancel_requested=True)
    query.refresh_from_db()
    query_end_emit(query_id=query.pk)  # if Canceled now (a flagged run says so when it stops)
    if ended:
        followers_of_settle(original_id=query.pk)
    if query.status not in (QueryStatus.PENDING, QueryStatus.CANCELED):
        raise QueryConflict(f"Query {query.guid} already finished with status {query.status}.")
    return query


# -- the reaper: runs whose worker died, queries whose message was lost ---------------------------------------


def leases_expired(now: datetime) -> QuerySet[QueryRequest]:
    """Pending queries whose run lease expired: their worker died or froze."""
    return QueryRequest.objects.filter(status=QueryStatus.PENDING, lease_expires_at__lt=now)


def leases_expired_cancel(*, now: datetime) -> int:
    """Expired runs a cancel was asked for end Canceled (whatever their attempts), freeing their slots."""
    return (
        leases_expired(now)
        .filter(cancel_requested=True, publication__isnull=True)
        .update(
            status=QueryStatus.CANCELED,
            finished_at=now,
            lease_expires_at=None,
            messages=[CANCELED_BY_CUSTOMER],
        )
    )


def leases_expired_spent(*, now: datetime) -> int:
    """Expired runs that used their last attempt end Failed: the reaper gives up on them."""
    # A query whose slices are still to run is alive through them (queries.slice_lifecycle watches those).
    spent = leases_expired(now).filter(attempts__gte=settings.QUERY_MAX_ATTEMPTS, publication__isnull=True)
    spent = spent.exclude(_has_live_slices())
    failed = 0
    for query_id, attempts in spent.values_list("pk", "attempts"):
        failed += (
            leases_expired(now)
            .filter(pk=query_id, attempts=attempts, publication__isnull=True)
            .update(
                status=QueryStatus.FAILED,
                finished_at=now,
                lease_expires_at=None,
                messages=[gave_up_message(attempts)],
            )
        )
    return failed


def publications_interrupted(*, now: datetime) -> QuerySet[QueryRequest]:
    """Expired runs that died while publishing: their journal says what they may have placed."""
    return leases_expired(now).filter(publication__isnull=False)


def query_publication_settle(*, query: QueryRequest, now: datetime, published: bool) -> bool:
    """Settle the journal of a run that died mid-publish. `published` (every file of the journal is in place):
    the query is Completed with those files, the one result it has. Otherwise the journal is cleared (its
    files were removed) and the query goes on as any expired run. Fenced by the attempt and the expired lease."""
    journal = query.publication or {}
    stuck = publications_interrupted(now=now).filter(pk=query.pk, attempts=query.attempts)
    if not published:
        return bool(stuck.update(publication=None))
    files = journal["files"]
    return bool(
        stuck.update(
            status=QueryStatus.COMPLETED,
            finished_at=now,
            lease_expires_at=None,
            publication=None,
            messages=[],
            files=files,
            manifest_path=journal["manifest_path"],
            destination_id=journal["destination_id"],
            row_count=sum(f["rows"] for f in files),
            progress_rows=sum(f["rows"] for f in files),
            progress_bytes=sum(f["bytes"] for f in files),
            summary=journal.get("summary", ""),
        )
    )


def leases_expired_release(*, now: datetime) -> list[int]:
    """Expired runs with attempts left and no cancel: give their lease back and mark them queued again.
    Returns their ids (the caller enqueues them)."""
    retry = leases_expired(now).filter(
        attempts__lt=settings.QUERY_MAX_ATTEMPTS, cancel_requested=False, publication__isnull=True
    )
    retry = retry.exclude(_has_live_slices())
    released = []
    for query_id, attempts in retry.values_list("pk", "attempts"):
        again = retry.filter(pk=query_id, attempts=attempts)
        if again.update(lease_expires_at=None, enqueued_at=now):
            released.append(query_id)
    return released


def queries_unclaimed(*, now: datetime, all_of_them: bool = False) -> list[int]:
    """Queued queries no worker has claimed although their message was sent QUERY_REQUEUE_AFTER_SECONDS ago
    (or never reached the broker): their message was lost. `all_of_them`: every queued query, for when the
    broker is known to have lost its messages. Marks them enqueued now; returns their ids."""
    queued = QueryRequest.objects.filter(
        status=QueryStatus.PENDING, lease_expires_at__isnull=True, cancel_requested=False
    ).filter(reused_from__isnull=True)  # a reuse following another query's run is never run (queries.reuse)
    if not all_of_them:
        waited = now - timedelta(seconds=settings.QUERY_REQUEUE_AFTER_SECONDS)
        queued = queued.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=waited))
    ids = list(queued.values_list("pk", flat=True))
    queries_enqueued(ids, at=now)
    return ids


def queries_enqueued(query_ids: list[int], *, at: datetime | None) -> None:
    """Record when the queries' messages went to the broker (None: the hand-over failed)."""
    if query_ids:
        QueryRequest.objects.filter(pk__in=query_ids, status=QueryStatus.PENDING).update(enqueued_at=at)


# -- retention ----------------------------------------------------------------------------------------------------


def query_expire(*, query: QueryRequest, retention_days: int) -> bool:
    """A Completed result whose files retention deleted ends Expired."""
    return bool(
        QueryRequest.objects.filter(pk=query.pk, status=QueryStatus.COMPLETED).update(
            status=QueryStatus.EXPIRED,
            messages=[f"The result was deleted after the {retention_days}-day retention period."],
        )
    )


# -- the customer: delete ---------------------------------------------------------------------------------------

DELETED_BY_CUSTOMER = "The result was deleted at the customer's request."


def query_deleted(*, query: QueryRequest) -> bool:
    """An ended query is Deleted (its files are removed next, and again on every repeated delete until none is
    left: the file list stays on the row for that). False when it is still running (cancel it first)."""
    ended = QueryRequest.objects.filter(pk=query.pk).exclude(status=QueryStatus.PENDING)
    if ended.filter(status=QueryStatus.DELETED).exists():
        return True
    return bool(ended.update(status=QueryStatus.DELETED, messages=[DELETED_BY_CUSTOMER], publication=None))
