"""The schedules API in process (DRF's APIClient on the test database): every 400 and 404 in the error envelope,
the happy paths, and the exports' `schedule_id`. Over HTTP with real workers: tests/test_schedules_e2e.py."""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from insights.models import Destination
from queries.models import QueryRequest
from queries.services import query_create
from schedules.models import RunState, Schedule, ScheduleRun
from tests.queries.clients import api_client

pytestmark = pytest.mark.django_db

COLLECTION = "/_rest/v4/dwh/schedules"
HELSINKI = ZoneInfo("Europe/Helsinki")
QUERY = {"data": {"CallEvent": {"fields": ["TimeStamp", "Ani"]}}}
BODY = {
    "query": QUERY,
    "window": "previous_day",
    "every": "day",
    "at": "02:00",
    "timezone": "Europe/Helsinki",
    "output": {"format": "csv", "header": "display"},
    "description": "Yesterday's calls",
}
# Mid-summer in Helsinki (EEST, +03:00): the next 02:00 is tomorrow's.
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=HELSINKI)
NOT_FOUND = {"code": 404, "message": "No schedule of yours has this id."}
OBJECT_HINT = (
    'The body must be a JSON object such as {"query": ..., "window": "previous_day", "every": "day"}, '
    "not an array."
)
FIELDS_HINT = (
    "colour is not a schedule field; the fields are query, window, every, at, timezone, output, description, "
    "filename, destination, paused."
)
WINDOW_HINT = (
    '"window" must be one of previous_hour, previous_day, previous_week, previous_month, '
    'or {"last": <ISO 8601 duration>} such as {"last": "PT6H"} or {"last": "P7D"}'
)
LAST_HINT = (
    "window.last must be a positive ISO 8601 duration in weeks (P2W), or days and hours, minutes, seconds "
    "(P1D, PT6H, P1DT12H), not "
)
MONTHS = "; for calendar months use previous_month."
ZONE_HINT = '"timezone" must be an IANA time zone name such as "Europe/Helsinki" or "UTC", not '


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


def _post(client: APIClient, body: object, path: str = COLLECTION):
    return client.post(path, data=json.dumps(body), content_type="application/json")


def _patch(client: APIClient, schedule_id: int, body: object):
    return client.patch(f"{COLLECTION}/{schedule_id}", data=json.dumps(body), content_type="application/json")


def _created(client: APIClient, body: dict | None = None) -> int:
    response = _post(client, body or BODY)
    assert response.status_code == 201, response.json()
    return int(response.json()["id"])


def test_post_answers_201_with_the_id_and_the_first_due_time_in_the_schedules_zone(customer_factory):
    response = _post(api_client(customer_factory("acme")), BODY)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "next_run_at"}
    assert body["next_run_at"] == "2026-06-11T02:00:00+03:00"
    schedule = Schedule.objects.get(pk=body["id"])
    assert schedule.customer.key == "acme" and schedule.author == "test"


def test_get_shows_the_schedule_as_written_with_its_state(customer_factory):
    client = api_client(customer_factory("acme"))
    schedule_id = _created(client)
    shown = client.get(f"{COLLECTION}/{schedule_id}").json()
    assert shown == {
        "id": schedule_id,
        **BODY,
        "destination": None,
        "paused": False,
        "paused_reason": None,
        "consecutive_failures": 0,
        "next_run_at": "2026-06-11T02:00:00+03:00",
        "last_run": None,
        "created_at": "2026-06-10T09:00:00.000Z",
        "updated_at": "2026-06-10T09:00:00.000Z",
    }
    assert list(shown["query"]["data"]["CallEvent"]["fields"]) == ["TimeStamp", "Ani"]


def test_defaults_and_a_last_window(customer_factory):
    client = api_client(customer_factory("acme"))
    schedule_id = _created(client, {"query": QUERY, "window": {"last": "PT6H"}, "every": "hour"})
    shown = client.get(f"{COLLECTION}/{schedule_id}").json()
    assert (shown["window"], shown["at"], shown["timezone"]) == ({"last": "PT6H"}, "00:00", "UTC")
    assert shown["next_run_at"] == "2026-06-10T10:00:00+00:00"


