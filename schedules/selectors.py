"""Reads of schedules for the API and the admin: a customer's own only, each with its latest run, in a fixed
number of queries whatever their number."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import OuterRef, QuerySet, Subquery

from insights.models import Customer
from schedules.errors import ScheduleNotFound
from schedules.models import Schedule, ScheduleRun

MAX_ID = 2**63 - 1


def _live(customer: Customer) -> QuerySet[Schedule]:
    return Schedule.objects.filter(customer=customer, deleted_at=None).select_related("destination")


def schedule_get(*, customer: Customer, schedule_id: str | int) -> Schedule:
    """The customer's schedule `schedule_id`, with `last_run`. Raises ScheduleNotFound for an unknown id, a
    deleted schedule and another customer's alike."""
    text = str(schedule_id)
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_ID:
        raise ScheduleNotFound()
    schedule = _live(customer).filter(pk=int(text)).first()
    if schedule is None:
        raise ScheduleNotFound()
    last_runs_attach([schedule])
    return schedule


def schedules_list(*, customer: Customer) -> list[Schedule]:
    """The customer's schedules, oldest first, each with `last_run`."""
    schedules = list(_live(customer).order_by("pk"))
    last_runs_attach(schedules)
    return schedules


def last_runs_attach(schedules: Iterable[Schedule]) -> None:
    """Set `last_run` (the run with the latest due time, or None) on each schedule: two queries in all."""
    schedules = list(schedules)
    latest = (
        Schedule.objects.filter(pk__in=[s.pk for s in schedules])
        .annotate(
            last_run_id=Subquery(
                ScheduleRun.objects.filter(schedule=OuterRef("pk")).order_by("-due_at").values("pk")[:1]
            )
        )
        .values_list("pk", "last_run_id")
    )
    run_ids = {pk: run_id for pk, run_id in latest if run_id is not None}
    runs = ScheduleRun.objects.filter(pk__in=run_ids.values()).select_related("query").in_bulk()
    for schedule in schedules:
        schedule.last_run = runs.get(run_ids.get(schedule.pk, 0))  # type: ignore[attr-defined]
