"""Writes on schedules from the API and the admin: create, change, pause, resume, delete, run now.

Each checks the whole schedule against its customer before saving: the destination is one of the customer's,
the widest window the schedule can make fits the customer's widest window, and the query, with the window of
its next run filled in, passes the validation of POST /dwh/Q (the same functions: export settings, then
queries.validation). A schedule saved is one whose runs the service takes.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from insights.models import Customer, Destination
from queries.export_settings import export_settings_split
from queries.services import body_text
from queries.validation import query_validate
from schedules.definition import Definition, definition_read
from schedules.documents import run_body, schedule_document, window_allowed
from schedules.errors import ScheduleInvalid, ScheduleNotFound
from schedules.models import Schedule, ScheduleRun
from schedules.pausing import schedule_paused_set, schedule_resumed_set
from schedules.runs import run_claim, run_dispatch
from schedules.timing import CALENDAR_WIDTHS, due_after, window_of

PAUSED_BY_CUSTOMER = "Paused by the customer."
DELETED_BY_CUSTOMER = "Deleted by the customer."
DESTINATION_NAME = re.compile(r"[-A-Za-z0-9_]+")


class ScheduleConflict(ScheduleInvalid):
    """The schedule's state does not allow the operation (409)."""

    status_code = 409


def schedule_create(
    *, customer: Customer, body: Any, author: str = "", now: datetime | None = None
) -> Schedule:
    """A new schedule of `customer` from its JSON document. Raises ScheduleInvalid or QueryValidationError (400)."""
    now = now or timezone.now()
    definition = definition_read(body)
    destination = _checked(definition, customer=customer, now=now)
    with transaction.atomic():
        # The customer's row lock serialises concurrent creations against the per-customer cap.
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        live = Schedule.objects.filter(customer=locked, deleted_at=None).count()
        if live >= settings.SCHEDULE_MAX_PER_CUSTOMER:
            raise ScheduleInvalid(
                f"A customer may have at most {settings.SCHEDULE_MAX_PER_CUSTOMER} schedules; delete one first."
            )
        schedule = Schedule(customer=locked, author=author[:150], created_at=now)
        _apply(schedule, definition, destination, now=now)
        schedule.save()
    return schedule


def schedule_update(*, schedule: Schedule, body: Any, now: datetime | None = None) -> Schedule:
    """PATCH: the fields in `body` replace the schedule's (`{"paused": true}` pauses it, false resumes it).
    A change of when or what it runs takes effect from the next due time after now."""
    now = now or timezone.now()
    definition = definition_read(body, partial_of=schedule_document(schedule))
    destination = _checked(definition, customer=schedule.customer, now=now)
    with transaction.atomic():
        locked = _locked(schedule)
        timing_changed = any(key in body for key in ("window", "every", "at", "timezone"))
        _apply(locked, definition, destination, now=now, timing_changed=timing_changed)
        locked.save()
    return locked


def schedule_pause(*, schedule: Schedule, reason: str = PAUSED_BY_CUSTOMER) -> Schedule:
    with transaction.atomic():
        locked = _locked(schedule)
        if not locked.paused:
            schedule_paused_set(locked, reason=reason)
            locked.save()
    return locked


def schedule_resume(*, schedule: Schedule, now: datetime | None = None) -> Schedule:
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked(schedule)
        if locked.paused:
            cadence = definition_read(schedule_document(locked)).cadence
            schedule_resumed_set(locked, next_run_at=due_after(cadence, now), now=now)
            locked.save()
    return locked


