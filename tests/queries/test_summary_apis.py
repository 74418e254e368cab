"""GET /dwh/Q/{guid}/summary and POST /dwh/summary through Django's test client, on a real DuckDB warehouse; the
export runs in-process (query_run) as a worker runs it. Both shapes over HTTP: tests/test_service_e2e.py."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import duckdb
import pytest
from rest_framework.test import APIClient

from queries import preview, runner
from queries.catalog import catalog
from queries.errors import QueryNotFound
from queries.models import QueryRequest, QueryStatus
from tests.queries.clients import api_client as _client

# The runner's supervisor and upload threads use their own database connections: they must see the rows.
pytestmark = pytest.mark.django_db(transaction=True)

WINDOW = {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-26T00:00:00Z"}
CALLS = {
    "timestamp": WINDOW,
    "data": {
        "CallEvent": {"fields": ["SessionId", "Duration", "DisconnectReason"]},
        "ApplicationExitEvent": {"fields": ["SessionId", "ExitReason"]},
    },
    "filters": {"CallEvent": {"Duration": {"$gte": 5}}},
}


@pytest.fixture()
def warehouse(demo_warehouse, settings, local_exports):
    settings.EXPORT_PART_BYTES = 4096
    return demo_warehouse


def _post(client: APIClient, path: str, body: object):
    return client.post(path, data=json.dumps(body), content_type="application/json")


def _completed(customer, body: dict[str, Any]) -> QueryRequest:
    from queries.services import query_create

    query = query_create(customer=customer, body=body)
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert query.status == QueryStatus.COMPLETED, query.messages
    return query


def _same_summary(left: dict[str, Any], right: dict[str, Any]) -> None:
    """Equal, but for the duration's sum and mean: float addition depends on the order rows are added in."""
    assert left["call_duration"]["sum"] == pytest.approx(right["call_duration"]["sum"], rel=1e-12)
    assert left["call_duration"]["mean"] == pytest.approx(right["call_duration"]["mean"], rel=1e-12)
    strip = lambda s: {**s, "call_duration": {**s["call_duration"], "sum": 0, "mean": 0}}  # noqa: E731
    assert strip(left) == strip(right)


def test_the_export_pass_summary_is_the_warehouse_summary(
    customer_factory, warehouse, local_exports, sent_tasks
):
    acme = customer_factory("acme")
    client = _client(acme)
    query = _completed(acme, CALLS)
    counted = client.get(f"/_rest/v4/dwh/Q/{query.guid}/summary")
    computed = _post(client, "/_rest/v4/dwh/summary", CALLS)
    assert counted.status_code == computed.status_code == 200, (counted.content, computed.content)
    summary = counted.json()
    _same_summary(summary, computed.json())
    assert query.row_count and summary["rows"] == query.row_count
    assert set(summary["rows_per_event"]) == {"CallEvent", "ApplicationExitEvent"}
    assert summary["call_duration"]["min"] >= 5 and summary["disconnect_reason"]
    # The manifest carries the same object; the files carry only the output columns.
    manifest = json.loads((local_exports / query.manifest_path).read_text())
    assert manifest["summary"] == summary
    assert [column["name"] for column in manifest["schema"]] == [
        "EventName",
        "SessionId",
        "Duration",
        "DisconnectReason",
        "ExitReason",
    ]
    first = gzip.decompress((local_exports / query.files[0]["path"]).read_bytes()).decode().splitlines()[0]
    assert "_summary" not in first and first.count(",") == 4


def test_a_window_alone_summarises_every_event_of_the_customer(customer_factory, warehouse, sent_tasks):
    answer = _post(_client(customer_factory("acme")), "/_rest/v4/dwh/summary", {"timestamp": WINDOW})
    assert answer.status_code == 200, answer.content
    with duckdb.connect(str(warehouse), read_only=True) as con:
        expected = dict(
            con.execute(
                'SELECT "EventName", COUNT(*) FROM events WHERE "CustomerId" = ? AND "TimeStamp" >= ? '
                'AND "TimeStamp" < ? GROUP BY 1',
                ["acme", "2019-11-25", "2019-11-26"],
            ).fetchall()
        )
    summary = answer.json()
    assert summary["rows_per_event"] == expected and len(expected) == len(catalog().events)
    assert summary["rows"] == sum(expected.values())
    assert sum(n for n, _ in summary["timeframe_stat"]["hour_in_day"]) == summary["rows"]
    assert [day for _, day in summary["timeframe_stat"]["day_in_week"]] == [1, 2, 3, 4, 5, 6, 7]


