"""The OpenAPI description of a schedule's body (POST and PATCH /_rest/v4/dwh/schedules...), written by hand
like the query body's (queries.api_schema_query), whose parts it reuses. Never stricter than the service
(schedules.definition): a body the schema refuses, the service refuses too with a 400; it is looser where a
schema cannot say (the hour of an hourly `at`, which zone names exist, the window's width)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter

from queries.api_schema import Components, JsonSchema, SchemaComponent
from queries.api_schema_query import DataSelection, EventFilters, OutputOptions, QueryScope
from queries.export_settings import MAX_DESCRIPTION
from schedules.definition import MAX_DESTINATION_NAME, REQUIRED
from schedules.timing import CALENDAR_WINDOWS, EVERY

SCHEDULE_ID = OpenApiParameter(
    "schedule_id",
    {"type": "integer", "minimum": 1},
    OpenApiParameter.PATH,
    description="The id POST answered; another customer's is a 404.",
)


class ScheduleQuery(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        return {
            "type": "object",
            "description": "A query body as POST /dwh/Q takes it, without `timestamp` (each run fills it in from "
            "`window`) and without the export's settings (they sit beside `query`).",
            "properties": {
                "data": components.of(DataSelection),
                "filters": components.of(EventFilters),
                "scope": components.of(QueryScope),
            },
            "required": ["data"],
            "additionalProperties": False,
        }


def _properties(components: Components) -> JsonSchema:
    return {
        "query": components.of(ScheduleQuery),
        "window": {
            "description": "What each run reads, ending where the due time's hour, day, week (Monday) or month "
            "starts in `timezone`; or `last`: the ISO 8601 duration before the due time (weeks and days on the "
            "local calendar, hours, minutes and seconds elapsed).",
            "oneOf": [
                {"type": "string", "enum": list(CALENDAR_WINDOWS)},
                {
                    "type": "object",
                    "properties": {
                        "last": {"type": "string", "pattern": "^P[0-9WDTHMS]+$", "example": "PT6H"}
                    },
                    "required": ["last"],
                    "additionalProperties": False,
                },
            ],
        },
        "every": {
            "type": "string",
            "enum": list(EVERY),
            "description": "hour: at minute MM of each hour; day: daily at `at`; week: Mondays; month: the 1st.",
        },
        "at": {
            "type": "string",
            "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$",
            "description": "Local time HH:MM (00:00 by default); an hourly schedule takes 00:MM.",
            "example": "02:00",
        },
        "timezone": {
            "type": "string",
            "description": "IANA time zone name (UTC by default).",
            "example": "Europe/Helsinki",
        },
        "output": components.of(OutputOptions),
        "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
        "filename": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,100}$",
            "description": "Names each run's downloads and zip bundle.",
        },
        "destination": {
            "type": "string",
            "nullable": True,
            "minLength": 1,
            "maxLength": MAX_DESTINATION_NAME,
            "description": "One of the customer's destinations, by name; null: the default destination.",
        },
        "paused": {"type": "boolean", "description": "true: it runs nothing until set false again."},
    }


class ScheduleBody(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        return {
            "type": "object",
            "description": "A recurring export: `query` over `window`, `every` hour/day/week/month at `at` "
            "in `timezone`.",
            "properties": _properties(components),
            "required": list(REQUIRED),
            "additionalProperties": False,
        }


class SchedulePatch(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        return {
            "type": "object",
            "description": "The fields to change; `paused` pauses or resumes it.",
            "properties": _properties(components),
            "additionalProperties": False,
        }


SCHEDULE_EXAMPLES = [
    OpenApiExample(
        "Yesterday's calls, every morning in Helsinki",
        value={
            "query": {"data": {"CallEvent": {"fields": ["TimeStamp", "Ani", "Duration"]}}},
            "window": "previous_day",
            "every": "day",
            "at": "02:00",
            "timezone": "Europe/Helsinki",
            "description": "Daily calls",
        },
        request_only=True,
    ),
    OpenApiExample(
        "The last six hours, every hour at :05",
        value={
            "query": {"data": {"ApplicationExitEvent": {"fields": ["FlowId", "ExitReason"]}}},
            "window": {"last": "PT6H"},
            "every": "hour",
            "at": "00:05",
        },
        request_only=True,
    ),
]
