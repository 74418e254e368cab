"""A schedule as the API takes it: its JSON document read into a Definition, or a ScheduleInvalid (400) saying
what is wrong. Pure: no ORM, no HTTP (the destination's name and the customer's limits are checked by
schedules.services, which also validates the query with a real window filled in).

    {"query": <a query body without timestamp>, "window": "previous_day" | {"last": "PT6H"},
     "every": "hour" | "day" | "week" | "month", "at": "02:00", "timezone": "Europe/Helsinki",
     "output": {...}, "description": "...", "filename": "...", "destination": "<name>" | null, "paused": false}
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

from queries.export_settings import export_settings_split
from queries.json_kinds import json_kind
from schedules.errors import ScheduleInvalid
from schedules.timing import CALENDAR_WINDOWS, EVERY, Cadence, Duration, duration_parse

FIELDS = (
    "query",
    "window",
    "every",
    "at",
    "timezone",
    "output",
    "description",
    "filename",
    "destination",
    "paused",
)
REQUIRED = ("query", "window", "every")
EXPORT_KEYS = ("output", "description", "filename")
# What a query body holds in POST /dwh/Q beside the query itself, and is not a schedule's query's to hold.
NOT_IN_QUERY = ("timestamp", "output", "description", "filename", "max_age")
AT = re.compile(r"(?P<hour>[01][0-9]|2[0-3]):(?P<minute>[0-5][0-9])")
DEFAULT_AT, DEFAULT_TIMEZONE = "00:00", "UTC"
MAX_DESTINATION_NAME = 64


@dataclass(frozen=True)
class Definition:
    """A schedule's settings, checked one by one (not yet against the customer: see schedules.services)."""

    query: dict[str, Any]  # in the customer's own key order
    window: str  # one of CALENDAR_WINDOWS, or "last"
    last: Duration | None  # the "last" window's length
    last_text: str  # as the customer wrote it ("P7D"), "" for a calendar window
    every: str
    at: str
    timezone: str
    export: dict[str, Any]  # output, description, filename: only those the customer gave, as given
    destination: str | None
    paused: bool

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def cadence(self) -> Cadence:
        hour, minute = (int(part) for part in self.at.split(":"))
        return Cadence(every=self.every, hour=hour, minute=minute, zone=self.zone)

    @property
    def window_document(self) -> str | dict[str, str]:
        return {"last": self.last_text} if self.window == "last" else self.window


def definition_read(document: object, *, partial_of: dict[str, Any] | None = None) -> Definition:
    """Read a schedule's JSON document. With `partial_of` (a PATCH), `document` holds only the fields that
    change, laid over `partial_of` (the schedule's current document). Raises ScheduleInvalid."""
    if not isinstance(document, dict):
        raise ScheduleInvalid(
            f'The body must be a JSON object such as {{"query": ..., "window": "previous_day", "every": "day"}}, '
            f"not {json_kind(document)}."
        )
    for key in document:
        if key not in FIELDS:
            raise ScheduleInvalid(f"{key} is not a schedule field; the fields are {', '.join(FIELDS)}.")
    merged = {**(partial_of or {}), **document}
    for key in REQUIRED:
        if key not in merged:
            raise ScheduleInvalid(f'"{key}" is required.')
    window, last, last_text = _window(merged["window"])
    every = _every(merged["every"])
    return Definition(
        query=_query(merged["query"]),
        window=window,
        last=last,
        last_text=last_text,
        every=every,
        at=_at(merged.get("at", DEFAULT_AT), every),
        timezone=_timezone(merged.get("timezone", DEFAULT_TIMEZONE)),
        export=_export({key: merged[key] for key in EXPORT_KEYS if key in merged}),
        destination=_destination(merged.get("destination")),
        paused=_paused(merged.get("paused", False)),
    )


def _query(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScheduleInvalid(
            f'"query" must be a query body without "timestamp" (an object), not {json_kind(value)}.'
        )
    for key in NOT_IN_QUERY:
        if key in value:
            if key == "timestamp":
                raise ScheduleInvalid(
                    '"query" must not hold "timestamp": each run fills it in from "window".'
                )
            if key == "max_age":
                raise ScheduleInvalid('"query" must not hold "max_age": every scheduled run is a new export.')
            raise ScheduleInvalid(f'"{key}" is a setting of the schedule: put it beside "query", not in it.')
    return value


def _window(value: object) -> tuple[str, Duration | None, str]:
    hint = (
        f'"window" must be one of {", ".join(CALENDAR_WINDOWS)}, or {{"last": <ISO 8601 duration>}} such as '
        '{"last": "PT6H"} or {"last": "P7D"}'
    )
    if isinstance(value, str):
        if value not in CALENDAR_WINDOWS:
            raise ScheduleInvalid(f'{hint}, not "{value}".')
        return value, None, ""
    if not isinstance(value, dict) or list(value) != ["last"]:
        raise ScheduleInvalid(f"{hint}.")
    text = value["last"]
    duration = duration_parse(text) if isinstance(text, str) else None
    if duration is None:
        shown = f'"{text}"' if isinstance(text, str) else json_kind(text)
        raise ScheduleInvalid(
            f"window.last must be a positive ISO 8601 duration in weeks (P2W), or days and hours, minutes, "
            f"seconds (P1D, PT6H, P1DT12H), not {shown}; for calendar months use previous_month."
        )
    return "last", duration, text


def _every(value: object) -> str:
    if not isinstance(value, str) or value not in EVERY:
        shown = f'"{value}"' if isinstance(value, str) else json_kind(value)
        raise ScheduleInvalid(f'"every" must be one of {", ".join(EVERY)}, not {shown}.')
    return value


def _at(value: object, every: str) -> str:
    found = AT.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        shown = f'"{value}"' if isinstance(value, str) else json_kind(value)
        raise ScheduleInvalid(
            f'"at" must be a local time HH:MM (24-hour clock) such as "02:00", not {shown}.'
        )
    if every == "hour" and found["hour"] != "00":
        raise ScheduleInvalid(
            f'An hourly schedule runs at a minute past each hour: write "at" as "00:MM" ("00:{found["minute"]}").'
        )
    return str(value)


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _timezone(value: object) -> str:
    # Looked up in the IANA list rather than by opening ZoneInfo(value), which reads files named by the value.
    if not isinstance(value, str) or value not in _zone_names():
        shown = f'"{value}"' if isinstance(value, str) else json_kind(value)
        raise ScheduleInvalid(
            f'"timezone" must be an IANA time zone name such as "Europe/Helsinki" or "UTC", not {shown}.'
        )
    return value


def _export(settings: dict[str, Any]) -> dict[str, Any]:
    export_settings_split(settings)  # raises QueryValidationError (400) naming what is wrong, as POST /dwh/Q
    return settings


def _destination(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_DESTINATION_NAME:
        raise ScheduleInvalid(
            '"destination" must be the name of one of your destinations (a string), or null for the default.'
        )
    return value


def _paused(value: object) -> bool:
    if not isinstance(value, bool):
        raise ScheduleInvalid(f'"paused" must be true or false, not {json_kind(value)}.')
    return value
