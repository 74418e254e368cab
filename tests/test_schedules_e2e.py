"""Schedules end to end over HTTP, on both shapes (tests/service.py): gunicorn, real Celery workers and, for a due
time, real Celery beat. A schedule's run becomes a Completed export that names the schedule.

The demo sessions of service_running are from 2019; these tests load sessions of their own customer around
today (seed_demo --start), so that a window counted back from now holds rows."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.service import SHAPES, Service, service_of_shape

CUSTOMER = "sched"
QUERY = {"data": {"CallEvent": {"fields": ["TimeStamp", "Ani"]}}}


@pytest.fixture(scope="module", params=SHAPES)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with service_of_shape(
        request,
        tmp_path_factory,
        "schedules_e2e",
        extra_env={"SCHEDULE_TICK_SECONDS": "2"},  # beat's tick every 2 s instead of every minute
    ) as running:
        start = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
        # Before any worker opens the warehouse (an embedded DuckDB file takes one writer, or readers).
        running.manage(
            "seed_demo", "--customer-keys", CUSTOMER, "--sessions", "300", "--start", start, "--days", "3"
        )
        yield running


@pytest.fixture(scope="module")
def key(service: Service) -> str:
    return service.customer_create(CUSTOMER, max_concurrent=5)


@pytest.fixture()
def worker(service: Service) -> Iterator[None]:
    service.worker_start()
    yield
    service.workers_stop()


def _schedule_create(service: Service, key: str, body: dict[str, Any]) -> int:
    response = service.request("POST", "/_rest/v4/dwh/schedules", key=key, body=body)
    assert response.status == 201, response.body
    return int(response.json()["id"])


def _export_checked(service: Service, key: str, guid: str, schedule_id: int) -> dict[str, Any]:
    """The export ended Completed, names the schedule, and its rows lie in its window."""
    assert service.wait_terminal(guid, key, timeout=120)["status"] == "Completed"
    export = service.request("GET", f"/_rest/v4/dwh/exports/{guid}", key=key).json()
    assert (export["status"], export["schedule_id"]) == ("Completed", schedule_id), export
    lines = gzip.decompress(service.request("GET", f"/_rest/v4/dwh/Q/{guid}/download", key=key).body)
    rows = lines.decode().splitlines()
    assert rows[0] == "TimeStamp,Ani" and len(rows) > 1
    assert all(export["from"] <= row[:24] < export["to"] for row in rows[1:])
    listed = service.request("GET", "/_rest/v4/dwh/exports", key=key).json()["exports"]
    assert {e["id"]: e["schedule_id"] for e in listed}[guid] == schedule_id
    return dict(export)


def test_run_now_produces_a_completed_export_carrying_its_schedule_id(
    service: Service, key: str, worker: None
) -> None:
    schedule_id = _schedule_create(
        service,
        key,
        {
            "query": QUERY,
            "window": {"last": "P1D"},
            "every": "day",
            "at": "03:00",
            "timezone": "Europe/Helsinki",
        },
    )
    response = service.request("POST", f"/_rest/v4/dwh/schedules/{schedule_id}/run", key=key)
    assert response.status == 202, response.body
    run = response.json()
    assert (run["schedule_id"], run["state"], run["manual"]) == (schedule_id, "submitted", True)
    export = _export_checked(service, key, run["export"], schedule_id)
    assert export["author"] == f"schedule {schedule_id}"
    shown = service.request("GET", f"/_rest/v4/dwh/schedules/{schedule_id}", key=key).json()
    assert shown["last_run"]["export"] == run["export"]
    stranger = service.customer_create("stranger")
    assert service.request("GET", f"/_rest/v4/dwh/schedules/{schedule_id}", key=stranger).status == 404


def test_beat_runs_a_due_time_once_into_a_completed_export(service: Service, key: str, worker: None) -> None:
    due = (datetime.now(UTC) + timedelta(seconds=80)).replace(second=0, microsecond=0)  # 20 to 80 s away
    schedule_id = _schedule_create(
        service,
        key,
        {"query": QUERY, "window": {"last": "P1D"}, "every": "hour", "at": f"00:{due.minute:02d}"},
    )
    created = service.request("GET", f"/_rest/v4/dwh/schedules/{schedule_id}", key=key).json()
    assert created["next_run_at"] == due.isoformat()
    service.beat_start()
    try:
        run = _wait_for_run(service, key, schedule_id, timeout=240)
        assert (run["due_at"], run["manual"]) == (due.isoformat(), False)
        assert run["to"] == due.isoformat() and run["from"] == (due - timedelta(days=1)).isoformat()
        _export_checked(service, key, run["export"], schedule_id)
        settled = _wait_for_run(service, key, schedule_id, timeout=60, state="completed")
        assert settled["export"] == run["export"]
        shown = service.request("GET", f"/_rest/v4/dwh/schedules/{schedule_id}", key=key).json()
        assert shown["next_run_at"] == (due + timedelta(hours=1)).isoformat()
        assert shown["consecutive_failures"] == 0
    finally:
        service.beat_stop()
    exports = service.request("GET", "/_rest/v4/dwh/exports?limit=500", key=key).json()["exports"]
    assert [e["schedule_id"] for e in exports].count(schedule_id) == 1  # one run for the due time


def _wait_for_run(
    service: Service, key: str, schedule_id: int, *, timeout: float, state: str | None = None
) -> dict[str, Any]:
    """The schedule's last run once it has an export (and, with `state`, once it is in that state)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = service.request("GET", f"/_rest/v4/dwh/schedules/{schedule_id}", key=key).json()["last_run"]
        if run is not None and run["export"] is not None and (state is None or run["state"] == state):
            return dict(run)
        time.sleep(0.5)
    raise AssertionError(f"schedule {schedule_id}: no run {state or 'with an export'} within {timeout} s")