def test_the_list_holds_the_customers_own_schedules_only(customer_factory):
    acme, globex = api_client(customer_factory("acme")), api_client(customer_factory("globex"))
    mine = [_created(acme), _created(acme, {**BODY, "every": "week"})]
    _created(globex)
    listed = acme.get(COLLECTION).json()
    assert [s["id"] for s in listed["schedules"]] == mine
    assert listed["schedules"][1]["every"] == "week"


def test_another_customers_schedule_is_a_404_everywhere(customer_factory):
    acme, globex = api_client(customer_factory("acme")), api_client(customer_factory("globex"))
    schedule_id = _created(acme)
    detail = f"{COLLECTION}/{schedule_id}"
    for response in (
        globex.get(detail),
        _patch(globex, schedule_id, {"paused": True}),
        globex.delete(detail),
        _post(globex, {}, f"{detail}/run"),
    ):
        assert response.status_code == 404 and response.json() == NOT_FOUND
    assert acme.get(detail).json()["paused"] is False  # untouched


@pytest.mark.parametrize("schedule_id", ["0", "abc", "99999999999999999999", "1.5", "%C2%B9"])
def test_ids_that_name_no_schedule_are_a_404(customer_factory, schedule_id):
    client = api_client(customer_factory("acme"))
    response = client.get(f"{COLLECTION}/{schedule_id}")
    assert response.status_code == 404 and response.json() == NOT_FOUND


def test_patch_changes_fields_and_pauses_and_resumes(customer_factory):
    client = api_client(customer_factory("acme"))
    schedule_id = _created(client)
    changed = _patch(client, schedule_id, {"at": "06:30", "description": "Calls"})
    assert changed.status_code == 200
    assert (changed.json()["at"], changed.json()["description"]) == ("06:30", "Calls")
    assert changed.json()["next_run_at"] == "2026-06-11T06:30:00+03:00"
    paused = _patch(client, schedule_id, {"paused": True}).json()
    assert (paused["paused"], paused["paused_reason"], paused["next_run_at"]) == (
        True,
        "Paused by the customer.",
        None,
    )
    resumed = _patch(client, schedule_id, {"paused": False}).json()
    assert (resumed["paused"], resumed["paused_reason"]) == (False, None)
    assert resumed["next_run_at"] == "2026-06-11T06:30:00+03:00"


def test_delete_answers_204_and_the_schedule_is_gone_but_its_exports_keep_its_id(
    customer_factory, sent_tasks
):
    client = api_client(customer_factory("acme", max_concurrent_queries=5))
    schedule_id = _created(client)
    export = _post(client, {}, f"{COLLECTION}/{schedule_id}/run").json()["export"]
    response = client.delete(f"{COLLECTION}/{schedule_id}")
    assert response.status_code == 204 and response.content == b""
    assert client.get(f"{COLLECTION}/{schedule_id}").status_code == 404
    assert client.get(COLLECTION).json() == {"schedules": []}
    assert client.delete(f"{COLLECTION}/{schedule_id}").status_code == 404
    assert client.get(f"/_rest/v4/dwh/exports/{export}").json()["schedule_id"] == schedule_id


def test_run_now_answers_202_with_the_new_export(customer_factory, sent_tasks):
    client = api_client(customer_factory("acme", max_concurrent_queries=5))
    schedule_id = _created(client)
    response = _post(client, {}, f"{COLLECTION}/{schedule_id}/run")
    assert response.status_code == 202
    run = response.json()
    assert run == {
        "schedule_id": schedule_id,
        "due_at": "2026-06-10T12:00:00+03:00",
        "manual": True,
        "state": "submitted",
        "attempts": 1,
        "message": "",
        "export": run["export"],
        "from": "2026-06-09T00:00:00+03:00",
        "to": "2026-06-10T00:00:00+03:00",
    }
    assert re.fullmatch(r"[0-9a-f]{32}", run["export"])
    query = QueryRequest.objects.get(guid=run["export"])
    assert json.loads(query.body) == {
        "timestamp": {"$gte": "2026-06-09T00:00:00+03:00", "$lt": "2026-06-10T00:00:00+03:00"},
        **QUERY,
        "output": BODY["output"],
        "description": BODY["description"],
    }
    assert (query.output["header"], query.description, query.author) == (
        "display",
        BODY["description"],
        f"schedule {schedule_id}",
    )
    assert client.get(f"{COLLECTION}/{schedule_id}").json()["last_run"] == {
        k: v for k, v in run.items() if k != "schedule_id"
    }


