"""A scheduled run through the real runner in process (a DuckDB warehouse of demo sessions, local storage): the
due time's query runs, its export is Completed at the schedule's destination and names the schedule, and the
tick records the run's end. The same over HTTP, with Celery workers and beat: tests/test_schedules_e2e.py."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from insights.models import Destination
from queries import runner
from queries.models import QueryStatus
from schedules.models import RunState, ScheduleRun
from schedules.runs import schedules_tick
from schedules.services import schedule_create
from tests.queries.clients import api_client

# The runner's threads use their own database connections: they must see the rows.
pytestmark = pytest.mark.django_db(transaction=True)

HELSINKI = ZoneInfo("Europe/Helsinki")


def test_a_due_run_becomes_a_completed_export_at_its_destination_naming_its_schedule(
    customer_factory, demo_warehouse, local_exports, sent_tasks
):
    customer = customer_factory("acme")
    archive = Destination.objects.create(customer=customer, name="archive", kind="local", is_default=False)
    body = {
        "query": {"data": {"CallEvent": {"fields": ["TimeStamp", "Ani"]}}},
        "window": "previous_day",
        "every": "day",
        "at": "02:00",
        "timezone": "Europe/Helsinki",
        "destination": "archive",
    }
    # The demo sessions are on 2019-11-25 and 26 (UTC): the run due on the 26th at 02:00 reads the 25th.
    with time_machine.travel(datetime(2019, 11, 26, 1, 0, tzinfo=HELSINKI)) as clock:
        schedule = schedule_create(customer=customer, body=body)
        clock.move_to(datetime(2019, 11, 26, 2, 0, 30, tzinfo=HELSINKI))
        schedules_tick()
        run = ScheduleRun.objects.select_related("query").get(schedule=schedule)
        assert run.state == RunState.SUBMITTED and run.query is not None
        runner.query_run(query_id=run.query.pk)
        schedules_tick()
    run.refresh_from_db()
    query = run.query
    assert query is not None
    query.refresh_from_db()
    assert query.status == QueryStatus.COMPLETED, query.messages
    assert run.state == RunState.COMPLETED and run.finished_at is not None
    assert query.destination_id == archive.pk
    lines = gzip.decompress((local_exports / query.files[0]["path"]).read_bytes()).decode().splitlines()
    assert lines[0] == "TimeStamp,Ani" and len(lines) > 1
    assert all("2019-11-24T22:00:00.000Z" <= line[:24] < "2019-11-25T22:00:00.000Z" for line in lines[1:])
    export = api_client(customer).get(f"/_rest/v4/dwh/exports/{query.guid}").json()
    assert (export["status"], export["schedule_id"]) == ("Completed", schedule.pk)
    assert (export["from"], export["to"]) == ("2019-11-24T22:00:00.000Z", "2019-11-25T22:00:00.000Z")
    assert json.loads(query.body)["timestamp"] == {
        "$gte": "2019-11-25T00:00:00+02:00",
        "$lt": "2019-11-26T00:00:00+02:00",
    }