def schedule_delete(
    *, schedule: Schedule, reason: str = DELETED_BY_CUSTOMER, now: datetime | None = None
) -> None:
    """The schedule stops for good and leaves the API; its row stays, so that its exports still name it."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked(schedule)
        if not locked.paused:
            schedule_paused_set(locked, reason=reason, now=now)
        locked.deleted_at = now
        locked.save()


def schedule_run_now(*, schedule: Schedule, now: datetime | None = None) -> ScheduleRun:
    """A run due now, outside the schedule's times (its window ends now, or where now's hour/day/week/month
    starts), sent at once: submitted, or waiting for a free slot like any run. Asked twice in one second, it is
    one run. Raises ScheduleConflict (409) for a paused schedule."""
    now = (now or timezone.now()).replace(microsecond=0)
    with transaction.atomic():
        locked = _locked(schedule)
        if locked.paused:
            raise ScheduleConflict("The schedule is paused: resume it first.")
        definition = definition_read(schedule_document(locked))
        run = run_claim(locked, definition, due=now, manual=True)
        if run is None:
            run = ScheduleRun.objects.get(schedule=locked, due_at=now)
    return run_dispatch(run_id=run.pk, now=now) or run


def _locked(schedule: Schedule) -> Schedule:
    locked = Schedule.objects.select_for_update().filter(pk=schedule.pk, deleted_at=None).first()
    if locked is None:
        raise ScheduleNotFound()
    return locked


def _apply(
    schedule: Schedule,
    definition: Definition,
    destination: Destination | None,
    *,
    now: datetime,
    timing_changed: bool = True,
) -> None:
    schedule.query = body_text(definition.query)
    schedule.window = definition.window
    schedule.window_last = definition.last_text
    schedule.every = definition.every
    schedule.at = definition.at
    schedule.timezone = definition.timezone
    schedule.output = definition.export.get("output", {})
    schedule.description = definition.export.get("description", "")
    schedule.filename = definition.export.get("filename", "")
    schedule.destination = destination
    schedule.updated_at = now
    if definition.paused and not schedule.paused and schedule.pk is None:
        _paused_new(schedule, now)
    elif definition.paused and not schedule.paused:
        schedule_paused_set(schedule, reason=PAUSED_BY_CUSTOMER, now=now)
    elif not definition.paused and schedule.paused:
        schedule_resumed_set(schedule, next_run_at=due_after(definition.cadence, now), now=now)
    elif not schedule.paused and (timing_changed or schedule.next_run_at is None):
        schedule.next_run_at = due_after(definition.cadence, now)


def _paused_new(schedule: Schedule, now: datetime) -> None:
    """A schedule created paused: nothing to skip or announce yet."""
    schedule.paused = True
    schedule.paused_reason = PAUSED_BY_CUSTOMER
    schedule.paused_at = now
    schedule.next_run_at = None


def _checked(definition: Definition, *, customer: Customer, now: datetime) -> Destination | None:
    """Check the definition against the customer; returns the destination it names (None: the default)."""
    destination = None
    if definition.destination is not None:
        # Names are slugs: anything else names none (and a NUL would not even reach PostgreSQL).
        named = DESTINATION_NAME.fullmatch(definition.destination)
        destination = customer.destinations.filter(name=definition.destination).first() if named else None
        if destination is None:
            raise ScheduleInvalid(
                f'"destination" {definition.destination} is not one of your destinations (ask your operator).'
            )
    widest = CALENDAR_WIDTHS.get(definition.window) or (
        definition.last.width if definition.last else timedelta(0)
    )
    if widest > timedelta(days=customer.max_window_days):
        raise ScheduleInvalid(
            f"Query range too wide: the schedule's window spans up to {_duration_text(widest)}, more than the "
            f"{_duration_text(timedelta(days=customer.max_window_days))} allowed."
        )
    # The next run's query, validated as POST /dwh/Q would validate it.
    window = window_of(
        definition.window, definition.last, due_after(definition.cadence, now), definition.zone
    )
    _, query_body = export_settings_split(run_body(definition, window))
    allowed = window_allowed(max_window_days=customer.max_window_days, window=window, zone=definition.zone)
    query_validate(query_body, max_window=allowed)
    return destination


def _duration_text(span: timedelta) -> str:
    if span == timedelta(days=span.days):
        return f"{span.days} day" if span.days == 1 else f"{span.days} days"
    return str(span)
