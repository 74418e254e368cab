"""A schedule's JSON document (what the API shows and a PATCH is laid over), and the query body a run sends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from schedules.definition import Definition, definition_read
from schedules.models import Schedule
from schedules.timing import Window


def schedule_document(schedule: Schedule) -> dict[str, Any]:
    """The schedule's settings as the customer wrote them (defaults filled in)."""
    document: dict[str, Any] = {
        "query": schedule.query_json,
        "window": {"last": schedule.window_last} if schedule.window == "last" else schedule.window,
        "every": schedule.every,
        "at": schedule.at,
        "timezone": schedule.timezone,
    }
    if schedule.output:
        document["output"] = schedule.output
    if schedule.description:
        document["description"] = schedule.description
    if schedule.filename:
        document["filename"] = schedule.filename
    document["destination"] = schedule.destination.name if schedule.destination is not None else None
    document["paused"] = schedule.paused
    return document


def schedule_definition(schedule: Schedule) -> Definition:
    return definition_read(schedule_document(schedule))


def run_body(definition: Definition, window: Window) -> dict[str, Any]:
    """A run's query body: the window as `timestamp` (local time, with its offset), the query in the
    customer's key order, then the export's settings: what the customer would POST to /dwh/Q by hand."""
    return {"timestamp": window.bounds(definition.zone), **definition.query, **definition.export}


def window_allowed(*, max_window_days: int, window: Window, zone: ZoneInfo) -> timedelta:
    """The widest window a run may read: the customer's, counted on the local clock. A previous_month in
    Helsinki is 31 days by the calendar and, in UTC, 31 days and an hour in October: that hour is allowed."""
    surplus = (window.end - window.start) - window.wall_width(zone)
    return timedelta(days=max_window_days) + max(surplus, timedelta(0))
