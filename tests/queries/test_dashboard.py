"""The operator's dashboard (the admin's index), its warnings, beat's recorded tick and the workers' ping.

The ping goes through a real broker in tests/browser/test_console.py (both shapes); here the admin page gets a
fixed answer so that it is read in milliseconds, and an unreachable broker is a real closed port."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from insights.beat import BEAT_TICK_KEY, beat_tick_read, beat_tick_record
from queries import admin_site
from queries.dashboard import dashboard_read, dashboard_warnings
from queries.models import QueryRequest, QueryStatus
from queries.operations import BeatTick, WorkersAnswer, beat_last_tick, workers_ping
from tests.servers import free_port

ALIVE = WorkersAnswer(names=("w0@host",))
NONE_ALIVE = WorkersAnswer(names=())
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _query(customer, **fields):
    return QueryRequest.objects.create(customer=customer, body="{}", fingerprint="f" * 64, **fields)


@pytest.fixture()
def workers(monkeypatch):
    """Set what the dashboard's ping answers: workers(ALIVE)."""

    def answer(reply: WorkersAnswer) -> None:
        monkeypatch.setattr(
            admin_site, "dashboard_read", functools.partial(dashboard_read, ping=lambda: reply)
        )

    return answer


def test_dashboard_shows_slots_queue_workers_and_beat(admin_client, customer_factory, workers):
    now = timezone.now()
    acme = customer_factory("acme", max_concurrent_queries=2)
    customer_factory("globex", max_concurrent_queries=3)
    _query(acme, attempts=1, lease_expires_at=now + timedelta(seconds=30))  # running
    _query(acme)  # queued
    _query(acme, status=QueryStatus.COMPLETED, started_at=now, finished_at=now + timedelta(seconds=4))
    beat_tick_record(next_in=30.0)
    workers(ALIVE)
    response = admin_client.get("/admin/")
    dashboard = response.context["dashboard"]
    assert [(r.key, r.in_use, r.running, r.queued, r.limit, r.percent) for r in dashboard.slots] == [
        ("acme", 2, 1, 1, 2, 100),
        ("globex", 0, 0, 0, 3, 0),
    ]
    assert (dashboard.queued, dashboard.running, dashboard.workers.names) == (1, 1, ("w0@host",))
    assert dashboard.beat is not None and dashboard.beat_age_seconds is not None
    assert dashboard.beat_age_seconds < 5 and not dashboard.beat_late
    assert dashboard.recent.by_status["Completed"] == 1 and dashboard.recent.completed_seconds_p50 == 4.0
    assert dashboard.warnings == []
    page = response.content.decode()
    for text in ("Workers alive", "w0@host", "Queue depth", "2 of 2", "0 of 3", "Beat's last tick", "4.0 s"):
        assert text in page, text
    assert "errornote" not in page


def test_dashboard_warns_when_queries_wait_and_no_worker_answers(admin_client, customer_factory, workers):
    _query(customer_factory("acme"))
    workers(NONE_ALIVE)
    page = admin_client.get("/admin/").content.decode()
    assert "1 query is queued and no worker answers" in page
    assert "Beat has recorded no tick" in page  # nothing recorded in this test's cache


def test_dashboard_customer_link_lists_its_pending_queries(admin_client, customer_factory, workers):
    pending = _query(customer_factory("acme"))
    done = _query(customer_factory("globex"), status=QueryStatus.COMPLETED)
    workers(ALIVE)
    page = admin_client.get("/admin/").content.decode()
    link = "/admin/queries/queryrequest/?customer__key=acme&amp;status__exact=Pending"
    assert link in page
    listed = admin_client.get(link.replace("&amp;", "&"))
    assert listed.status_code == 200
    assert pending.guid in listed.content.decode() and done.guid not in listed.content.decode()


def test_the_dashboard_needs_staff(client):
    assert client.get("/admin/").status_code == 302


def test_warnings_name_what_needs_an_operator():
    ticked = BeatTick(at=NOW - timedelta(seconds=10), next_in=30.0)
    assert dashboard_warnings(queued=0, workers=NONE_ALIVE, beat=ticked, now=NOW) == []
    assert dashboard_warnings(queued=3, workers=ALIVE, beat=ticked, now=NOW) == []
    assert dashboard_warnings(queued=3, workers=NONE_ALIVE, beat=ticked, now=NOW) == [
        "3 queries are queued and no worker answers: start one (celery -A insights worker)."
    ]
    unreachable = WorkersAnswer(names=(), error="the broker did not answer (OperationalError)")
    assert dashboard_warnings(queued=0, workers=unreachable, beat=ticked, now=NOW) == [
        "Workers could not be asked: the broker did not answer (OperationalError)."
    ]


def test_beat_is_late_once_past_its_announced_sleep_and_a_margin():
    tick = BeatTick(at=NOW, next_in=30.0)
    assert not tick.late(NOW + timedelta(seconds=44))
    assert tick.late(NOW + timedelta(seconds=46))
    (warning,) = dashboard_warnings(queued=0, workers=ALIVE, beat=tick, now=NOW + timedelta(seconds=60))
    assert (
        warning == "Beat's last tick was 60 s ago, though it meant to tick again after 30 s: is it running?"
    )


def test_beat_tick_round_trips_through_the_cache():
    assert beat_last_tick() is None
    beat_tick_record(next_in=12.5, at=NOW.timestamp())
    assert beat_last_tick() == BeatTick(at=NOW, next_in=12.5)


def test_a_garbled_tick_reads_as_none():
    from django.core.cache import cache

    cache.set(BEAT_TICK_KEY, {"at": "yesterday", "next_in": 1})
    assert beat_last_tick() is None


def test_a_cache_that_does_not_answer_neither_stops_beat_nor_the_dashboard(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    beat_tick_record(next_in=30.0)  # logged, not raised
    assert beat_tick_read() is None


def test_workers_ping_reports_a_broker_that_does_not_answer():
    started = time.monotonic()
    answer = workers_ping(broker_url=f"redis://127.0.0.1:{free_port()}/0")
    assert answer.names == () and answer.error is not None
    assert answer.error.startswith("the broker did not answer (")
    assert time.monotonic() - started < 10


def test_a_reuse_holds_no_slot_waits_for_no_worker_and_ran_nothing(admin_client, customer_factory, workers):
    now = timezone.now()
    acme = customer_factory("acme", max_concurrent_queries=2)
    running = _query(acme, attempts=1, lease_expires_at=now + timedelta(seconds=30))
    _query(acme, reused_from=running)  # joined the run: Pending, following it
    done = _query(acme, status=QueryStatus.COMPLETED, started_at=now, finished_at=now + timedelta(seconds=4))
    _query(  # a reuse of that result: its original's times, counted once
        acme,
        status=QueryStatus.COMPLETED,
        started_at=now,
        finished_at=now + timedelta(seconds=4),
        reused_from=done,
    )
    _query(acme, status=QueryStatus.COMPLETED, started_at=now, finished_at=now + timedelta(seconds=10))
    workers(NONE_ALIVE)
    response = admin_client.get("/admin/")
    dashboard = response.context["dashboard"]
    assert [(r.key, r.in_use, r.running, r.queued) for r in dashboard.slots] == [("acme", 1, 1, 0)]
    assert (dashboard.queued, dashboard.running) == (0, 1)
    assert not any("queued" in warning for warning in dashboard.warnings)  # the follower waits for its run
    assert dashboard.recent.by_status["Completed"] == 3 and dashboard.recent.completed_seconds_p50 == 7.0
    assert "1 of 2" in response.content.decode()
