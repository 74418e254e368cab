"""When a schedule is due, and which window each run reads: pure functions of a schedule's definition and an
instant, computed in the schedule's own time zone (zoneinfo), so daylight saving time is honoured.

- Due times. `every` hour: each time the local clock reads :MM (`at` "00:MM"), so 23 or 25 runs on a day of
  DST change; day: each day at HH:MM local; week: Mondays at HH:MM; month: the 1st at HH:MM. A local time that
  does not exist (the hour skipped in spring) is read with the offset before the change, i.e. it runs that much
  later by the clock (03:30 in Helsinki on the last Sunday of March runs at 04:30 EEST); a local time that
  happens twice (autumn) runs once, at its first occurrence.
- Windows, ending where the due time's hour/day/week/month starts: `previous_day` is the whole local day before
  the due time (23, 24 or 25 hours), `previous_week` Monday to Monday, `previous_month` the 1st to the 1st;
  `{"last": "P7D"}` ends at the due time: weeks and days are counted on the local calendar (P1D across a DST
  change is 23 or 25 hours), hours, minutes and seconds are elapsed time.

Every instant in and out is an aware datetime; out, in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

EVERY = ("hour", "day", "week", "month")
CALENDAR_WINDOWS = ("previous_hour", "previous_day", "previous_week", "previous_month")
# ISO 8601 durations this service takes: weeks alone (P2W), or days and/or a time part (P1DT12H, PT6H, PT90M).
# Years and months are refused: their length is the calendar's (previous_month says which month). [0-9], not \d.
DURATION = re.compile(
    r"P(?:(?P<weeks>[0-9]{1,4})W|(?:(?P<days>[0-9]{1,5})D)?"
    r"(?:T(?:(?P<hours>[0-9]{1,6})H)?(?:(?P<minutes>[0-9]{1,7})M)?(?:(?P<seconds>[0-9]{1,9})S)?)?)"
)
# The longest window a kind can make, counted on the local calendar (a DST change adds an hour in UTC).
CALENDAR_WIDTHS = {
    "previous_hour": timedelta(hours=1),
    "previous_day": timedelta(days=1),
    "previous_week": timedelta(days=7),
    "previous_month": timedelta(days=31),
}
_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Duration:
    """A `last` window's length: `days` on the local calendar, then `elapsed` time."""

    days: int
    elapsed: timedelta

    @property
    def width(self) -> timedelta:
        """Its length counted on the local calendar (a day is 24 hours)."""
        return timedelta(days=self.days) + self.elapsed


def duration_parse(text: str) -> Duration | None:
    """The duration `text` spells, or None when it is not one this service takes (or is zero)."""
    found = DURATION.fullmatch(text)
    if found is None or text.endswith("T"):
        return None
    parts = {name: int(value) for name, value in found.groupdict().items() if value is not None}
    if not parts or not any(parts.values()):
        return None
    elapsed = timedelta(
        hours=parts.get("hours", 0), minutes=parts.get("minutes", 0), seconds=parts.get("seconds", 0)
    )
    return Duration(days=parts.get("weeks", 0) * 7 + parts.get("days", 0), elapsed=elapsed)


@dataclass(frozen=True, slots=True)
class Cadence:
    """When a schedule runs: `every` one of EVERY, at `hour`:`minute` local time in `zone`."""

    every: str
    hour: int
    minute: int
    zone: ZoneInfo


def due_after(cadence: Cadence, instant: datetime) -> datetime:
    """The first due time strictly after `instant` (UTC)."""
    if cadence.every == "hour":
        return _hourly_due_after(cadence, instant)
    local_day = instant.astimezone(cadence.zone).date()
    candidates = [_local(day, cadence) for day in _days_around(cadence.every, local_day)]
    return min(candidate for candidate in candidates if candidate > instant)


def _hourly_due_after(cadence: Cadence, instant: datetime) -> datetime:
    # The first whole minute after `instant` at which the local clock reads :MM. Offsets are whole minutes, and
    # a DST change moves the clock by at most an hour, so one is met within two hours.
    moment = instant.astimezone(UTC).replace(second=0, microsecond=0)
    for _ in range(180):
        moment += _MINUTE
        if moment.astimezone(cadence.zone).minute == cadence.minute:
            return moment
    raise AssertionError(f"no :{cadence.minute:02d} in {cadence.zone} within 3 hours of {instant}")


def _days_around(every: str, day: date) -> list[date]:
    """The local days on which a run of this cadence falls, from the one before `day`'s to two after."""
    if every == "day":
        return [day + timedelta(days=k) for k in range(-1, 3)]
    if every == "week":
        monday = day - timedelta(days=day.weekday())
        return [monday + timedelta(weeks=k) for k in range(-1, 3)]
    first = day.replace(day=1)
    return [_month_add(first, k) for k in range(-1, 3)]


def _local(day: date, cadence: Cadence) -> datetime:
    # fold=0: a time that does not exist takes the offset before the change, one that happens twice its first.
    return datetime.combine(day, time(cadence.hour, cadence.minute), tzinfo=cadence.zone).astimezone(UTC)


def _month_add(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True, slots=True)
class Window:
    """A run's window, [start, end) in UTC."""

    start: datetime
    end: datetime

    def wall_width(self, zone: ZoneInfo) -> timedelta:
        """Its length as the local clock counts it (a previous_day is one day whether 23, 24 or 25 hours)."""
        start, end = self.start.astimezone(zone), self.end.astimezone(zone)
        return end.replace(tzinfo=None) - start.replace(tzinfo=None)

    def bounds(self, zone: ZoneInfo) -> dict[str, str]:
        """The query body's `timestamp`, written in the schedule's local time with its offset."""
        return {"$gte": _instant_text(self.start, zone), "$lt": _instant_text(self.end, zone)}


def window_of(kind: str, last: Duration | None, due: datetime, zone: ZoneInfo) -> Window:
    """The window a run due at `due` reads: `kind` is one of CALENDAR_WINDOWS, or "last" with `last`."""
    local = due.astimezone(zone)
    if kind == "previous_hour":
        end = local.replace(minute=0, second=0, microsecond=0).astimezone(
            UTC
        )  # keeps the fold: the right hour
        return Window(end - timedelta(hours=1), end)
    if kind == "previous_day":
        today = local.date()
        return Window(_midnight(today - timedelta(days=1), zone), _midnight(today, zone))
    if kind == "previous_week":
        monday = local.date() - timedelta(days=local.weekday())
        return Window(_midnight(monday - timedelta(weeks=1), zone), _midnight(monday, zone))
    if kind == "previous_month":
        first = local.date().replace(day=1)
        return Window(_midnight(_month_add(first, -1), zone), _midnight(first, zone))
    assert kind == "last" and last is not None
    # Days on the local calendar (wall-clock arithmetic in the zone), then elapsed time in UTC.
    start = datetime.combine(local.date() - timedelta(days=last.days), local.timetz().replace(fold=0))
    return Window(start.astimezone(UTC) - last.elapsed, due.astimezone(UTC))


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=zone).astimezone(UTC)


def _instant_text(instant: datetime, zone: ZoneInfo) -> str:
    local = instant.astimezone(zone)
    offset = local.utcoffset()
    if offset is None or offset.seconds % 60:  # an offset with seconds (a pre-1972 LMT) cannot be written
        return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return local.isoformat()
