"""Beat-driven upkeep: expire results past retention, sweep abandoned uploads, reap expired leases."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from exports.errors import StorageError
from insights.destinations import destination_storage
from insights.models import Customer, Destination
from queries.delivery import query_destination, query_storage
from queries.dispatch import broker_messages_lost, queries_enqueue, slices_enqueue
from queries.journal import journal_settle
from queries.lifecycle import (
    leases_expired_cancel,
    leases_expired_release,
    leases_expired_spent,
    publications_interrupted,
    queries_unclaimed,
    query_expire,
    query_publication_settle,
)
from queries.metrics import reaper_acted
from queries.models import QueryRequest, QueryStatus
from queries.slice_lifecycle import (
    slices_expired_release,
    slices_expired_spent,
    slices_leftover,
    slices_unclaimed,
)
from queries.slice_runner import slice_leftovers
from queries.webhook_events import query_event_emit

logger = logging.getLogger(__name__)

SWEEP_AGE = timedelta(days=1)


def sweep_age() -> timedelta:
    """How old an unfinished upload must be before it is swept: parts are staged while the query still runs,
    so a live publication can be as old as the query's time limit plus its delivery retries."""
    return max(SWEEP_AGE, 2 * timedelta(seconds=settings.QUERY_TIME_LIMIT_SECONDS))


def results_expire(*, now: datetime | None = None) -> int:
    """Delete the files (and manifest) of results older than their customer's retention; mark them Expired."""
    now = now or timezone.now()
    expired = 0
    for customer in Customer.objects.all():
        cutoff = now - timedelta(days=customer.retention_days)
        old = QueryRequest.objects.filter(
            customer=customer, status=QueryStatus.COMPLETED, finished_at__lt=cutoff
        )
        for query in old.select_related("destination", "customer"):
            expired += _expire(query)
            query_event_emit(query_id=query.pk, type="query.expired")  # if it did expire
    reaper_acted(expired=expired)
    return expired


def _expire(query: QueryRequest) -> int:
    try:
        with query_storage(query) as storage:
            storage.delete(
                [f["path"] for f in query.files] + ([query.manifest_path] if query.manifest_path else [])
            )
    except StorageError as error:
        logger.warning("query %s: retention could not delete its files yet: %s", query.guid, error)
        return 0
    return int(query_expire(query=query, retention_days=query.customer.retention_days))


def uploads_sweep(*, older_than: timedelta | None = None) -> int:
    """Abandoned staging files and multipart uploads on every destination, and stale worker directories
    (older than `older_than`, default `sweep_age()`)."""
    older_than = older_than or sweep_age()
    removed = 0
    for destination in [None, *Destination.objects.exclude(kind="local")]:
        try:
            with destination_storage(destination) as storage:
                removed += storage.sweep_incomplete(older_than)
        except StorageError as error:
            logger.warning("sweeping %s failed: %s", destination or "local storage", error)
    cutoff = time.time() - older_than.total_seconds()
    for workdir in (Path(settings.VAR_DIR) / "work").glob("*"):
        if workdir.is_dir() and workdir.stat().st_mtime < cutoff:
            shutil.rmtree(workdir, ignore_errors=True)
            removed += 1
    reaper_acted(swept=removed)
    return removed


def slices_sweep() -> int:
    """The files of slices no run will publish (their query ended, or moved to another attempt), and their rows:
    the files first, the row once they are gone."""
    removed = 0
    for piece in slices_leftover().select_related("query", "query__customer"):
        keys = slice_leftovers(piece)
        try:
            # Where the run wrote them: the query's own destination (a schedule's) or the customer's default.
            with destination_storage(query_destination(piece.query)) as storage:
                storage.delete(keys)
        except StorageError as error:
            logger.warning("query %s: slice files could not be removed yet: %s", piece.query.guid, error)
            continue
        piece.delete()
        removed += len(keys)
    return removed


@dataclass(frozen=True)
class Reaped:
    """What one reaper tick did."""

    requeued: int = 0  # runs whose worker died, and queued queries whose message was lost, sent again
    failed: int = 0  # runs that used their last attempt
    canceled: int = 0  # dead runs a cancel had been asked for
    settled: int = 0  # publications interrupted by a dead run, finished (Completed) or rolled back


def leases_reap(*, now: datetime | None = None) -> Reaped:
    """One tick of the reaper: settle publications interrupted by a dead worker; end or re-run queries whose
    worker died (lease expired); send again queued queries whose broker message was lost."""
    now = now or timezone.now()
    settled = sum(_publication_settle(query, now) for query in publications_interrupted(now=now))
    canceled = leases_expired_cancel(now=now)
    failed = leases_expired_spent(now=now)
    released = leases_expired_release(now=now)
    # A broker that restarted empty lost every queued message: send them all now, not after the wait.
    lost = broker_messages_lost()
    unclaimed = queries_unclaimed(now=now, all_of_them=lost)
    requeued = queries_enqueue(list(dict.fromkeys(released + unclaimed)))
    # Slices of big exports (queries.slice_lifecycle): a dead slice is run again alone.
    failed += slices_expired_spent(now=now)
    slices = slices_expired_release(now=now) + slices_unclaimed(now=now, all_of_them=lost)
    requeued += slices_enqueue(list(dict.fromkeys(slices)))
    slices_sweep()  # the files of slices no run will publish go at once, not at the next daily sweep
    reaped = Reaped(requeued=requeued, failed=failed, canceled=canceled, settled=settled)
    reaper_acted(**asdict(reaped))
    return reaped


def _publication_settle(query: QueryRequest, now: datetime) -> int:
    try:
        published = journal_settle(query.publication or {})
    except StorageError as error:
        logger.warning("query %s: its interrupted publication cannot be settled yet: %s", query.guid, error)
        return 0
    logger.info(
        "query %s: publication of attempt %s %s",
        query.guid,
        query.attempts,
        "was complete" if published else "was incomplete and is rolled back",
    )
    return int(query_publication_settle(query=query, now=now, published=published))
