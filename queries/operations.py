"""What an operator watches, read from the metadata database: slots, the queue, the last day's runs.

One read model for the admin's dashboard and the `/metrics` gauges, so both say the same thing. A Pending
query holds one of its customer's slots from POST to its end; it is *running* while an attempt holds a live
lease, *queued* otherwise (waiting for a worker, or for the reaper to hand it over again).

Two readings come from elsewhere than the database: which Celery workers answer a ping (through the broker),
and when beat last ticked (from the shared cache, where insights.beat records it).
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from insights.beat import beat_tick_read
from insights.celery import app
from insights.models import Customer
from queries.models import QueryRequest, QueryStatus

logger = logging.getLogger(__name__)

# How long a worker has to answer a ping; the dashboard waits this long on every load.
PING_TIMEOUT_SECONDS = 1.0
# How long the broker has to accept a connection before the ping is reported as impossible.
BROKER_CONNECT_SECONDS = 2.0
# Beat is late once its last tick is older than the sleep it announced plus this margin.
BEAT_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class CustomerSlots:
    key: str
    name: str
    in_use: int  # Pending queries: queued or running (reuses aside)
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


# A reuse (queries.reuse) never runs: while it follows another query's run it is Pending but holds no slot and
# waits for no worker; Completed, it shows its original's run times.
REUSE = Q(reused_from__isnull=False)


def slots_by_customer(*, now: datetime | None = None) -> list[CustomerSlots]:
    """Every active customer's slot use against its limit, by key."""
    now = now or timezone.now()
    # What holds a slot (queue_eta.slots_held): a reuse following another query's run does not.
    pending = Q(queries__status=QueryStatus.PENDING, queries__reused_from__isnull=True)
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
    return (
        QueryRequest.objects.filter(status=QueryStatus.PENDING).exclude(_running(now)).exclude(REUSE).count()
    )


def status_counts() -> dict[str, int]:
    """Queries in each status (every status named, zeros included)."""
    counted = dict(QueryRequest.objects.values_list("status").annotate(n=Count("pk")).order_by())
    return {status: counted.get(status, 0) for status in QueryStatus.values}


def recent_runs(*, hours: int = 24, now: datetime | None = None) -> RecentRuns:
    now = now or timezone.now()
    recent = QueryRequest.objects.filter(submitted_at__gte=now - timedelta(hours=hours))
    counted = dict(recent.values_list("status").annotate(n=Count("pk")).order_by())
    spans = (  # a reuse shows its original's times: the run is counted once
        recent.filter(status=QueryStatus.COMPLETED, started_at__isnull=False, finished_at__isnull=False)
        .exclude(REUSE)
        .values_list("started_at", "finished_at")
    )
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


@dataclass(frozen=True)
class WorkersAnswer:
    """The workers that answered a ping (their hostnames), or why none could be asked."""

    names: tuple[str, ...]
    error: str | None = None


def workers_ping(*, timeout: float = PING_TIMEOUT_SECONDS, broker_url: str | None = None) -> WorkersAnswer:
    """The Celery workers that answer a broadcast ping within `timeout` seconds, through the service's broker
    (or `broker_url`). Remote control works on both brokers: Redis, and the filesystem transport, whose fanout
    exchange is its control folder. A broker that does not take a connection within BROKER_CONNECT_SECONDS is
    reported in `error` (and logged), never raised: the dashboard must show what it can."""
    try:
        with app.connection_for_write(broker_url) as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_CONNECT_SECONDS)
            replies = app.control.inspect(timeout=timeout, connection=connection).ping() or {}
    except Exception as error:  # the transports raise their own errors (OSError, redis and kombu errors)
        logger.warning("dashboard: the broker could not be asked for workers: %s", error)
        return WorkersAnswer(names=(), error=f"the broker did not answer ({type(error).__name__})")
    return WorkersAnswer(names=tuple(sorted(replies)))


@dataclass(frozen=True)
class BeatTick:
    """Beat's last tick, and the sleep it announced before its next one."""

    at: datetime
    next_in: float

    def late(self, now: datetime) -> bool:
        return now > self.at + timedelta(seconds=self.next_in + BEAT_GRACE_SECONDS)


def beat_last_tick() -> BeatTick | None:
    """When beat last ticked (recorded by insights.beat.TickRecordingScheduler in the shared cache), or None
    when no tick was recorded or the cache does not answer."""
    recorded = beat_tick_read()
    if recorded is None:
        return None
    try:
        return BeatTick(
            at=datetime.fromtimestamp(float(recorded["at"]), tz=UTC), next_in=float(recorded["next_in"])
        )
    except (KeyError, TypeError, ValueError):
        return None
