"""A schedule's runs, from due time to ended export: what the beat tick does (schedules.tasks).

- claim: each schedule whose `next_run_at` has come gets one ScheduleRun per due time up to now, its window and
  body fixed then, and its `next_run_at` moves on, in one transaction. The unique (schedule, due_at) makes a due
  time run once: two beat processes (or a restarted one) claiming the same time meet the constraint, and the
  schedule's row lock makes the second one find the time already moved on.
- dispatch: a waiting run becomes an ordinary query (queries.services.query_create: validation, the customer's
  concurrency slot, the run enqueued on commit). At the customer's limit it waits and is tried again at the
  next tick (never dropped); refused outright (a body the service no longer takes) it fails.
- settle: a submitted run whose query ended records how it went. SCHEDULE_MAX_FAILURES failed runs in a row
  pause the schedule, saying why; a good run (a result, or no rows in the window) resets the count.

Locks are taken schedule first, then run, everywhere, so two ticks (or a tick and the API) never deadlock.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from insights.errors import DomainError
from queries.errors import RETRY_AFTER_SECONDS, ConcurrencyLimitReached
from queries.models import TERMINAL_STATUSES, QueryRequest, QueryStatus
from queries.runner import EMPTY_RESULT
from queries.services import body_text, query_create
from schedules.definition import Definition
from schedules.documents import run_body, schedule_definition, window_allowed
from schedules.models import RunState, Schedule, ScheduleRun
from schedules.pausing import schedule_paused_set
from schedules.timing import Window, due_after, window_of

logger = logging.getLogger(__name__)

_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class TickReport:
    settled: int
    claimed: int
    submitted: int
    waiting: int


def schedules_tick(*, now: datetime | None = None) -> TickReport:
    """One beat tick: settle ended runs, claim due times, send waiting runs. Safe to run twice, and at once in
    several processes."""
    now = now or timezone.now()
    settled = runs_settle(now=now)
    claimed = runs_claim(now=now)
    submitted, waiting = runs_dispatch(now=now)
    return TickReport(settled=settled, claimed=claimed, submitted=submitted, waiting=waiting)


# --- claim ---------------------------------------------------------------------------------------------


def runs_claim(*, now: datetime) -> int:
    """A run for every due time up to `now` of every running schedule; how many were claimed."""
    due = Schedule.objects.filter(
        paused=False, deleted_at=None, next_run_at__lte=now, customer__is_active=True
    ).values_list("pk", flat=True)
    return sum(_schedule_claim(schedule_id, now) for schedule_id in list(due))


def _schedule_claim(schedule_id: int, now: datetime) -> int:
    with transaction.atomic():
        # The lock holds a concurrent tick until this one has moved next_run_at on; PostgreSQL then reads the
        # row again, and the filter drops it.
        schedule = (
            Schedule.objects.select_for_update()
            .filter(pk=schedule_id, paused=False, deleted_at=None, next_run_at__lte=now)
            .first()
        )
        if schedule is None or schedule.next_run_at is None:
            return 0
        try:
            definition = schedule_definition(schedule)
        except (
            DomainError
        ) as error:  # a stored schedule this service no longer takes (a zone gone from tzdata)
            schedule_paused_set(schedule, reason=f"Paused: its settings are no longer valid: {error.message}")
            schedule.save()
            return 0
        claimed, due = 0, schedule.next_run_at
        oldest = now - timedelta(hours=settings.SCHEDULE_CATCH_UP_HOURS)
        if due < oldest:
            logger.warning(
                "schedule %s: due times before %s were missed and are skipped", schedule.pk, oldest
            )
            due = due_after(definition.cadence, oldest - _TICK)
        while due <= now:
            claimed += run_claim(schedule, definition, due=due) is not None
            due = due_after(definition.cadence, due)
        schedule.next_run_at = due
        schedule.save(update_fields=["next_run_at"])
    return claimed


def run_claim(
    schedule: Schedule, definition: Definition, *, due: datetime, manual: bool = False
) -> ScheduleRun | None:
    """The run of `schedule` due at `due`, its window and body fixed now; None when that due time already has
    one (claimed by another beat, or before a restart): the unique constraint decides."""
    window = window_of(definition.window, definition.last, due, definition.zone)
    try:
        with (
            transaction.atomic()
        ):  # a savepoint: the constraint's refusal leaves the caller's transaction usable
            return ScheduleRun.objects.create(
                schedule=schedule,
                due_at=due,
                manual=manual,
                window_start=window.start,
                window_end=window.end,
                body=body_text(run_body(definition, window)),
                next_attempt_at=due,
            )
    except IntegrityError:
        return None


# --- dispatch ------------------------------------------------------------------------------------------


def runs_dispatch(*, now: datetime) -> tuple[int, int]:
    """Send every waiting run whose attempt is due, oldest due time first: (submitted, still waiting)."""
    waiting = (
        ScheduleRun.objects.filter(
            state=RunState.WAITING,
            next_attempt_at__lte=now,
            schedule__paused=False,
            schedule__deleted_at=None,
            schedule__customer__is_active=True,
        )
        .order_by("due_at", "pk")
        .values_list("pk", flat=True)
    )
    submitted = still_waiting = 0
    for run_id in list(waiting):
        run = run_dispatch(run_id=run_id, now=now)
        submitted += run is not None and run.state == RunState.SUBMITTED
        still_waiting += run is not None and run.state == RunState.WAITING
    return submitted, still_waiting


def run_dispatch(*, run_id: int, now: datetime | None = None) -> ScheduleRun | None:
    """Make the waiting run's query (the customer's limit permitting). Safe to call twice or at once: the
    second finds the run no longer waiting. Returns the run as it ends up (None: no such run)."""
    now = now or timezone.now()
    schedule_id = ScheduleRun.objects.filter(pk=run_id).values_list("schedule_id", flat=True).first()
    if schedule_id is None:
        return None
    with transaction.atomic():
        # Only the schedule's row: the customer's is locked by query_create, for the slot, as for any POST.
        schedule = (
            Schedule.objects.select_for_update(of=("self",)).select_related("customer").get(pk=schedule_id)
        )
        run = ScheduleRun.objects.select_for_update().get(pk=run_id)
        if run.state != RunState.WAITING or schedule.paused or schedule.deleted_at is not None:
            return run
        run.attempts += 1
        try:
            query = query_create(
                customer=schedule.customer,
                body=json.loads(run.body),
                author=f"schedule {schedule.pk}",
                max_window=window_allowed(
                    max_window_days=schedule.customer.max_window_days,
                    window=_run_window(run),
                    zone=schedule_definition(schedule).zone,
                ),
            )
        except ConcurrencyLimitReached as limit:
            run.message = f"Waiting for a free slot: {limit.message}; tried again at the next tick."
            run.next_attempt_at = now + timedelta(seconds=RETRY_AFTER_SECONDS)
            run.save(update_fields=["attempts", "message", "next_attempt_at"])
            return run
        except (
            DomainError
        ) as refused:  # the body is no longer valid (the customer's widest window, the catalog)
            message = refused.message if isinstance(refused.message, str) else json.dumps(refused.message)
            _run_end(run, schedule, failed=True, message=f"The service refused the query: {message}", now=now)
            return run
        if schedule.destination_id is not None:
            # Before the run is enqueued (on commit): the runner publishes where the query says (queries.delivery).
            QueryRequest.objects.filter(pk=query.pk).update(destination_id=schedule.destination_id)
        run.query = query
        run.state = RunState.SUBMITTED
        run.message = ""
        run.save(update_fields=["attempts", "query", "state", "message"])
    return run


def _run_window(run: ScheduleRun) -> Window:
    return Window(run.window_start, run.window_end)


# --- settle --------------------------------------------------------------------------------------------


def runs_settle(*, now: datetime) -> int:
    """Record the end of every submitted run whose query ended; how many."""
    ended = ScheduleRun.objects.filter(
        state=RunState.SUBMITTED, query__status__in=TERMINAL_STATUSES
    ).values_list("pk", "schedule_id")
    return sum(_run_settle(run_id, schedule_id, now) for run_id, schedule_id in list(ended))


def _run_settle(run_id: int, schedule_id: int, now: datetime) -> bool:
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().get(pk=schedule_id)
        run = ScheduleRun.objects.select_for_update().filter(pk=run_id, state=RunState.SUBMITTED).first()
        if run is None or run.query_id is None:
            return False
        query = QueryRequest.objects.filter(pk=run.query_id).first()
        if query is None or not query.is_terminal:
            return False
        failed, message = run_outcome(query)
        _run_end(run, schedule, failed=failed, message=message, now=now)
    return True


def run_outcome(query: QueryRequest) -> tuple[bool, str]:
    """(failed, message) of a run whose query ended. No rows in the window is a good run: the schedule worked,
    the window was quiet. A query canceled (its time limit, or by the customer) is a failed one."""
    if query.status == QueryStatus.FAILED:
        if list(query.messages) == [EMPTY_RESULT]:
            return False, "No rows in the window."
        return True, "; ".join(query.messages) or "The export failed."
    if query.status == QueryStatus.CANCELED:
        return True, "; ".join(query.messages) or "The export was canceled."
    return False, ""


def _run_end(run: ScheduleRun, schedule: Schedule, *, failed: bool, message: str, now: datetime) -> None:
    """Record the run's end and count it against the schedule (both rows locked by the caller)."""
    run.state = RunState.FAILED if failed else RunState.COMPLETED
    run.message = message
    run.finished_at = now
    run.save(update_fields=["attempts", "state", "message", "finished_at"])
    if not failed:
        schedule.consecutive_failures = 0
        schedule.save(update_fields=["consecutive_failures"])
        return
    schedule.consecutive_failures += 1
    limit = settings.SCHEDULE_MAX_FAILURES
    if schedule.consecutive_failures >= limit and not schedule.paused:
        schedule_paused_set(
            schedule,
            reason=f"Paused after {schedule.consecutive_failures} failed runs in a row; the last: {message}",
            now=now,
        )
    schedule.save()
