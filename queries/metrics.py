"""What the workers count, and the gauges a scrape reads from the metadata database.

The counters and histograms are written by the processes where things happen: a run completes, a delivery is
retried, a lease is renewed (Celery pool processes), the reaper and retention act (beat's tasks, run by the
workers). They reach a scrape through the multiprocess files (insights.metrics, imported first here).

The queue, the slots and the queries by status are nobody's counters: `OperationsCollector` reads them from
queries.operations (the admin dashboard's read model) when a scrape asks, on that scrape's registry only, so
no process reports them twice and they are never stale.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import insights.metrics  # noqa: F401  # first: every process's samples go to the shared multiprocess files
from queries.operations import queue_depth, slots_by_customer, status_counts

logger = logging.getLogger(__name__)

_EXPORT_LABELS = ["engine", "storage"]
EXPORT_ROWS = Histogram(
    "insights_export_rows",
    "Rows of each completed export, by warehouse engine and storage kind.",
    _EXPORT_LABELS,
    buckets=(100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, float("inf")),
)
EXPORT_BYTES = Histogram(
    "insights_export_bytes",
    "Bytes of each completed export's part files as delivered (compressed), by engine and storage kind.",
    _EXPORT_LABELS,
    buckets=(
        10_000,
        100_000,
        1_000_000,
        10_000_000,
        100_000_000,
        1_000_000_000,
        10_000_000_000,
        float("inf"),
    ),
)
EXPORT_SECONDS = Histogram(
    "insights_export_duration_seconds",
    "Time from a run's claim to its Completed record (warehouse, writing, delivery), by engine and storage.",
    _EXPORT_LABELS,
    buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, float("inf")),
)
DELIVERY_RETRIES = Counter(
    "insights_delivery_retries",
    "Delivery tries repeated after a transient storage failure (a part's upload or the commit), by storage.",
    ["storage"],
)
REAPER_ACTIONS = Counter(
    "insights_reaper_actions",
    "What beat's upkeep did: requeued, failed, canceled, settled (a dead run's publication), expired "
    "(results past retention), swept (abandoned uploads and work directories).",
    ["action"],
)
LEASE_HEARTBEATS = Counter(
    "insights_lease_heartbeats",
    "Lease renewals of running queries by their workers, by outcome: renewed, lost (to a cancel or another "
    "attempt), failed (the metadata database did not answer).",
    ["outcome"],
)
LAST_HEARTBEAT = Gauge(
    "insights_lease_heartbeat_last_timestamp_seconds",
    "When a worker last renewed a lease (Unix time; the latest of every process).",
    multiprocess_mode="max",
)


def export_completed(*, engine: str, storage: str, rows: int, size: int, seconds: float) -> None:
    EXPORT_ROWS.labels(engine, storage).observe(rows)
    EXPORT_BYTES.labels(engine, storage).observe(size)
    EXPORT_SECONDS.labels(engine, storage).observe(seconds)


def delivery_retried(*, storage: str) -> None:
    DELIVERY_RETRIES.labels(storage).inc()


def reaper_acted(**counts: int) -> None:
    """`reaper_acted(requeued=2, failed=0)`: add each non-zero count to its action."""
    for action, count in counts.items():
        if count:
            REAPER_ACTIONS.labels(action).inc(count)


def lease_heartbeat(*, outcome: str) -> None:
    LEASE_HEARTBEATS.labels(outcome).inc()
    if outcome == "renewed":
        LAST_HEARTBEAT.set_to_current_time()


class OperationsCollector(Collector):
    """The queue, the slots per customer and the queries by status, read at scrape time (three queries).

    A metadata database that does not answer is `insights_metadata_up 0` and no other gauge, not a failed
    scrape: the processes' own metrics still say what happened."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        try:
            statuses, depth, slots = status_counts(), queue_depth(now=now), slots_by_customer(now=now)
        except DatabaseError as error:
            logger.warning("metrics: the metadata database did not answer: %s", error)
            yield GaugeMetricFamily("insights_metadata_up", _UP_HELP, value=0)
            return
        yield GaugeMetricFamily("insights_metadata_up", _UP_HELP, value=1)
        queries = GaugeMetricFamily("insights_queries", "Queries in each status.", labels=["status"])
        for status, count in statuses.items():
            queries.add_metric([status], count)
        yield queries
        yield GaugeMetricFamily(
            "insights_queue_depth", "Pending queries no worker is running: what waits for one.", value=depth
        )
        in_use = GaugeMetricFamily(
            "insights_slots_in_use",
            "Pending queries (queued or running) of each customer.",
            labels=["customer"],
        )
        running = GaugeMetricFamily(
            "insights_slots_running", "Queries of each customer a worker is running.", labels=["customer"]
        )
        limit = GaugeMetricFamily(
            "insights_slots_limit", "Queries each customer may have pending at once.", labels=["customer"]
        )
        for customer in slots:
            in_use.add_metric([customer.key], customer.in_use)
            running.add_metric([customer.key], customer.running)
            limit.add_metric([customer.key], customer.limit)
        yield from (in_use, running, limit)


_UP_HELP = "1 when this scrape could read the metadata database (queries, queue, slots), else 0."
