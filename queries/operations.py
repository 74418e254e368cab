"""What an operator watches, read from the metadata database: slots, the queue, the last day's runs.

One read model for the admin's dashboard and the `/metrics` gauges, so both say the same thing. A Pending
query holds one of its customer's slots from POST to its end; it is *running* while an attempt holds a live
lease, *queued* otherwise (waiting for a worker, or for the reaper to hand it over again).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from insights.models import Customer
from queries.models import QueryRequest, QueryStatus


@dataclass(frozen=True)
class CustomerSlots:
    key: str
    name: str
    in_use: int  # Pending queries: queued or running
    running: int
    limit: int


@dataclass(frozen=True)
class RecentRuns:
    """Queries submitted in the last `hours`: how many ended in each status, and run times of the Completed."""

    hours: int
    by_status: dict[str, int]
    completed_seconds_p50: float | None
    completed_seconds_p95: float | None


def _running(now: datetime) -> Q:
    return Q(status=QueryStatus.PENDING, lease_expires_at__gt=now)


def slots_by_customer(*, now: datetime | None = None) -> list[CustomerSlots]:
    """Every active customer's slot use against its limit, by key."""
    now = now or timezone.now()
    pending = Q(queries__status=QueryStatus.PENDING)
    running = Q(queries__status=QueryStatus.PENDING, queries__lease_expires_at__gt=now)
    rows = (
        Customer.objects.filter(is_active=True)
        .annotate(in_use=Count("queries", filter=pending), running=Count("queries", filter=running))
        .order_by("key")
        .values_list("key", "name", "in_use", "running", "max_concurrent_queries")
    )
    return [CustomerSlots(key, name, in_use, run, limit) for key, name, in_use, run, limit in rows]


def queue_depth(*, now: datetime | None = None) -> int:
    """Pending queries no attempt is running: what waits for a worker."""
    now = now or timezone.now()
    return QueryRequest.objects.filter(status=QueryStatus.PENDING).exclude(_running(now)).count()


def status_counts() -> dict[str, int]:
    """Queries in each status (every status named, zeros included)."""
    counted = dict(QueryRequest.objects.values_list("status").annotate(n=Count("pk")).order_by())
    return {status: counted.get(status, 0) for status in QueryStatus.values}


def recent_runs(*, hours: int = 24, now: datetime | None = None) -> RecentRuns:
    now = now or timezone.now()
    recent = QueryRequest.objects.filter(submitted_at__gte=now - timedelta(hours=hours))
    counted = dict(recent.values_list("status").annotate(n=Count("pk")).order_by())
    spans = recent.filter(
        status=QueryStatus.COMPLETED, started_at__isnull=False, finished_at__isnull=False
    ).values_list("started_at", "finished_at")
    seconds = sorted(
        (finished - started).total_seconds() for started, finished in spans if started and finished
    )
    return RecentRuns(
        hours=hours,
        by_status={status: counted.get(status, 0) for status in QueryStatus.values},
        completed_seconds_p50=_percentile(seconds, 50),
        completed_seconds_p95=_percentile(seconds, 95),
    )


def _percentile(values: list[float], percent: int) -> float | None:
    """The nearest-rank-interpolated percentile of sorted values (None for none, the value for one)."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]
