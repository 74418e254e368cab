"""Beat-driven upkeep: expire results past retention, sweep abandoned uploads, reap expired leases."""

from __future__ import annotations

import logging
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from exports.storage.base import StorageError
from insights.destinations import destination_storage
from insights.models import Customer, Destination
from queries.delivery import query_storage
from queries.models import QueryRequest, QueryStatus

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
    return expired


def _expire(query: QueryRequest) -> int:
    storage = query_storage(query)
    try:
        storage.delete(
            [f["path"] for f in query.files] + ([query.manifest_path] if query.manifest_path else [])
        )
    except StorageError as error:
        logger.warning("query %s: retention could not delete its files yet: %s", query.guid, error)
        return 0
    finally:
        storage.close()
    return QueryRequest.objects.filter(pk=query.pk, status=QueryStatus.COMPLETED).update(
        status=QueryStatus.EXPIRED,
        messages=[f"The result was deleted after the {query.customer.retention_days}-day retention period."],
    )


def uploads_sweep(*, older_than: timedelta | None = None) -> int:
    """Abandoned staging files and multipart uploads on every destination, and stale worker directories
    (older than `older_than`, default `sweep_age()`)."""
    older_than = older_than or sweep_age()
    removed = 0
    for destination in [None, *Destination.objects.exclude(kind="local")]:
        storage = destination_storage(destination)
        try:
            removed += storage.sweep_incomplete(older_than)
        except StorageError as error:
            logger.warning("sweeping %s failed: %s", destination or "local storage", error)
        finally:
            storage.close()
    cutoff = time.time() - older_than.total_seconds()
    for workdir in (Path(settings.VAR_DIR) / "work").glob("*"):
        if workdir.is_dir() and workdir.stat().st_mtime < cutoff:
            shutil.rmtree(workdir, ignore_errors=True)
            removed += 1
    return removed


def leases_reap(*, now: datetime | None = None) -> tuple[int, int]:
    """Pending queries whose worker died (lease expired) or that no worker ever claimed: enqueue them again,
    or fail them after QUERY_MAX_ATTEMPTS attempts. Returns (requeued, failed)."""
    from queries.services import query_enqueue

    now = now or timezone.now()
    max_attempts = settings.QUERY_MAX_ATTEMPTS
    stuck_after = timedelta(seconds=settings.QUERY_REQUEUE_AFTER_SECONDS)
    pending = QueryRequest.objects.filter(status=QueryStatus.PENDING)
    lost = pending.filter(lease_expires_at__lt=now)
    gave_up = lost.filter(attempts__gte=max_attempts).update(
        status=QueryStatus.FAILED,
        finished_at=now,
        lease_expires_at=None,
        messages=[f"The query did not finish after {max_attempts} attempts; it has been logged for review."],
    )
    # A canceled query whose worker died ends Canceled, freeing its slot.
    pending.filter(lease_expires_at__lt=now, cancel_requested=True).update(
        status=QueryStatus.CANCELED,
        finished_at=now,
        lease_expires_at=None,
        messages=["Canceled at the customer's request."],
    )
    retry = pending.filter(
        Q(lease_expires_at__lt=now, attempts__lt=max_attempts)
        | Q(lease_expires_at__isnull=True, submitted_at__lt=now - stuck_after)
    ).filter(cancel_requested=False)
    requeued = 0
    for query_id in retry.values_list("pk", flat=True):
        query_enqueue(query_id=query_id)
        requeued += 1
    return requeued, gave_up
