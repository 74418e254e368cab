"""Schedules (recurring exports) and their runs: one ScheduleRun per due time, whose unique (schedule, due_at)
makes each due time run once however many beat processes tick (schedules.runs)."""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.utils.timezone import now


class Schedule(models.Model):
    """A customer's recurring export: a query whose window moves with each due time."""

    customer = models.ForeignKey("insights.Customer", on_delete=models.CASCADE, related_name="schedules")
    # Text, not a JSONField: PostgreSQL's jsonb would reorder the customer's keys (and so the export's columns).
    query = models.TextField(
        help_text="The query body without timestamp (JSON, in the customer's key order)."
    )
    window = models.CharField(
        max_length=16, help_text="previous_hour, previous_day, previous_week, previous_month, or last."
    )
    window_last = models.CharField(
        max_length=64, blank=True, help_text="The ISO 8601 duration of a `last` window."
    )
    every = models.CharField(max_length=8, help_text="hour, day, week or month.")
    at = models.CharField(max_length=5, default="00:00", help_text="Local time HH:MM (hourly: 00:MM).")
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="IANA time zone of `at` and the window."
    )
    output = models.JSONField(default=dict, blank=True, help_text="The export's output options, as given.")
    description = models.TextField(blank=True, max_length=500)
    filename = models.CharField(max_length=100, blank=True)
    destination = models.ForeignKey(
        "insights.Destination",
        null=True,
        blank=True,
        on_delete=models.PROTECT,  # a destination a schedule names cannot vanish under it
        related_name="schedules",
        help_text="Where its exports go; empty: the customer's default destination.",
    )
    author = models.CharField(max_length=150, blank=True, help_text="The API key's or the user's name.")
    paused = models.BooleanField(default=False)
    paused_reason = models.TextField(
        blank=True, help_text="Why it is paused (by whom, or after which failures)."
    )
    paused_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # The next due time (UTC); the beat tick claims every schedule whose time has come. NULL while paused.
    next_run_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=now, editable=False)
    updated_at = models.DateTimeField(default=now)
    # Deleted through the API: kept, so that its exports still name it; it never runs again.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["customer", "pk"]
        indexes = [models.Index(fields=["paused", "next_run_at"], name="schedule_due")]

    def __str__(self) -> str:
        return f"schedule {self.pk} of {self.customer.key}"

    @property
    def query_json(self) -> Any:
        """The query body, decoded (objects keep the customer's key order)."""
        return json.loads(self.query)


class RunState(models.TextChoices):
    WAITING = "waiting"  # due, its query not created yet (new, or the customer's limit was reached: retried)
    SUBMITTED = "submitted"  # its query exists and has not ended
    COMPLETED = "completed"  # its query Completed (or found no rows)
    FAILED = "failed"  # its query failed or was canceled, or the service refused it
    SKIPPED = "skipped"  # still waiting when the schedule was paused or deleted


class ScheduleRun(models.Model):
    """One due time of a schedule, and the query it became."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="runs")
    due_at = models.DateTimeField(help_text="The due time (UTC); a run now's is when it was asked for.")
    manual = models.BooleanField(default=False, help_text="Asked for (run now), not due.")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    body = models.TextField(
        help_text="The query body sent, window filled in (JSON, the customer's key order)."
    )
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.WAITING)
    attempts = models.PositiveIntegerField(default=0, help_text="Times its query was asked for.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True, help_text="Why it waits, failed or was skipped.")
    query = models.OneToOneField(
        "queries.QueryRequest",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        # The exports serializer reads it back by this name: an export's schedule_id.
        related_name="schedule_run",
    )
    created_at = models.DateTimeField(default=now, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-due_at"]
        constraints = [
            # Exactly one run per due time: a second beat (or a restarted one) claiming it again fails here.
            models.UniqueConstraint(fields=["schedule", "due_at"], name="schedule_run_once"),
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="schedule_run_state")]

    def __str__(self) -> str:
        return f"schedule {self.schedule_id} at {self.due_at.isoformat()}"
