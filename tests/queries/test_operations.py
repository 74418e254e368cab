"""The operator's read model: slots per customer, the queue, the last day's runs."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from queries.models import QueryRequest, QueryStatus
from queries.operations import queue_depth, recent_runs, slots_by_customer, status_counts


def _query(customer, **fields):
    return QueryRequest.objects.create(customer=customer, body="{}", fingerprint="f" * 64, **fields)


def test_slots_count_pending_and_running_against_each_limit(customer_factory):
    now = timezone.now()
    acme = customer_factory("acme")
    customer_factory("globex")
    _query(acme, lease_expires_at=now + timedelta(seconds=30))  # running
    _query(acme, lease_expires_at=now - timedelta(seconds=30))  # lease lost: queued again
    _query(acme, status=QueryStatus.COMPLETED)
    slots = {row.key: row for row in slots_by_customer(now=now)}
    assert (slots["acme"].in_use, slots["acme"].running, slots["acme"].limit) == (2, 1, 2)
    assert (slots["globex"].in_use, slots["globex"].running) == (0, 0)
    assert queue_depth(now=now) == 1


def test_status_counts_name_every_status(customer_factory):
    acme = customer_factory("acme")
    _query(acme, status=QueryStatus.FAILED)
    counts = status_counts()
    assert counts["Failed"] == 1 and counts["Pending"] == 0 and set(counts) == set(QueryStatus.values)


def test_recent_runs_percentiles_of_completed_run_times(customer_factory):
    acme = customer_factory("acme")
    now = timezone.now()
    for seconds in (1, 2, 3, 4, 100):
        _query(
            acme, status=QueryStatus.COMPLETED, started_at=now, finished_at=now + timedelta(seconds=seconds)
        )
    old = _query(acme, status=QueryStatus.FAILED)
    QueryRequest.objects.filter(pk=old.pk).update(submitted_at=now - timedelta(hours=25))
    runs = recent_runs(hours=24, now=now + timedelta(minutes=1))
    assert runs.by_status["Completed"] == 5 and runs.by_status["Failed"] == 0
    assert runs.completed_seconds_p50 == 3.0
    assert runs.completed_seconds_p95 is not None and 4 < runs.completed_seconds_p95 < 100
    assert recent_runs(hours=24, now=now + timedelta(days=3)).completed_seconds_p50 is None
