"""The QuerySlice state machine: a big export's slices, each run by a worker of its own under the query's run.

    queued --claim--> running (leased by run r) --done--> done ... every slice done: the last one publishes
      ^                  |--retryable failure, runs left---> queued (sent again)
      |                  `--lease expired (its worker died)-> reaper: queued again, or the query Failed once
      |                                                       the slice has used QUERY_MAX_ATTEMPTS runs
      `--message lost (reaper: sent again)

A slice belongs to one attempt of its query (the query's fencing token): a slice runs only while its query is
Pending with that attempt and no cancel asked for, and every write is one conditional UPDATE on (state, runs),
as in queries.lifecycle. A running slice's heartbeat renews the query's lease too, and carries the query's
progress: the sum of its slices'. The query's own lease is therefore held while any slice runs; while its
slices only wait in the queue, the reaper leaves the query alone (it has live slices) and watches the slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from queries.lifecycle import (
    Claim,
    cap_exceeded_message,
    gave_up_message,
    lease_duration,
    query_fail,
    query_heartbeat,
    query_lease_renew,
)
from queries.models import QueryRequest, QuerySlice, QueryStatus, SliceState
from queries.slicing import SliceRange


@dataclass(frozen=True)
class SliceClaim:
    """A worker's right to run one slice: `run` fences the slice, `query.attempt` the query."""

    query: Claim
    slice: QuerySlice
    run: int

    @property
    def range(self) -> SliceRange:
        return SliceRange(lower=_naive(self.slice.lower), upper=_naive(self.slice.upper))


def slices_create(*, claim: Claim, ranges: list[SliceRange]) -> list[int]:
    """The slices of this run of the query, queued (the caller sends them); [] when the run lost its lease."""
    now = timezone.now()
    with transaction.atomic():
        held = QueryRequest.objects.select_for_update().filter(
            pk=claim.query.pk, status=QueryStatus.PENDING, attempts=claim.attempt, cancel_requested=False
        )
        if not held.exists():
            return []
        created = QuerySlice.objects.bulk_create(
            [
                QuerySlice(
                    query_id=claim.query.pk,
                    attempt=claim.attempt,
                    index=index,
                    lower=_aware(piece.lower),
                    upper=_aware(piece.upper),
                    enqueued_at=now,
                )
                for index, piece in enumerate(ranges)
            ]
        )
    # bulk_create sets primary keys on PostgreSQL and SQLite alike; read them back to be sure of the order.
    return (
        list(
            QuerySlice.objects.filter(query_id=claim.query.pk, attempt=claim.attempt)
            .order_by("index")
            .values_list("pk", flat=True)
        )
        if created
        else []
    )


def slice_claim(*, slice_id: int) -> SliceClaim | None:
    """Take a queued slice (or one whose worker's lease expired) of a query still running its attempt."""
    now = timezone.now()
    found = QuerySlice.objects.filter(pk=slice_id).select_related("query", "query__customer").first()
    if found is None:
        return None
    taken = (
        QuerySlice.objects.filter(pk=slice_id, state__in=(SliceState.QUEUED, SliceState.RUNNING))
        .exclude(lease_expires_at__gt=now)
        .filter(
            query__status=QueryStatus.PENDING,
            query__attempts=found.attempt,
            query__cancel_requested=False,
        )
        .update(
            state=SliceState.RUNNING,
            runs=F("runs") + 1,
            lease_expires_at=now + lease_duration(),
            rows=0,
            bytes=0,
        )
    )
    if not taken:
        return None
    found.refresh_from_db()
    query = QueryRequest.objects.select_related("customer").get(pk=found.query_id)
    return SliceClaim(query=Claim(query=query, attempt=found.attempt), slice=found, run=found.runs)


def slice_heartbeat(*, claim: SliceClaim, rows: int, bytes_written: int) -> bool:
    """Extend the slice's and the query's leases, recording progress (the query's: its slices' sum); False
    when either is lost or a cancel was asked for."""
    if not _held(claim).update(
        lease_expires_at=timezone.now() + lease_duration(), rows=rows, bytes=bytes_written
    ):
        return False
    totals = QuerySlice.objects.filter(query_id=claim.query.query.pk, attempt=claim.query.attempt).aggregate(
        rows=Sum("rows"), bytes=Sum("bytes")
    )
    size = totals["bytes"] or 0
    cap = claim.query.query.customer.max_bytes_per_query
    if cap is not None and size > cap:
        # The cap is the query's, not each slice's: the slices together went past it.
        query_fail(claim=claim.query, message=cap_exceeded_message(claim.query.query.customer))
        return False
    return query_heartbeat(claim=claim.query, rows=totals["rows"] or 0, bytes_written=size)


