"""What the schedules API answers, said once: DRF output serializers (the OpenAPI schema is generated from
them). A schedule's own clock (its next run, a run's due time and window) is written in its time zone, with the
offset; the other instants as every instant of the API: UTC, to the millisecond."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from queries.serializers import InstantField
from schedules.documents import schedule_document
from schedules.models import RunState, Schedule, ScheduleRun
from schedules.timing import CALENDAR_WINDOWS, EVERY

LOCAL_INSTANT = {
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601 in the schedule's time zone, with its offset: 2026-03-30T02:00:00+03:00.",
}


def local_text(instant: datetime, zone: str) -> str:
    return instant.astimezone(ZoneInfo(zone)).isoformat()


@extend_schema_field({**LOCAL_INSTANT, "nullable": True})
class LocalInstantField(serializers.Field):
    """An instant in the time zone named by the object's `timezone` (the serializer's context)."""

    def to_representation(self, value: datetime) -> str:
        return local_text(value, self.context["timezone"])


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": list(CALENDAR_WINDOWS)},
            {
                "type": "object",
                "properties": {"last": {"type": "string", "example": "P7D"}},
                "required": ["last"],
                "additionalProperties": False,
            },
        ]
    }
)
class WindowField(serializers.JSONField):
    pass


@extend_schema_field({"type": "object", "additionalProperties": True, "description": "The query body sent."})
class QueryDocumentField(serializers.JSONField):
    pass


class ScheduleRunSerializer(serializers.Serializer):
    """One due time of a schedule and the export it became (`export`: its guid, null until it is created).
    `from` and `to` are its window, [from, to)."""

    due_at = serializers.SerializerMethodField()
    manual = serializers.BooleanField(help_text="Asked for with run now, not due.")
    state = serializers.ChoiceField(
        choices=RunState.values,
        help_text="waiting (for a free slot: retried), submitted, completed, failed, or skipped (still waiting "
        "when the schedule was paused or deleted).",
    )
    attempts = serializers.IntegerField(min_value=0, help_text="Times its export was asked for.")
    message = serializers.CharField(help_text="Why it waits, failed or was skipped; empty otherwise.")
    export = serializers.SerializerMethodField()

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # `from` is a Python keyword: it cannot be declared as a class attribute.
        fields["from"] = serializers.SerializerMethodField(method_name="get_window_from")
        fields["to"] = serializers.SerializerMethodField(method_name="get_window_to")
        return fields

    def _zone(self, run: ScheduleRun) -> str:
        return str(self.context.get("timezone") or run.schedule.timezone)

    @extend_schema_field(LOCAL_INSTANT)
    def get_due_at(self, run: ScheduleRun) -> str:
        return local_text(run.due_at, self._zone(run))

    @extend_schema_field({**LOCAL_INSTANT, "description": "The window's start (inclusive)."})
    def get_window_from(self, run: ScheduleRun) -> str:
        return local_text(run.window_start, self._zone(run))

    @extend_schema_field({**LOCAL_INSTANT, "description": "The window's end (exclusive)."})
    def get_window_to(self, run: ScheduleRun) -> str:
        return local_text(run.window_end, self._zone(run))

    @extend_schema_field({"type": "string", "pattern": "^[0-9a-f]{32}$", "nullable": True})
    def get_export(self, run: ScheduleRun) -> str | None:
        return run.query.guid if run.query is not None else None


class ScheduleSerializer(serializers.Serializer):
    """A schedule: its settings as the customer wrote them (defaults filled in), and how its runs go."""

    id = serializers.IntegerField(source="pk", min_value=1)
    query = QueryDocumentField(help_text="The query body without timestamp, in the customer's key order.")
    window = WindowField()
    every = serializers.ChoiceField(choices=list(EVERY))
    at = serializers.RegexField(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", help_text="Local time HH:MM.")
    timezone = serializers.CharField(help_text="IANA time zone name.")
    output = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="The export's output options, as given."
    )
    description = serializers.CharField(required=False)
    filename = serializers.CharField(required=False)
    destination = serializers.CharField(allow_null=True, help_text="A destination's name; null: the default.")
    paused = serializers.BooleanField()
    paused_reason = serializers.CharField(
        allow_null=True,
        help_text="Why it is paused (by the customer, or after failed runs); null when running.",
    )
    consecutive_failures = serializers.IntegerField(
        min_value=0, help_text="Failed runs since the last good one."
    )
    next_run_at = LocalInstantField(help_text="The next due time; null while paused.")
    last_run = ScheduleRunSerializer(allow_null=True, help_text="The run with the latest due time.")
    created_at = InstantField()
    updated_at = InstantField()

    def to_representation(self, instance: Schedule) -> dict[str, Any]:
        body: dict[str, Any] = {"id": instance.pk, **schedule_document(instance)}
        context = {"timezone": instance.timezone}
        body["paused_reason"] = instance.paused_reason if instance.paused else None
        body["consecutive_failures"] = instance.consecutive_failures
        body["next_run_at"] = (
            local_text(instance.next_run_at, instance.timezone)
            if instance.next_run_at and not instance.paused
            else None
        )
        last_run = getattr(instance, "last_run", None)
        body["last_run"] = ScheduleRunSerializer(last_run, context=context).data if last_run else None
        body["created_at"] = InstantField().to_representation(instance.created_at)
        body["updated_at"] = InstantField().to_representation(instance.updated_at)
        return body


class ScheduleListSerializer(serializers.Serializer):
    schedules = ScheduleSerializer(many=True)


class ScheduleCreatedSerializer(serializers.Serializer):
    """The new schedule's id and its first due time."""

    id = serializers.IntegerField(source="pk", min_value=1)
    next_run_at = LocalInstantField(help_text="The first due time; null when created paused.")

    def to_representation(self, instance: Schedule) -> dict[str, Any]:
        next_run = instance.next_run_at
        return {
            "id": instance.pk,
            "next_run_at": local_text(next_run, instance.timezone)
            if next_run and not instance.paused
            else None,
        }


class ScheduleRunNowSerializer(ScheduleRunSerializer):
    """The run just asked for: submitted (its export's guid), or waiting for a free slot (retried)."""

    schedule_id = serializers.IntegerField(min_value=1)

    def to_representation(self, instance: ScheduleRun) -> dict[str, Any]:
        return {
            "schedule_id": instance.schedule_id,
            **ScheduleRunSerializer(instance, context=self.context).data,
        }
