"""Retention, sweeping and lease reaping, with a frozen clock (`now=`) and real local storage."""

from __future__ import annotations

import os
import time
from datetime import timedelta

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


def _sent_ids(sent_tasks) -> list[int]:
    return sorted(args[0] for _, args, _ in sent_tasks)


def _pending(customer, **fields):
    return QueryRequest.objects.create(customer=customer, body="{}", fingerprint="f" * 64, **fields)


def test_reaper_requeues_lost_leases_and_gives_up_after_max_attempts(customer_factory, sent_tasks):
    customer = customer_factory("acme")
    now = timezone.now()
    lost = _pending(customer, attempts=1, lease_expires_at=now - timedelta(seconds=1))
    poison = _pending(customer, attempts=3, lease_expires_at=now - timedelta(seconds=1))
    held = _pending(customer, attempts=1, lease_expires_at=now + timedelta(seconds=20))
    message_lost = _pending(customer, enqueued_at=now - timedelta(minutes=10))
    never_sent = _pending(customer, enqueued_at=None)  # the hand-over to the broker failed
    just_submitted = _pending(customer, enqueued_at=now)

    reaped = maintenance.leases_reap(now=now)

    assert (reaped.requeued, reaped.failed) == (3, 1)
    assert _sent_ids(sent_tasks) == sorted([lost.pk, message_lost.pk, never_sent.pk])
    poison.refresh_from_db()
    assert poison.status == QueryStatus.FAILED
    assert poison.messages == ["The query did not finish after 3 attempts; it has been logged for review."]
    for query in (held, just_submitted, lost):
        query.refresh_from_db()
        assert query.status == QueryStatus.PENDING
    lost.refresh_from_db()
    assert lost.lease_expires_at is None and lost.enqueued_at == now  # queued again, claimable


def test_a_lost_message_is_sent_again_once_per_wait_not_every_tick(customer_factory, sent_tasks, settings):
    settings.QUERY_REQUEUE_AFTER_SECONDS = 300
    now = timezone.now()
    stuck = _pending(customer_factory("acme"), enqueued_at=now - timedelta(seconds=301))
    for tick in range(5):  # five reaper ticks, a second apart
        maintenance.leases_reap(now=now + timedelta(seconds=tick))
    assert _sent_ids(sent_tasks) == [stuck.pk]
    maintenance.leases_reap(now=now + timedelta(seconds=301))
    assert _sent_ids(sent_tasks) == [stuck.pk, stuck.pk]


def test_a_broker_that_lost_its_messages_gets_every_queued_query_at_once(
    customer_factory, sent_tasks, monkeypatch
):
    now, customer = timezone.now(), customer_factory("acme")
    queued = [_pending(customer, enqueued_at=now - timedelta(seconds=2)) for _ in range(3)]
    monkeypatch.setattr(maintenance, "broker_messages_lost", lambda: False)
    maintenance.leases_reap(now=now)
    assert sent_tasks == []  # they wait QUERY_REQUEUE_AFTER_SECONDS as usual
    monkeypatch.setattr(maintenance, "broker_messages_lost", lambda: True)
    maintenance.leases_reap(now=now)
    assert _sent_ids(sent_tasks) == sorted(q.pk for q in queued)


def test_reaper_ends_a_canceled_query_whose_worker_died(customer_factory, sent_tasks):
    customer = customer_factory("acme")
    now = timezone.now()
    dead = _pending(customer, attempts=1, cancel_requested=True, lease_expires_at=now - timedelta(seconds=1))
    maintenance.leases_reap(now=now)
    dead.refresh_from_db()
    assert dead.status == QueryStatus.CANCELED
    assert sent_tasks == []


def test_a_canceled_query_at_its_last_attempt_ends_canceled_not_failed(customer_factory, sent_tasks):
    now = timezone.now()
    dead = _pending(
        customer_factory("acme"),
        attempts=3,
        cancel_requested=True,
        lease_expires_at=now - timedelta(seconds=1),
    )
    assert maintenance.leases_reap(now=now).canceled == 1
    dead.refresh_from_db()
    assert (dead.status, dead.messages) == (QueryStatus.CANCELED, ["Canceled at the customer's request."])


def _journaled(customer, local_exports, *, placed: list[str], now):
    """A run that died mid-publish: its journal names two parts and a manifest, of which `placed` exist."""
    query = _pending(customer, attempts=1, lease_expires_at=now - timedelta(seconds=1))
    files = [
        {
            "path": f"reports/acme/{query.guid}_QueryExport_1__00000000000{i}.csv.gz",
            "size": 3,
            "rows": 2,
            "bytes": 9,
            "sha256": "0" * 64,
        }
        for i in range(2)
    ]
    manifest = f"reports/acme/{query.guid}_manifest.json"
    for key in placed:
        path = (
            local_exports / {"part0": files[0]["path"], "part1": files[1]["path"], "manifest": manifest}[key]
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"abc")
    QueryRequest.objects.filter(pk=query.pk).update(
        publication={"destination_id": None, "files": files, "manifest_path": manifest}
    )
    return query


def test_a_publication_interrupted_after_its_last_file_completes_the_query(
    customer_factory, local_exports, sent_tasks
):
    now = timezone.now()
    query = _journaled(
        customer_factory("acme"), local_exports, placed=["part0", "part1", "manifest"], now=now
    )
    assert maintenance.leases_reap(now=now).settled == 1
    query.refresh_from_db()
    assert (query.status, query.row_count, query.publication) == (QueryStatus.COMPLETED, 4, None)
    assert [f["path"] for f in query.files] == [
        p.relative_to(local_exports).as_posix() for p in sorted(local_exports.rglob("*.csv.gz"))
    ]
    assert sent_tasks == []  # nothing runs again: the one result is the dead run's


def test_a_publication_interrupted_midway_is_rolled_back_and_run_again(
    customer_factory, local_exports, sent_tasks
):
    now = timezone.now()
    query = _journaled(customer_factory("acme"), local_exports, placed=["part0"], now=now)
    assert QueryRequest.objects.filter(pk=query.pk, publication__isnull=False).exists()
    from queries.lifecycle import query_claim

    assert query_claim(query_id=query.pk) is None  # not claimed before the reaper settles the journal
    reaped = maintenance.leases_reap(now=now)
    query.refresh_from_db()
    assert (reaped.settled, reaped.requeued) == (1, 1)
    assert (query.status, query.publication) == (QueryStatus.PENDING, None)
    assert not [p for p in local_exports.rglob("*") if p.is_file()]  # nothing of the dead run is left
    assert _sent_ids(sent_tasks) == [query.pk]


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
