"""Pausing a schedule, whoever does it (the customer, an operator, or its own failures): one place, so that
each pause skips the runs still waiting for a slot and is announced the same way (webhook `schedule.paused`)."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from schedules.models import RunState, Schedule, ScheduleRun
from schedules.selectors import last_runs_attach
from schedules.serializers import ScheduleSerializer
from webhooks.events import event_emit
from webhooks.models import EventType


def schedule_paused_set(schedule: Schedule, *, reason: str, now: datetime | None = None) -> None:
    """Mark `schedule` paused for `reason` (the caller saves it, in its transaction, holding the row's lock):
    it claims no due time until resumed, and its runs still waiting for a slot are skipped (a run already
    submitted goes on: it is an export of its own, which the customer may delete)."""
    now = now or timezone.now()
    schedule.paused = True
    schedule.paused_reason = reason
    schedule.paused_at = now
    schedule.next_run_at = None
    schedule.updated_at = now
    ScheduleRun.objects.filter(schedule=schedule, state=RunState.WAITING).update(
        state=RunState.SKIPPED, message=f"Skipped: the schedule was paused. {reason}", finished_at=now
    )
    # Recorded in the caller's transaction, sent once it commits (webhooks.events): the schedule as GET shows it.
    last_runs_attach([schedule])
    data = dict(ScheduleSerializer(schedule).data)
    event_emit(
        customer_id=schedule.customer_id,
        type=EventType.SCHEDULE_PAUSED,
        data=data,
        subject=f"schedule:{schedule.pk}",
    )


def schedule_resumed_set(schedule: Schedule, *, next_run_at: datetime, now: datetime | None = None) -> None:
    """Mark `schedule` running again from `next_run_at` (the caller saves it): due times missed while it was
    paused are not run, and its failure count starts again."""
    schedule.paused = False
    schedule.paused_reason = ""
    schedule.paused_at = None
    schedule.consecutive_failures = 0
    schedule.next_run_at = next_run_at
    schedule.updated_at = now or timezone.now()