def test_run_now_at_the_limit_waits_and_a_paused_schedule_is_a_409(customer_factory, sent_tasks):
    customer = customer_factory("acme", max_concurrent_queries=1)
    client = api_client(customer)
    schedule_id = _created(client)
    query_create(
        customer=customer,
        body={"timestamp": {"$gte": "2026-06-01T00:00:00Z", "$lt": "2026-06-02T00:00:00Z"}, **QUERY},
    )
    waiting = _post(client, {}, f"{COLLECTION}/{schedule_id}/run").json()
    assert (waiting["state"], waiting["export"]) == ("waiting", None)
    assert waiting["message"].startswith(
        "Waiting for a free slot: max concurrent queries per user (1) reached"
    )
    _patch(client, schedule_id, {"paused": True})
    assert ScheduleRun.objects.get(schedule_id=schedule_id).state == RunState.SKIPPED  # pausing skips it
    refused = _post(client, {}, f"{COLLECTION}/{schedule_id}/run")
    assert refused.status_code == 409
    assert refused.json() == {"code": 409, "message": "The schedule is paused: resume it first."}


def test_the_export_object_carries_schedule_id_and_a_page_reads_them_in_one_query(
    customer_factory, sent_tasks
):
    customer = customer_factory("acme", max_concurrent_queries=50)
    client = api_client(customer)
    schedule_id = _created(client)
    adhoc = query_create(
        customer=customer,
        body={"timestamp": {"$gte": "2026-06-01T00:00:00Z", "$lt": "2026-06-02T00:00:00Z"}, **QUERY},
    )
    with time_machine.travel(NOW.replace(second=1), tick=False):
        scheduled = _post(client, {}, f"{COLLECTION}/{schedule_id}/run").json()["export"]
    assert client.get(f"/_rest/v4/dwh/exports/{scheduled}").json()["schedule_id"] == schedule_id
    assert client.get(f"/_rest/v4/dwh/exports/{adhoc.guid}").json()["schedule_id"] is None
    listed = {e["id"]: e["schedule_id"] for e in client.get("/_rest/v4/dwh/exports").json()["exports"]}
    assert listed == {scheduled: schedule_id, adhoc.guid: None}

    def page_queries(limit: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(f"/_rest/v4/dwh/exports?limit={limit}").status_code == 200
        return len(captured)

    for second in range(2, 8):  # more scheduled exports: the page's query count must not grow with them
        with time_machine.travel(NOW.replace(second=second), tick=False):
            _post(client, {}, f"{COLLECTION}/{schedule_id}/run")
    assert page_queries(2) == page_queries(8)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            [],
            OBJECT_HINT,
        ),
        (
            {**BODY, "colour": "red"},
            FIELDS_HINT,
        ),
        ({k: v for k, v in BODY.items() if k != "query"}, '"query" is required.'),
        ({k: v for k, v in BODY.items() if k != "window"}, '"window" is required.'),
        ({k: v for k, v in BODY.items() if k != "every"}, '"every" is required.'),
        (
            {**BODY, "window": "yesterday"},
            WINDOW_HINT + ', not "yesterday".',
        ),
        (
            {**BODY, "window": {"last": "PT6H", "extra": 1}},
            WINDOW_HINT + ".",
        ),
        (
            {**BODY, "window": {"last": "P1M"}},
            LAST_HINT + '"P1M"' + MONTHS,
        ),
        (
            {**BODY, "window": {"last": 6}},
            LAST_HINT + "a number" + MONTHS,
        ),
        (
            {**BODY, "window": {"last": "P60D"}},
            "Query range too wide: the schedule's window spans up to 60 days, more than the 31 days allowed.",
        ),
        ({**BODY, "every": "fortnight"}, '"every" must be one of hour, day, week, month, not "fortnight".'),
        (
            {**BODY, "at": "2:00"},
            '"at" must be a local time HH:MM (24-hour clock) such as "02:00", not "2:00".',
        ),
        (
            {**BODY, "at": "24:00"},
            '"at" must be a local time HH:MM (24-hour clock) such as "02:00", not "24:00".',
        ),
        (
            {**BODY, "every": "hour", "at": "02:15"},
            'An hourly schedule runs at a minute past each hour: write "at" as "00:MM" ("00:15").',
        ),
        (
            {**BODY, "timezone": "Mars/Olympus_Mons"},
            ZONE_HINT + '"Mars/Olympus_Mons".',
        ),
        (
            {**BODY, "timezone": "../../etc/passwd"},
            ZONE_HINT + '"../../etc/passwd".',
        ),
        (
            {**BODY, "timezone": "Europe/Helsinki\u0000"},
            ZONE_HINT + '"Europe/Helsinki\\x00".',
        ),
        (
            {**BODY, "query": "calls"},
            '"query" must be a query body without "timestamp" (an object), not a string.',
        ),
        (
            {**BODY, "query": {**QUERY, "timestamp": {"$gte": "2019-11-25T00:00:00Z"}}},
            '"query" must not hold "timestamp": each run fills it in from "window".',
        ),
        (
            {**BODY, "query": {**QUERY, "output": {}}},
            '"output" is a setting of the schedule: put it beside "query", not in it.',
        ),
        (
            {**BODY, "query": {"data": {"Application ExitEvent": {"fields": ["FlowId"]}}}},
            "Application ExitEvent is not a valid schema name.",
        ),
        (
            {**BODY, "query": {"data": {"CallEvent": {"fields": ["Flow Id"]}}}},
            "Flow Id is not a valid field.",
        ),
        (
            {**BODY, "output": {"format": "pdf"}},
            'output.format must be one of csv, xlsx, parquet, ndjson, not "pdf".',
        ),
        (
            {**BODY, "destination": "nowhere"},
            '"destination" nowhere is not one of your destinations (ask your operator).',
        ),
        (
            {**BODY, "destination": "archive\u0000"},
            '"destination" archive\\x00 is not one of your destinations (ask your operator).',
        ),
        (
            {**BODY, "destination": 5},
            '"destination" must be the name of one of your destinations (a string), or null for the default.',
        ),
        ({**BODY, "paused": "yes"}, '"paused" must be true or false, not a string.'),
    ],
)
def test_a_bad_schedule_is_a_400_in_the_error_envelope(customer_factory, body, message):
    client = api_client(customer_factory("acme"))
    response = _post(client, body)
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": message}
    assert not Schedule.objects.exists()