def slice_lease_renew(*, claim: SliceClaim) -> bool:
    """The slice's publish fence: both leases still held, no cancel asked for."""
    held = bool(_held(claim).update(lease_expires_at=timezone.now() + lease_duration()))
    return held and query_lease_renew(claim=claim.query)


def slice_done(
    *,
    claim: SliceClaim,
    parts: list[dict[str, Any]],
    rows: int,
    bytes_written: int,
    summary_state: bytes | None,
) -> bool:
    """Record the slice's parts (at the destination under hidden keys) and its summary; False when the run
    lost the slice (its files are then its own to remove)."""
    return bool(
        _held(claim).update(
            state=SliceState.DONE,
            lease_expires_at=None,
            parts=parts,
            rows=rows,
            bytes=bytes_written,
            summary_state=summary_state,
        )
    )


def slice_release(*, claim: SliceClaim, message: str) -> bool:
    """A failure worth another run: the slice is queued again (True; the caller sends it), or, once it has used
    QUERY_MAX_ATTEMPTS runs, its query ends Failed with `message` (False)."""
    if claim.run < settings.QUERY_MAX_ATTEMPTS:
        return bool(
            _held(claim).update(state=SliceState.QUEUED, lease_expires_at=None, enqueued_at=timezone.now())
        )
    query_fail(claim=claim.query, message=message)
    return False


def slices_all_done(*, claim: Claim) -> list[QuerySlice] | None:
    """Every slice of the run, in time order, when all are done (the caller may publish); else None."""
    slices = list(QuerySlice.objects.filter(query_id=claim.query.pk, attempt=claim.attempt).order_by("index"))
    if not slices or any(piece.state != SliceState.DONE for piece in slices):
        return None
    return slices


def _held(claim: SliceClaim) -> QuerySet[QuerySlice]:
    return QuerySlice.objects.filter(pk=claim.slice.pk, state=SliceState.RUNNING, runs=claim.run)


# -- the reaper -----------------------------------------------------------------------------------------------


def _of_live_queries(slices: QuerySet[QuerySlice]) -> QuerySet[QuerySlice]:
    return slices.filter(query__status=QueryStatus.PENDING, attempt=F("query__attempts"))


def slices_expired_release(*, now: datetime) -> list[int]:
    """Running slices whose worker died (lease expired), with runs left: queued again; their ids (to send)."""
    expired = _of_live_queries(QuerySlice.objects.filter(state=SliceState.RUNNING, lease_expires_at__lt=now))
    released = []
    for slice_id, runs in expired.filter(runs__lt=settings.QUERY_MAX_ATTEMPTS).values_list("pk", "runs"):
        again = QuerySlice.objects.filter(
            pk=slice_id, runs=runs, state=SliceState.RUNNING, lease_expires_at__lt=now
        )
        if again.update(state=SliceState.QUEUED, lease_expires_at=None, enqueued_at=now):
            released.append(slice_id)
    return released


def slices_expired_spent(*, now: datetime) -> int:
    """Queries one of whose slices died on its last run end Failed: the reaper gives up on them."""
    expired = _of_live_queries(QuerySlice.objects.filter(state=SliceState.RUNNING, lease_expires_at__lt=now))
    failed = 0
    for query_id, attempt, runs in expired.filter(runs__gte=settings.QUERY_MAX_ATTEMPTS).values_list(
        "query_id", "attempt", "runs"
    ):
        query = QueryRequest.objects.get(pk=query_id)
        failed += query_fail(claim=Claim(query=query, attempt=attempt), message=gave_up_message(runs))
    return failed


def slices_unclaimed(*, now: datetime, all_of_them: bool = False) -> list[int]:
    """Queued slices of running queries whose message was sent QUERY_REQUEUE_AFTER_SECONDS ago and never taken
    (or every queued one, when the broker lost its messages): marked sent now; their ids (to send)."""
    queued = _of_live_queries(QuerySlice.objects.filter(state=SliceState.QUEUED))
    if not all_of_them:
        waited = now - timedelta(seconds=settings.QUERY_REQUEUE_AFTER_SECONDS)
        queued = queued.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=waited))
    ids = list(queued.values_list("pk", flat=True))
    QuerySlice.objects.filter(pk__in=ids).update(enqueued_at=now)
    return ids


def slices_leftover() -> QuerySet[QuerySlice]:
    """Slices no run will publish: of ended queries, or of an attempt the query has moved past."""
    return QuerySlice.objects.filter(~Q(query__status=QueryStatus.PENDING) | ~Q(attempt=F("query__attempts")))


def _aware(value: datetime) -> datetime:
    """The warehouse's naive UTC as the database keeps times."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _naive(value: datetime) -> datetime:
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
