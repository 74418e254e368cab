"""What the workers count (a real run on DuckDB and local storage, the reaper on the test database) and the
gauges a scrape reads from the metadata database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry

from exports.errors import StorageError
from exports.storage.base import Publication
from exports.storage.local import LocalStorage
from insights.models import Customer
from queries import maintenance, metrics, runner
from queries.models import QueryRequest, QueryStatus

BODY = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["SessionId", "Ani", "Duration"]}},
}


def _value(name: str, **labels: str) -> float:
    """This process's own sample (the counters of this test process; a scrape adds every process's)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _query(customer: Customer, **fields: Any) -> QueryRequest:
    return QueryRequest.objects.create(customer=customer, body="{}", fingerprint="f" * 64, **fields)


def _scrape(collector: Any) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


# -- the gauges read at scrape time ---------------------------------------------------------------------------


def test_the_collector_reads_the_queue_the_slots_and_the_statuses_from_the_database(customer_factory):
    now = timezone.now()
    acme = customer_factory("acme", max_concurrent_queries=3)
    customer_factory("globex", max_concurrent_queries=1)
    _query(acme, lease_expires_at=now + timedelta(seconds=30))  # running
    _query(acme)  # queued
    _query(acme, lease_expires_at=now - timedelta(seconds=5))  # its worker died: queued again
    _query(acme, status=QueryStatus.COMPLETED)
    _query(acme, status=QueryStatus.FAILED)

    scraped = _scrape(metrics.OperationsCollector())

    assert scraped.get_sample_value("insights_metadata_up") == 1
    assert scraped.get_sample_value("insights_queue_depth") == 2
    by_status = {s: scraped.get_sample_value("insights_queries", {"status": s}) for s in QueryStatus.values}
    assert by_status == {s: 0 for s in QueryStatus.values} | {"Pending": 3, "Completed": 1, "Failed": 1}
    slots = {
        (name, customer): scraped.get_sample_value(f"insights_slots_{name}", {"customer": customer})
        for name in ("in_use", "running", "limit")
        for customer in ("acme", "globex")
    }
    assert slots == {
        ("in_use", "acme"): 3,
        ("running", "acme"): 1,
        ("limit", "acme"): 3,
        ("in_use", "globex"): 0,
        ("running", "globex"): 0,
        ("limit", "globex"): 1,
    }


def test_a_database_that_does_not_answer_is_a_gauge_not_a_failed_scrape(db, monkeypatch):
    def down() -> dict[str, int]:
        raise OperationalError("connection refused")

    monkeypatch.setattr(metrics, "status_counts", down)
    scraped = _scrape(metrics.OperationsCollector())
    assert scraped.get_sample_value("insights_metadata_up") == 0
    assert scraped.get_sample_value("insights_queue_depth") is None


# -- the reaper and retention ---------------------------------------------------------------------------------


def test_reaper_actions_are_counted_by_action(customer_factory, completed_query_factory, sent_tasks):
    now = timezone.now()
    acme = customer_factory("acme", retention_days=1)
    _query(acme, attempts=1, lease_expires_at=now - timedelta(seconds=1))  # its worker died
    _query(acme, attempts=3, lease_expires_at=now - timedelta(seconds=1))  # ... at its last attempt
    completed_query_factory(acme, finished_at=now - timedelta(days=2))
    before = {a: _value("insights_reaper_actions_total", action=a) for a in ("requeued", "failed", "expired")}

    reaped = maintenance.leases_reap(now=now)
    expired = maintenance.results_expire(now=now)

    assert (reaped.requeued, reaped.failed, expired) == (1, 1, 1)
    after = {a: _value("insights_reaper_actions_total", action=a) for a in ("requeued", "failed", "expired")}
    assert {a: after[a] - before[a] for a in after} == {"requeued": 1, "failed": 1, "expired": 1}


# -- a run ------------------------------------------------------------------------------------------------------


class _CommitFailsOnce(Publication):
    """A local publication whose first commit fails the way a flaky network does (a retryable error)."""

    def __init__(self, inner: Publication) -> None:
        self.inner = inner
        self.failed = False

    def stage(self, source: Path, key: str) -> None:
        self.inner.stage(source, key)

    def commit(self, manifest: tuple[bytes, str], *, commit_check: Callable[[], bool] | None = None) -> None:
        if not self.failed:
            self.failed = True
            raise StorageError("connection reset by peer", retryable=True)
        self.inner.commit(manifest, commit_check=commit_check)

    def abort(self) -> None:
        self.inner.abort()


@pytest.mark.django_db(
    transaction=True
)  # the run's supervisor and upload threads have connections of their own
def test_a_run_counts_its_export_and_its_delivery_retries(
    customer_factory, demo_warehouse, local_exports, settings, sent_tasks, monkeypatch
):
    settings.DELIVERY_RETRIES, settings.DELIVERY_BACKOFF_SECONDS = 2, 0

    class FlakyStorage(LocalStorage):
        def publication(self) -> Publication:
            return _CommitFailsOnce(super().publication())

    monkeypatch.setattr(runner, "destination_storage", lambda destination: FlakyStorage(local_exports))
    labels = {"engine": "duckdb", "storage": "local"}
    before = {
        name: _value(name, **labels)
        for name in ("insights_export_rows_count", "insights_export_rows_sum", "insights_export_bytes_sum")
    }
    retries = _value("insights_delivery_retries_total", storage="local")
    from queries.services import query_create

    query = query_create(customer=customer_factory("acme"), body=BODY)

    runner.query_run(query_id=query.pk)

    query.refresh_from_db()
    assert (query.status, query.delivery_attempts) == (QueryStatus.COMPLETED, 2), query.messages
    assert _value("insights_delivery_retries_total", storage="local") - retries == 1
    grown = {name: _value(name, **labels) - value for name, value in before.items()}
    assert grown == {
        "insights_export_rows_count": 1,
        "insights_export_rows_sum": query.row_count,
        "insights_export_bytes_sum": sum(f["size"] for f in query.files),
    }
    assert _value("insights_export_duration_seconds_count", **labels) >= 1