def test_a_query_error_with_a_documented_object_message_is_passed_on(customer_factory):
    body = {
        **BODY,
        "query": {"data": {"CallEvent": {"fields": ["Ani"]}}, "filters": {"CallEvent": {"Ani": {"eq": "1"}}}},
    }
    response = _post(api_client(customer_factory("acme")), body)
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "message": {
            "Operators": "Invalid operators [eq], try to use any of these ($gte, $lte, $gt, $lt, $ne, $eq)."
        },
    }


def test_a_bad_patch_is_a_400_and_changes_nothing(customer_factory):
    client = api_client(customer_factory("acme"))
    schedule_id = _created(client)
    before = client.get(f"{COLLECTION}/{schedule_id}").json()
    bodies: tuple[object, ...] = (
        {"timezone": "Nowhere"},
        {"window": {"last": "P0D"}},
        {"query": {"data": {}}},
        {"id": 3},
        [1],
    )
    for body in bodies:
        response = _patch(client, schedule_id, body)
        assert response.status_code == 400, body
        assert response.json()["code"] == 400
    assert client.get(f"{COLLECTION}/{schedule_id}").json() == before


def test_a_customers_schedules_are_capped(customer_factory, settings):
    settings.SCHEDULE_MAX_PER_CUSTOMER = 1
    client = api_client(customer_factory("acme"))
    _created(client)
    response = _post(client, BODY)
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "message": "A customer may have at most 1 schedules; delete one first.",
    }


def test_a_destination_by_name_is_where_the_runs_publish(customer_factory, sent_tasks):
    customer = customer_factory("acme", max_concurrent_queries=5)
    archive = Destination.objects.create(customer=customer, name="archive", kind="local", is_default=False)
    client = api_client(customer)
    schedule_id = _created(client, {**BODY, "destination": "archive"})
    assert client.get(f"{COLLECTION}/{schedule_id}").json()["destination"] == "archive"
    export = _post(client, {}, f"{COLLECTION}/{schedule_id}/run").json()["export"]
    assert QueryRequest.objects.get(guid=export).destination_id == archive.pk
    assert _patch(client, schedule_id, {"destination": None}).json()["destination"] is None
