"""The schedules resource (/_rest/v4/dwh/schedules...): thin views over schedules.services and selectors."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from queries import api_schema as doc
from queries.apis import QueryApiBase
from schedules.api_schema import SCHEDULE_EXAMPLES, SCHEDULE_ID, ScheduleBody, SchedulePatch
from schedules.selectors import schedule_get, schedules_list
from schedules.serializers import (
    ScheduleCreatedSerializer,
    ScheduleListSerializer,
    ScheduleRunNowSerializer,
    ScheduleSerializer,
)
from schedules.services import schedule_create, schedule_delete, schedule_run_now, schedule_update

NOT_FOUND = doc.error("No schedule of this customer has this id (another customer's, or deleted).")
BAD_SCHEDULE = doc.error(
    "The body is not a schedule the service takes: an unknown field, a bad window, every, at, timezone or "
    "destination, a window wider than the customer's limit, or a query that POST /dwh/Q would refuse once "
    "the window is filled in (the same messages)."
)


def _author(principal: Any) -> str:
    """Who asked: an API key's name, or a user's (as queries.apis records a query's author)."""
    name = getattr(principal, "name", None)
    return str(name) if name is not None else str(principal.get_username())


class ScheduleCollectionApi(QueryApiBase):
    @extend_schema(
        operation_id="schedule_list",
        summary="The customer's schedules",
        tags=["schedules"],
        parameters=doc.secured_headers(),
        responses=doc.secured({200: ScheduleListSerializer}),
    )
    def get(self, request: Request) -> Response:
        schedules = schedules_list(customer=self.customer(request))
        return Response({"schedules": [ScheduleSerializer(s).data for s in schedules]})

    @extend_schema(
        operation_id="schedule_create",
        summary="Create a schedule (a recurring export)",
        description="Each due time, the query is sent as an ordinary query over the window (it takes a slot "
        "like any other; at the limit it waits for the next tick); each export carries `schedule_id`.",
        tags=["schedules"],
        request=ScheduleBody,
        examples=SCHEDULE_EXAMPLES,
        parameters=doc.secured_headers(),
        responses=doc.secured(
            {
                201: ScheduleCreatedSerializer,
                400: BAD_SCHEDULE,
                413: doc.error("The body is larger than the limit (API_MAX_BODY_BYTES)."),
                415: doc.error("The body is not application/json."),
            }
        ),
    )
    def post(self, request: Request) -> Response:
        schedule = schedule_create(
            customer=self.customer(request), body=request.data, author=_author(request.user)
        )
        return Response(ScheduleCreatedSerializer(schedule).data, status=status.HTTP_201_CREATED)


class ScheduleDetailApi(QueryApiBase):
    @extend_schema(
        operation_id="schedule_get",
        summary="One schedule, with its next and last run",
        tags=["schedules"],
        parameters=[SCHEDULE_ID, *doc.secured_headers()],
        responses=doc.secured({200: ScheduleSerializer, 404: NOT_FOUND}),
    )
    def get(self, request: Request, schedule_id: str) -> Response:
        schedule = schedule_get(customer=self.customer(request), schedule_id=schedule_id)
        return Response(ScheduleSerializer(schedule).data)

    @extend_schema(
        operation_id="schedule_update",
        summary="Change a schedule, pause or resume it",
        description="The fields sent replace the schedule's; a change of window, every, at or timezone counts "
        'from now. `{"paused": true}` pauses it (runs waiting for a slot are skipped); false resumes it from '
        "its next due time after now (those missed while paused are not run) and clears its failure count.",
        tags=["schedules"],
        request=SchedulePatch,
        parameters=[SCHEDULE_ID, *doc.secured_headers()],
        responses=doc.secured(
            {
                200: ScheduleSerializer,
                400: BAD_SCHEDULE,
                404: NOT_FOUND,
                413: doc.error("The body is larger than the limit (API_MAX_BODY_BYTES)."),
                415: doc.error("The body is not application/json."),
            }
        ),
    )
    def patch(self, request: Request, schedule_id: str) -> Response:
        schedule = schedule_get(customer=self.customer(request), schedule_id=schedule_id)
        schedule = schedule_update(schedule=schedule, body=request.data)
        return Response(
            ScheduleSerializer(schedule_get(customer=schedule.customer, schedule_id=schedule.pk)).data
        )

    @extend_schema(
        operation_id="schedule_delete",
        summary="Delete a schedule",
        description="It never runs again and leaves the list; its exports stay, and keep its `schedule_id`.",
        tags=["schedules"],
        parameters=[SCHEDULE_ID, *doc.secured_headers()],
        responses=doc.secured({204: OpenApiResponse(description="Deleted."), 404: NOT_FOUND}),
    )
    def delete(self, request: Request, schedule_id: str) -> Response:
        schedule_delete(schedule=schedule_get(customer=self.customer(request), schedule_id=schedule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ScheduleRunApi(QueryApiBase):
    @extend_schema(
        operation_id="schedule_run_now",
        summary="Run a schedule now",
        description="A run due now, beside its due times: its window is the one a run due now reads. Submitted "
        "at once (`export` is the new export's guid), or waiting for a free slot like any run. Asked twice in "
        "the same second, it is one run.",
        tags=["schedules"],
        request=None,
        parameters=[SCHEDULE_ID, *doc.secured_headers()],
        responses=doc.secured(
            {
                202: ScheduleRunNowSerializer,
                404: NOT_FOUND,
                409: doc.error("The schedule is paused: resume it first."),
            }
        ),
    )
    def post(self, request: Request, schedule_id: str) -> Response:
        run = schedule_run_now(
            schedule=schedule_get(customer=self.customer(request), schedule_id=schedule_id)
        )
        return Response(ScheduleRunNowSerializer(run).data, status=status.HTTP_202_ACCEPTED)
