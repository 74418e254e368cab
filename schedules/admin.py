"""Operators' view of schedules: per customer, with their next and last run and failures; pause, resume, run now
and delete (the customer's own services, so an operator's action is what the customer's API call would be: a
deleted schedule's row stays, so that its exports still name it)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from insights.admin_actions import OperatorActions
from insights.errors import DomainError
from schedules.models import Schedule, ScheduleRun
from schedules.selectors import last_runs_attach
from schedules.services import schedule_delete, schedule_pause, schedule_resume, schedule_run_now


def _to_the_second(moment: Any) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


class ScheduleRunInline(admin.TabularInline):
    """The latest runs, read-only: what each due time became."""

    model = ScheduleRun
    extra = 0
    can_delete = False
    fields = ("due_at", "manual", "state", "window_start", "window_end", "attempts", "message", "query")
    readonly_fields = fields
    ordering = ("-due_at",)
    verbose_name_plural = "Runs (latest first)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ScheduleRun]:
        return super().get_queryset(request).select_related("query")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Schedule)
class ScheduleAdmin(OperatorActions):
    list_display = (
        "id",
        "customer",
        "cadence",
        "window_shown",
        "description",
        "state",
        "next_run",
        "last_run",
        "consecutive_failures",
    )
    list_filter = ("paused", "every", "customer")
    search_fields = ("description", "customer__key")
    list_select_related = ("customer",)
    actions = ("pause_schedules", "resume_schedules", "run_now", "delete_schedules")
    inlines = (ScheduleRunInline,)
    fields = (
        "customer",
        "description",
        "query",
        "window",
        "window_last",
        "every",
        "at",
        "timezone",
        "output",
        "filename",
        "destination",
        "author",
        "paused",
        "paused_reason",
        "paused_at",
        "consecutive_failures",
        "next_run_at",
        "created_at",
        "updated_at",
        "deleted_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        return super().get_queryset(request).select_related("customer")

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        last_runs_attach(changelist.result_list)  # one query for the page's last runs
        return changelist

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # customers create schedules through the API, which validates them whole

    def has_change_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        return False  # Django's delete would remove the row and its runs: the delete_schedules action instead

    @admin.display(description="runs")
    def cadence(self, obj: Schedule) -> str:
        when = f":{obj.at[3:]}" if obj.every == "hour" else obj.at
        return f"every {obj.every} at {when} {obj.timezone}"

    @admin.display(description="window")
    def window_shown(self, obj: Schedule) -> str:
        return f"last {obj.window_last}" if obj.window == "last" else obj.window

    @admin.display(description="state")
    def state(self, obj: Schedule) -> str:
        if obj.deleted_at is not None:
            return "deleted"
        return f"paused: {obj.paused_reason}" if obj.paused else "running"

    @admin.display(description="next run (UTC)", ordering="next_run_at")
    def next_run(self, obj: Schedule) -> str:
        return _to_the_second(obj.next_run_at)

    @admin.display(description="last run")
    def last_run(self, obj: Schedule) -> str:
        run = getattr(obj, "last_run", None)
        if run is None:
            return "-"
        return f"{_to_the_second(run.due_at)} {run.state}"

    @admin.action(description="Pause selected schedules", permissions=["operate"])
    def pause_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        reason = f"Paused by an operator ({request.user.get_username()})."
        paused = 0
        for schedule in queryset.filter(paused=False, deleted_at=None):
            schedule_pause(schedule=schedule, reason=reason)
            paused += 1
        self.message_user(request, f"Paused {paused} schedule(s).", messages.SUCCESS)

    @admin.action(description="Resume selected schedules", permissions=["operate"])
    def resume_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        resumed = 0
        for schedule in queryset.filter(paused=True, deleted_at=None):
            schedule_resume(schedule=schedule)
            resumed += 1
        self.message_user(request, f"Resumed {resumed} schedule(s).", messages.SUCCESS)

    @admin.action(description="Run selected schedules now", permissions=["operate"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset.filter(deleted_at=None):
            try:
                run = schedule_run_now(schedule=schedule)
            except DomainError as error:
                self.message_user(
                    request, f"Schedule {schedule.pk}: not run: {error.message}", messages.WARNING
                )
                continue
            if run.query is not None:
                self.message_user(
                    request, f"Schedule {schedule.pk}: running as query {run.query.guid}.", messages.SUCCESS
                )
            else:
                self.message_user(request, f"Schedule {schedule.pk}: {run.message}", messages.WARNING)

    @admin.action(
        description="Delete selected schedules (as the customer's DELETE: their exports stay)",
        permissions=["remove"],
    )
    def delete_schedules(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        reason = f"Deleted by an operator ({request.user.get_username()})."
        deleted = 0
        for schedule in queryset.filter(deleted_at=None):
            schedule_delete(schedule=schedule, reason=reason)
            deleted += 1
        self.message_user(request, f"Deleted {deleted} schedule(s).", messages.SUCCESS)
