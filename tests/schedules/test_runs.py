"""The beat tick (schedules.runs) under a fake clock (time-machine): due times claimed once, windows computed in
the schedule's zone across DST changes and month ends, runs sent as ordinary queries that wait at the
customer's limit, failures counted until the schedule pauses itself. On the test database; the broker is
recorded (sent_tasks), the worker's side is run in process where a run must end."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from queries.models import QueryRequest, QueryStatus
from queries.services import query_cancel, query_create
from queries.validation import QueryValidationError, query_validate
from schedules.models import RunState, Schedule, ScheduleRun
from schedules.runs import schedules_tick
from schedules.services import schedule_create, schedule_run_now, schedule_update
from webhooks.models import WebhookEvent
from webhooks.services import webhook_put

pytestmark = pytest.mark.django_db

HELSINKI = ZoneInfo("Europe/Helsinki")
HOUR, MINUTE = timedelta(hours=1), timedelta(minutes=1)
QUERY = {"data": {"CallEvent": {"fields": ["TimeStamp", "Ani"]}}}
DAILY = {
    "query": QUERY,
    "window": "previous_day",
    "every": "day",
    "at": "02:00",
    "timezone": "Europe/Helsinki",
}


def _local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=HELSINKI)


def _walk(clock: time_machine.Traveller, until: datetime, step: timedelta) -> None:
    """Move the clock on by `step` until `until`, ticking at every step (as beat would, more often)."""
    while datetime.now(UTC) + step <= until:
        clock.shift(step)
        schedules_tick()


def _runs(schedule: Schedule) -> list[ScheduleRun]:
    return list(ScheduleRun.objects.filter(schedule=schedule).select_related("query").order_by("due_at"))


def _query_of(run: ScheduleRun) -> QueryRequest:
    assert run.query is not None, run.message
    return run.query


def _window_hours(run: ScheduleRun) -> float:
    return (run.window_end - run.window_start) / HOUR


def test_a_daily_schedule_across_the_spring_change(customer_factory, sent_tasks):
    customer = customer_factory("acme", max_concurrent_queries=50)
    with time_machine.travel(_local(2026, 3, 27, 12, 0), tick=False) as clock:
        schedule = schedule_create(customer=customer, body=DAILY)
        _walk(clock, _local(2026, 3, 31, 12, 0), HOUR)
    runs = _runs(schedule)
    assert [run.due_at.astimezone(HELSINKI).strftime("%d %H:%M%z") for run in runs] == [
        "28 02:00+0200",
        "29 02:00+0200",
        "30 02:00+0300",
        "31 02:00+0300",
    ]
    assert [_window_hours(run) for run in runs] == [24, 24, 23, 24]
    assert all(run.state == RunState.SUBMITTED for run in runs)
    # Each run is an ordinary query of the customer, its window written in local time with the offset.
    sent = [json.loads(_query_of(run).body) for run in runs]
    assert sent[2] == {
        "timestamp": {"$gte": "2026-03-29T00:00:00+02:00", "$lt": "2026-03-30T00:00:00+03:00"},
        **QUERY,
    }
    assert {_query_of(run).customer_id for run in runs} == {customer.pk}


def test_an_hourly_schedule_across_the_autumn_change_runs_25_contiguous_hours(customer_factory, sent_tasks):
    customer = customer_factory("acme", max_concurrent_queries=100)
    body = {
        "query": QUERY,
        "window": "previous_hour",
        "every": "hour",
        "at": "00:05",
        "timezone": "Europe/Helsinki",
    }
    with time_machine.travel(_local(2026, 10, 25, 0, 0), tick=False) as clock:
        schedule = schedule_create(customer=customer, body=body)
        _walk(clock, _local(2026, 10, 26, 0, 1), 10 * MINUTE)
    runs = _runs(schedule)
    assert len(runs) == 25
    assert all(_window_hours(run) == 1 for run in runs)
    assert all(earlier.window_end == later.window_start for earlier, later in itertools.pairwise(runs))
    assert runs[0].window_start == _local(2026, 10, 24, 23, 0) and runs[-1].window_end == _local(
        2026, 10, 25, 23, 0
    )


def test_a_monthly_schedule_across_month_ends_and_octobers_extra_hour(customer_factory, sent_tasks):
    """October in Helsinki is 31 days by the calendar and 31 days and an hour in UTC: the customer's 31-day
    limit is counted on the local clock, so the run is taken (POST /dwh/Q with the same window is refused)."""
    customer = customer_factory("acme", max_concurrent_queries=50, max_window_days=31)
    body = {**DAILY, "window": "previous_month", "every": "month", "at": "01:00"}
    with time_machine.travel(_local(2026, 9, 28, 12, 0), tick=False) as clock:
        schedule = schedule_create(customer=customer, body=body)
        _walk(clock, _local(2026, 12, 2, 0, 0), 6 * HOUR)
    runs = _runs(schedule)
    assert [run.due_at for run in runs] == [
        _local(2026, 10, 1, 1),
        _local(2026, 11, 1, 1),
        _local(2026, 12, 1, 1),
    ]
    assert [_window_hours(run) for run in runs] == [30 * 24, 31 * 24 + 1, 30 * 24]
    assert all(run.state == RunState.SUBMITTED for run in runs), [run.message for run in runs]
    october = json.loads(_query_of(runs[1]).body)
    assert october["timestamp"] == {"$gte": "2026-10-01T00:00:00+03:00", "$lt": "2026-11-01T00:00:00+02:00"}
    with pytest.raises(QueryValidationError, match="Query range too wide"):
        query_validate(october, max_window=timedelta(days=customer.max_window_days))


def test_a_paused_schedule_runs_nothing_and_resumes_from_now(customer_factory, sent_tasks):
    customer = customer_factory("acme", max_concurrent_queries=50)
    with time_machine.travel(_local(2026, 5, 1, 12, 0), tick=False) as clock:
        paused = schedule_create(customer=customer, body={**DAILY, "paused": True})
        running = schedule_create(customer=customer, body=DAILY)
        _walk(clock, _local(2026, 5, 3, 12, 0), HOUR)
        schedule_update(schedule=running, body={"paused": True})
        _walk(clock, _local(2026, 5, 6, 12, 0), HOUR)
        schedule_update(schedule=paused, body={"paused": False})
        schedule_update(schedule=running, body={"paused": False})
        _walk(clock, _local(2026, 5, 7, 12, 0), HOUR)
    assert [run.due_at for run in _runs(paused)] == [_local(2026, 5, 7, 2)]
    # Two runs, then paused for three days (those due times are not run), then one after it resumed.
    assert [run.due_at for run in _runs(running)] == [
        _local(2026, 5, 2, 2),
        _local(2026, 5, 3, 2),
        _local(2026, 5, 7, 2),
    ]


def test_a_run_at_the_customers_limit_waits_and_is_sent_once_a_slot_frees(customer_factory, sent_tasks):
    customer = customer_factory("acme", max_concurrent_queries=1)
    adhoc_body = {"timestamp": {"$gte": "2026-05-01T00:00:00Z", "$lt": "2026-05-02T00:00:00Z"}, **QUERY}
    with time_machine.travel(_local(2026, 5, 2, 1, 0), tick=False) as clock:
        schedule = schedule_create(customer=customer, body=DAILY)
        adhoc = query_create(customer=customer, body=adhoc_body)  # holds the one slot
        _walk(clock, _local(2026, 5, 2, 2, 10), MINUTE)
        (run,) = _runs(schedule)
        assert run.state == RunState.WAITING and run.query is None
        assert run.attempts == 11  # tried at every tick from 02:00 to 02:10
        assert run.message.startswith("Waiting for a free slot: max concurrent queries per user (1) reached")
        query_cancel(query=adhoc)
        _walk(clock, _local(2026, 5, 2, 2, 12), MINUTE)
    (run,) = _runs(schedule)
    assert run.state == RunState.SUBMITTED and run.attempts == 12  # sent at 02:11
    assert run.due_at == _local(2026, 5, 2, 2, 0)  # the due time's window, not the time it got its slot
    assert json.loads(_query_of(run).body)["timestamp"] == {
        "$gte": "2026-05-01T00:00:00+03:00",
        "$lt": "2026-05-02T00:00:00+03:00",
    }
    assert QueryRequest.objects.filter(customer=customer).count() == 2


def test_max_failures_in_a_row_pause_the_schedule_say_why_and_announce_it(
    customer_factory, sent_tasks, settings
):
    settings.SCHEDULE_MAX_FAILURES = 2
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver's address below is loopback
    customer = customer_factory("acme", max_concurrent_queries=50)
    webhook_put(customer=customer, url="http://127.0.0.1:9/hook", events=["schedule.paused"])
    body = {"query": QUERY, "window": {"last": "PT1H"}, "every": "hour", "at": "00:00", "timezone": "UTC"}
    with time_machine.travel(datetime(2026, 5, 1, 0, 30, tzinfo=UTC), tick=False) as clock:
        schedule = schedule_create(customer=customer, body=body)
        for _ in range(2):
            clock.shift(HOUR)
            schedules_tick()  # settles the previous run, claims and sends this hour's
            query = _runs(schedule)[-1].query
            assert query is not None
            query_cancel(query=query)  # ends it Canceled (no worker holds it): a failed run
        clock.shift(MINUTE)
        schedules_tick()
        schedule.refresh_from_db()
        assert schedule.paused and schedule.consecutive_failures == 2 and schedule.next_run_at is None
        assert schedule.paused_reason == (
            "Paused after 2 failed runs in a row; the last: Canceled at the customer's request."
        )
        clock.shift(5 * HOUR)
        schedules_tick()
    assert [run.state for run in _runs(schedule)] == [RunState.FAILED, RunState.FAILED]  # nothing after it
    (event,) = WebhookEvent.objects.filter(customer=customer, type="schedule.paused")
    announced = json.loads(event.body)["data"]
    assert announced["id"] == schedule.pk and announced["paused"] is True
    assert announced["paused_reason"] == schedule.paused_reason and announced["next_run_at"] is None


def test_a_good_run_resets_the_failure_count(customer_factory, sent_tasks, settings):
    settings.SCHEDULE_MAX_FAILURES = 2
    customer = customer_factory("acme", max_concurrent_queries=50)
    body = {"query": QUERY, "window": {"last": "PT1H"}, "every": "hour", "at": "00:00", "timezone": "UTC"}
    with time_machine.travel(datetime(2026, 5, 1, 0, 30, tzinfo=UTC), tick=False) as clock:
        schedule = schedule_create(customer=customer, body=body)
        for ending in ("cancel", "empty", "cancel", "empty"):
            clock.shift(HOUR)
            schedules_tick()
            query = _runs(schedule)[-1].query
            assert query is not None
            if ending == "cancel":
                query_cancel(query=query)
            else:  # what the runner records for a window with no rows
                QueryRequest.objects.filter(pk=query.pk).update(
                    status=QueryStatus.FAILED, messages=["The query returned empty values"]
                )
        clock.shift(MINUTE)
        schedules_tick()
    schedule.refresh_from_db()
    assert not schedule.paused and schedule.consecutive_failures == 0
    assert [run.state for run in _runs(schedule)] == ["failed", "completed", "failed", "completed"]
    assert _runs(schedule)[-1].message == "No rows in the window."


def test_a_claimed_due_time_is_never_claimed_again(customer_factory, sent_tasks):
    """As after a restart, or a second beat with a stale view: the schedule's next_run_at put back to a due
    time that already ran gets no second run (the unique constraint decides)."""
    customer = customer_factory("acme", max_concurrent_queries=50)
    with time_machine.travel(_local(2026, 5, 1, 12, 0), tick=False) as clock:
        schedule = schedule_create(customer=customer, body=DAILY)
        _walk(clock, _local(2026, 5, 2, 3, 0), HOUR)
        Schedule.objects.filter(pk=schedule.pk).update(next_run_at=_local(2026, 5, 2, 2, 0))
        schedules_tick()
        schedules_tick()
    assert [run.due_at for run in _runs(schedule)] == [_local(2026, 5, 2, 2, 0)]
    assert QueryRequest.objects.filter(customer=customer).count() == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at == _local(2026, 5, 3, 2, 0)


def test_due_times_missed_longer_than_the_catch_up_are_skipped(customer_factory, sent_tasks, settings):
    settings.SCHEDULE_CATCH_UP_HOURS = 24
    customer = customer_factory("acme", max_concurrent_queries=50)
    with time_machine.travel(_local(2026, 5, 1, 12, 0), tick=False) as clock:
        schedule = schedule_create(customer=customer, body=DAILY)
        clock.move_to(_local(2026, 5, 5, 12, 0))  # beat was down for four days
        schedules_tick()
    assert [run.due_at for run in _runs(schedule)] == [_local(2026, 5, 5, 2, 0)]


def test_run_now_sends_a_run_due_now(customer_factory, sent_tasks):
    customer = customer_factory("acme", max_concurrent_queries=50)
    with time_machine.travel(_local(2026, 5, 1, 12, 0, 30), tick=False):
        schedule = schedule_create(customer=customer, body=DAILY)
        run = schedule_run_now(schedule=schedule)
        again = schedule_run_now(schedule=schedule)  # the same second: the same run
    assert run.pk == again.pk and run.manual and run.state == RunState.SUBMITTED
    assert run.window_start == _local(2026, 4, 30, 0, 0) and run.window_end == _local(2026, 5, 1, 0, 0)
    assert QueryRequest.objects.filter(customer=customer).count() == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at == _local(2026, 5, 2, 2, 0)  # its due times are unchanged
