"""Due times and windows in a schedule's own time zone (schedules.timing), across Helsinki's DST changes (the
last Sundays of March and October) and month ends. Pure: no database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedules.timing import Cadence, Duration, due_after, duration_parse, window_of

HELSINKI = ZoneInfo("Europe/Helsinki")
HOUR = timedelta(hours=1)


def _local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=HELSINKI)


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def _dues(cadence: Cadence, start: datetime, end: datetime) -> list[datetime]:
    dues, moment = [], start
    while (moment := due_after(cadence, moment)) < end:
        dues.append(moment)
    return dues


def test_daily_due_times_keep_the_local_clock_across_both_changes():
    cadence = Cadence(every="day", hour=2, minute=0, zone=HELSINKI)
    spring = _dues(cadence, _utc(2026, 3, 27, 12), _utc(2026, 3, 31, 12))
    assert [d.astimezone(HELSINKI).strftime("%d %H:%M%z") for d in spring] == [
        "28 02:00+0200",
        "29 02:00+0200",  # before the change at 03:00
        "30 02:00+0300",
        "31 02:00+0300",
    ]
    autumn = _dues(cadence, _utc(2026, 10, 24, 12), _utc(2026, 10, 27, 12))
    assert [d.astimezone(UTC).strftime("%d %H:%M") for d in autumn] == ["24 23:00", "26 00:00", "27 00:00"]
    assert [d.astimezone(HELSINKI).strftime("%d %H:%M%z") for d in autumn] == [
        "25 02:00+0300",
        "26 02:00+0200",
        "27 02:00+0200",
    ]


def test_a_local_time_that_does_not_exist_runs_later_and_one_that_happens_twice_runs_once():
    cadence = Cadence(every="day", hour=3, minute=30, zone=HELSINKI)
    skipped = due_after(cadence, _local(2026, 3, 29, 0, 0))
    assert skipped == _utc(2026, 3, 29, 1, 30)  # 04:30 EEST: 03:30 was skipped by the clock
    assert skipped.astimezone(HELSINKI).strftime("%H:%M%z") == "04:30+0300"
    twice = _dues(cadence, _local(2026, 10, 24, 12, 0), _local(2026, 10, 26, 12, 0))
    assert twice == [_utc(2026, 10, 25, 0, 30), _utc(2026, 10, 26, 1, 30)]  # the first 03:30 (EEST), once


def test_hourly_runs_23_times_on_the_spring_day_and_25_on_the_autumn_day():
    cadence = Cadence(every="hour", hour=0, minute=15, zone=HELSINKI)
    spring = _dues(cadence, _local(2026, 3, 29, 0, 0), _local(2026, 3, 30, 0, 0))
    autumn = _dues(cadence, _local(2026, 10, 25, 0, 0), _local(2026, 10, 26, 0, 0))
    normal = _dues(cadence, _local(2026, 6, 1, 0, 0), _local(2026, 6, 2, 0, 0))
    assert (len(spring), len(autumn), len(normal)) == (23, 25, 24)
    for dues in (spring, autumn, normal):
        assert all(later - earlier == HOUR for earlier, later in itertools.pairwise(dues))
        assert {d.astimezone(HELSINKI).minute for d in dues} == {15}


def test_hourly_follows_the_local_clock_in_a_half_hour_zone():
    cadence = Cadence(every="hour", hour=0, minute=0, zone=ZoneInfo("Asia/Kolkata"))
    assert due_after(cadence, _utc(2026, 1, 1, 0, 0)) == _utc(2026, 1, 1, 0, 30)


def test_weekly_runs_on_mondays_and_monthly_on_the_first():
    weekly = Cadence(every="week", hour=6, minute=0, zone=HELSINKI)
    assert due_after(weekly, _local(2026, 3, 25, 12, 0)) == _local(2026, 3, 30, 6, 0)  # Wednesday -> Monday
    assert due_after(weekly, _local(2026, 3, 30, 6, 0)) == _local(2026, 4, 6, 6, 0)  # strictly after
    monthly = Cadence(every="month", hour=1, minute=0, zone=HELSINKI)
    assert _dues(monthly, _local(2026, 11, 15, 0, 0), _local(2027, 3, 2, 0, 0)) == [
        _local(2026, 12, 1, 1, 0),
        _local(2027, 1, 1, 1, 0),  # over the year's end
        _local(2027, 2, 1, 1, 0),
        _local(2027, 3, 1, 1, 0),
    ]


@pytest.mark.parametrize(
    ("due", "hours"),
    [
        (_local(2026, 3, 30, 2, 0), 23),  # the day of the spring change
        (_local(2026, 10, 26, 2, 0), 25),  # the day of the autumn change
        (_local(2026, 6, 2, 2, 0), 24),
    ],
)
def test_previous_day_is_the_whole_local_day(due, hours):
    window = window_of("previous_day", None, due, HELSINKI)
    assert window.start.astimezone(HELSINKI).strftime("%H:%M") == "00:00"
    assert window.end == _local(due.year, due.month, due.day, 0, 0)
    assert window.end - window.start == timedelta(hours=hours)
    assert window.wall_width(HELSINKI) == timedelta(days=1)


def test_previous_month_across_month_ends_and_a_dst_change():
    october = window_of("previous_month", None, _local(2026, 11, 1, 1, 0), HELSINKI)
    assert october.bounds(HELSINKI) == {
        "$gte": "2026-10-01T00:00:00+03:00",
        "$lt": "2026-11-01T00:00:00+02:00",
    }
    assert october.end - october.start == timedelta(days=31, hours=1)
    assert october.wall_width(HELSINKI) == timedelta(days=31)
    february = window_of("previous_month", None, _local(2028, 3, 1, 1, 0), HELSINKI)  # a leap year
    assert february.wall_width(HELSINKI) == timedelta(days=29)
    december = window_of("previous_month", None, _local(2027, 1, 1, 1, 0), HELSINKI)
    assert december.bounds(HELSINKI)["$gte"] == "2026-12-01T00:00:00+02:00"


def test_previous_hour_and_week():
    hour = window_of("previous_hour", None, _local(2026, 10, 25, 4, 5), HELSINKI)  # after the repeated hour
    assert hour.end == _utc(2026, 10, 25, 2, 0) and hour.end - hour.start == HOUR
    week = window_of("previous_week", None, _local(2026, 3, 30, 6, 0), HELSINKI)  # a Monday after the change
    assert week.bounds(HELSINKI) == {"$gte": "2026-03-23T00:00:00+02:00", "$lt": "2026-03-30T00:00:00+03:00"}
    assert week.end - week.start == timedelta(days=7) - HOUR


def test_last_counts_days_on_the_calendar_and_hours_elapsed():
    due = _local(2026, 3, 29, 12, 0)
    day = window_of("last", duration_parse("P1D"), due, HELSINKI)
    assert day.start == _local(2026, 3, 28, 12, 0) and day.end - day.start == timedelta(hours=23)
    hours = window_of("last", duration_parse("PT24H"), due, HELSINKI)
    assert hours.end - hours.start == timedelta(hours=24)
    mixed = window_of("last", duration_parse("P1DT6H"), due, HELSINKI)
    assert mixed.start == _local(2026, 3, 28, 6, 0)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("PT6H", Duration(0, timedelta(hours=6))),
        ("P7D", Duration(7, timedelta(0))),
        ("P2W", Duration(14, timedelta(0))),
        ("P1DT12H30M", Duration(1, timedelta(hours=12, minutes=30))),
        ("PT90S", Duration(0, timedelta(seconds=90))),
    ],
)
def test_durations_taken(text, parsed):
    assert duration_parse(text) == parsed


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "P0D", "PT0H", "P1M", "P1Y", "P1DT", "6H", "P1W1D", "pt6h", "P\uff11D"]
)
def test_durations_refused(text):
    assert duration_parse(text) is None
