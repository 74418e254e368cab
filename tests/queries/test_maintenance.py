"""Retention, sweeping and lease reaping, with a frozen clock (`now=`) and real local storage."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from queries import maintenance
from queries.models import QueryRequest, QueryStatus


def test_results_past_retention_are_deleted_and_expired(
    customer_factory, completed_query_factory, local_exports
):
    customer = customer_factory("acme", retention_days=7)
    now = timezone.now()
    old = completed_query_factory(customer, finished_at=now - timedelta(days=8))
    fresh = completed_query_factory(customer, finished_at=now - timedelta(days=6))

    assert maintenance.results_expire(now=now) == 1

    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.status == QueryStatus.EXPIRED and "7-day retention" in old.messages[0]
    assert not (local_exports / old.files[0]["path"]).exists()
    assert not (local_exports / old.manifest_path).exists()
    assert fresh.status == QueryStatus.COMPLETED and (local_exports / fresh.files[0]["path"]).exists()
    assert maintenance.results_expire(now=now + timedelta(days=2)) == 1  # the fresh one's turn
    assert maintenance.results_expire(now=now + timedelta(days=2)) == 0


def test_retention_follows_each_customers_setting(customer_factory, completed_query_factory):
    now = timezone.now()
    short = completed_query_factory(
        customer_factory("short", retention_days=1), finished_at=now - timedelta(days=2)
    )
    long = completed_query_factory(
        customer_factory("long", retention_days=30), finished_at=now - timedelta(days=2)
    )
    maintenance.results_expire(now=now)
    assert QueryRequest.objects.get(pk=short.pk).status == QueryStatus.EXPIRED
    assert QueryRequest.objects.get(pk=long.pk).status == QueryStatus.COMPLETED


def test_expired_result_answers_410(customer_factory, completed_query_factory):
    from rest_framework.test import APIClient

    from insights.services import api_key_create

    customer = customer_factory("acme", retention_days=1)
    query = completed_query_factory(customer, finished_at=timezone.now() - timedelta(days=3))
    maintenance.results_expire()
    _, key = api_key_create(customer=customer, name="t")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.get(f"/_rest/v4/dwh/Q/{query.guid}")
    assert response.status_code == 410
    assert response.json()["code"] == 410 and "expired" in response.json()["message"]
    assert client.get(f"/_rest/v4/dwh/Q/{query.guid}/status").json()["status"] == "Expired"


def test_sweep_removes_only_old_staging_files_and_work_dirs(db, local_exports, settings):
    old_staging = local_exports / "reports/acme/.x.csv.gz.0123.partial"
    new_staging = local_exports / "reports/acme/.y.csv.gz.4567.partial"
    final = local_exports / "reports/acme/z.csv.gz"
    for path in (old_staging, new_staging, final):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    old_work = settings.VAR_DIR / "work" / "deadbeef-1"
    old_work.mkdir(parents=True)
    two_days_ago = time.time() - 2 * 86400
    for path in (old_staging, final, old_work):
        os.utime(path, (two_days_ago, two_days_ago))

    assert maintenance.uploads_sweep() == 2

    assert not old_staging.exists() and not old_work.exists()
    assert new_staging.exists() and final.exists()


@pytest.fixture()
def enqueued(monkeypatch):
    """Records what the reaper enqueues (the broker path itself is tested end to end)."""
    calls: list[int] = []
    monkeypatch.setattr("queries.services.query_enqueue", lambda *, query_id: calls.append(query_id))
    return calls


def _pending(customer, **fields):
    return QueryRequest.objects.create(customer=customer, body={}, fingerprint="f" * 64, **fields)


def test_reaper_requeues_lost_leases_and_gives_up_after_max_attempts(customer_factory, enqueued):
    customer = customer_factory("acme")
    now = timezone.now()
    lost = _pending(customer, attempts=1, lease_expires_at=now - timedelta(seconds=1))
    poison = _pending(customer, attempts=3, lease_expires_at=now - timedelta(seconds=1))
    held = _pending(customer, attempts=1, lease_expires_at=now + timedelta(seconds=20))
    never_claimed = _pending(customer)
    QueryRequest.objects.filter(pk=never_claimed.pk).update(submitted_at=now - timedelta(minutes=10))
    just_submitted = _pending(customer)

    requeued, failed = maintenance.leases_reap(now=now)

    assert (requeued, failed) == (2, 1)
    assert sorted(enqueued) == sorted([lost.pk, never_claimed.pk])
    poison.refresh_from_db()
    assert poison.status == QueryStatus.FAILED and poison.messages
    for query in (held, just_submitted, lost):
        query.refresh_from_db()
        assert query.status == QueryStatus.PENDING


def test_reaper_ends_a_canceled_query_whose_worker_died(customer_factory, enqueued):
    customer = customer_factory("acme")
    now = timezone.now()
    dead = _pending(customer, attempts=1, cancel_requested=True, lease_expires_at=now - timedelta(seconds=1))
    maintenance.leases_reap(now=now)
    dead.refresh_from_db()
    assert dead.status == QueryStatus.CANCELED
    assert enqueued == []


def test_the_sweep_spares_uploads_a_long_query_may_still_be_making(db, local_exports, settings):
    """Parts are staged while a query runs: with a 2-day time limit, a 2-day-old staging file may be live."""
    settings.QUERY_TIME_LIMIT_SECONDS = 2 * 86400
    staging = local_exports / "reports/acme/.x.csv.gz.0123.partial"
    staging.parent.mkdir(parents=True, exist_ok=True)
    staging.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 86400 - 60
    os.utime(staging, (two_days_ago, two_days_ago))
    assert maintenance.uploads_sweep() == 0 and staging.exists()
    settings.QUERY_TIME_LIMIT_SECONDS = 3600
    assert maintenance.uploads_sweep() == 1 and not staging.exists()