def test_a_summary_waits_for_completed(customer_factory, warehouse, sent_tasks, completed_query_factory):
    from queries.services import query_create

    acme = customer_factory("acme")
    client = _client(acme)
    pending = query_create(customer=acme, body=CALLS)
    answer = client.get(f"/_rest/v4/dwh/Q/{pending.guid}/summary")
    assert answer.status_code == 409 and "Pending" in answer.json()["message"]
    older = completed_query_factory(acme)  # completed before summaries were kept
    answer = client.get(f"/_rest/v4/dwh/Q/{older.guid}/summary")
    assert answer.status_code == 409 and "POST /_rest/v4/dwh/summary" in answer.json()["message"]


def test_another_customers_summary_is_the_documented_404(customer_factory, warehouse, sent_tasks):
    theirs = _completed(customer_factory("globex"), CALLS)
    client = _client(customer_factory("acme"))
    for guid in (theirs.guid, "0" * 32, "short"):
        answer = client.get(f"/_rest/v4/dwh/Q/{guid}/summary")
        assert (answer.status_code, answer.json()) == (404, [QueryNotFound().body[0]]), guid


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, '"timestamp"'),
        ([], "object"),
        ({"timestamp": WINDOW, "limit": 5}, "limit"),
        ({"timestamp": WINDOW, "data": {"NoSuchEvent": {"fields": ["TimeStamp"]}}}, "NoSuchEvent"),
        ({"timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lt": "2021-11-26T00:00:00Z"}}, "window"),
    ],
)
def test_bad_summary_bodies_are_400s(customer_factory, warehouse, body, message):
    answer = _post(_client(customer_factory("acme")), "/_rest/v4/dwh/summary", body)
    assert answer.status_code == 400, answer.content
    assert message in answer.json()["message"]


def test_previews_and_summaries_share_a_rate_limit(customer_factory, warehouse, settings):
    settings.PREVIEW_PER_MINUTE = 2
    client = _client(customer_factory("acme"))
    if time.time() % 60 > 57:
        time.sleep(3)  # all three calls in one minute
    assert _post(client, "/_rest/v4/dwh/summary", {"timestamp": WINDOW}).status_code == 200
    assert _post(client, "/_rest/v4/dwh/Q/preview", {**CALLS, "limit": 1}).status_code == 200
    third = _post(client, "/_rest/v4/dwh/summary", {"timestamp": WINDOW})
    assert third.status_code == 429 and 1 <= int(third["Retry-After"]) <= 60
    assert "previews and summaries" in third.json()["message"]


def test_a_summary_past_the_time_limit_is_a_422(customer_factory, warehouse, settings, monkeypatch):
    """Three statements share the limit: the timer fires during the first; the call ends without the others."""
    settings.PREVIEW_TIME_LIMIT_SECONDS = 0.5
    real = preview.warehouse_engine
    executed: list[str] = []

    def slow_engine() -> Any:
        engine = real()
        execute = engine.execute

        def stalled(statement: Any, **kwargs: Any) -> Any:
            executed.append(statement.sql)
            time.sleep(1)  # the timer cancels the engine meanwhile
            yield from execute(statement, **kwargs)

        setattr(engine, "execute", stalled)  # noqa: B010 (mypy: a method cannot be assigned)
        return engine

    monkeypatch.setattr(preview, "warehouse_engine", slow_engine)
    answer = _post(_client(customer_factory("acme")), "/_rest/v4/dwh/summary", {"timestamp": WINDOW})
    assert answer.status_code == 422 and "submit it as a query" in answer.json()["message"]
    assert len(executed) == 1
