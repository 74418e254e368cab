"""POST /dwh/Q/preview: the first `limit` rows of exactly the export's result, as JSON, at once and bounded.

The rows are checked against the reference evaluator on DuckDB and PostgreSQL for random queries (the
reference property tests' strategies), and against the export's own rows for the seed's requests; the API in
process (APIClient) for the answer's shape, the settings' 400s, the time limit's 422 and the rate limit's 429.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from exports.engines import engine_from_url
from queries.catalog import catalog
from queries.preview import preview_statement, statement_rows
from queries.validation import query_validate
from tests.queries.clients import api_client as _client
from tests.queries.test_engine_reference import CUSTOMERS, bodies, rows
from tests.reference import Warehouses, reference_evaluate
from tests.seed_requests import REQUEST_1, REQUEST_2


@pytest.fixture(scope="module")
def warehouses(postgres: Any) -> Any:
    warehouses = Warehouses(postgres.create_database("preview_reference"))
    yield warehouses
    warehouses.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(body=bodies(), draw=st.data(), customer_id=st.sampled_from(CUSTOMERS), limit=st.integers(1, 6))
def test_a_preview_is_the_first_rows_of_the_result(
    warehouses: Warehouses, body: dict[str, Any], draw: st.DataObject, customer_id: str, limit: int
) -> None:
    query = query_validate(body)
    loaded = warehouses.load(draw.draw(rows(tuple(body["data"]), customer_id), label="rows"))
    expected = reference_evaluate(query, loaded, customer_id=customer_id).rows[:limit]
    for engine in (warehouses.duckdb, warehouses.postgres):
        statement = preview_statement(query, customer_id=customer_id, dialect=engine.dialect, limit=limit)
        assert statement_rows(engine, statement, limit=limit) == expected, engine.dialect.name


def _preview(client: APIClient, body: object):
    return client.post("/_rest/v4/dwh/Q/preview", data=json.dumps(body), content_type="application/json")


@pytest.mark.django_db
@pytest.mark.parametrize("request_body", [REQUEST_1, REQUEST_2], ids=["request-1", "request-2"])
def test_the_seed_requests_preview_as_their_export_starts(customer_factory, demo_warehouse, request_body):
    customer = customer_factory("acme")
    answer = _preview(_client(customer), {**request_body, "limit": "7"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    fields = request_body["data"]["ApplicationExitEvent"]["fields"]
    assert [field["name"] for field in body["fields"]] == fields
    query = query_validate(request_body)
    engine = engine_from_url(f"duckdb:///{demo_warehouse}")
    export = [tuple(row.values()) for row in _json_rows(engine, query, limit=None)][:7]
    engine.close()
    assert [tuple(row.values()) for row in body["data"]] == export
    assert len(body["data"]) == min(7, len(export))


def _json_rows(engine: Any, query: Any, *, limit: int | None) -> list[dict[str, Any]]:
    """The export's rows, as the preview writes its values."""
    from queries.compiler import query_compile
    from queries.preview import _json_value

    statement = query_compile(query, customer_id="acme", dialect=engine.dialect)
    names = [column.name for column in statement.columns]
    rows = statement_rows(engine, statement, limit=limit)
    return [dict(zip(names, (_json_value(value) for value in row), strict=True)) for row in rows]


@pytest.mark.django_db
def test_fields_are_typed_and_basic_names_them_for_people(customer_factory, demo_warehouse):
    body = {
        "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
        "data": {
            "CallEvent": {"fields": ["TimeStamp", "Ani", "Duration", "SipResponseCode", "IsTriggerAction"]}
        },
        "limit": 3,
        "basic": True,
    }
    answer = _preview(_client(customer_factory("acme")), body).json()
    fields = catalog().events["CallEvent"].fields
    assert answer["fields"] == [
        {"name": fields["TimeStamp"].display_name, "type": "datetime", "tz": "UTC"},
        {"name": fields["Ani"].display_name, "type": "string"},
        {"name": fields["Duration"].display_name, "type": "float"},
        {"name": fields["SipResponseCode"].display_name, "type": "integer"},
        {"name": fields["IsTriggerAction"].display_name, "type": "boolean"},
    ]
    first = answer["data"][0]
    assert first[fields["TimeStamp"].display_name].endswith("Z") and len(answer["data"]) == 3
    assert isinstance(first[fields["IsTriggerAction"].display_name], bool | None)


@pytest.mark.django_db
def test_zero_rows_is_an_empty_answer_not_a_failure(customer_factory, demo_warehouse):
    body = {**REQUEST_1, "filters": {"ApplicationExitEvent": {"FlowId": {"$eq": "no such flow"}}}}
    answer = _preview(_client(customer_factory("acme")), body)
    assert answer.status_code == 200 and answer.json() == {
        "fields": [{"name": "FlowId", "type": "string"}],
        "data": [],
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"limit": 0}, '"limit" must be a whole number from 1 to 10000, not 0.'),
        ({"limit": -1}, "not -1"),
        ({"limit": 10001}, "not 10001"),
        ({"limit": 1.5}, "not 1.5"),
        ({"limit": "abc"}, "not 'abc'"),
        ({"limit": True}, "not True"),
        ({"limit": "9" * 5000}, "not a string"),
        ({"basic": "yes"}, '"basic" must be true or false, not a string.'),
        ({"output": {"format": "csv"}}, "output"),
    ],
)
def test_bad_preview_settings_are_clear_400s(customer_factory, demo_warehouse, extra, message):
    answer = _preview(_client(customer_factory("acme")), {**REQUEST_1, **extra})
    assert answer.status_code == 400, answer.content
    assert message in answer.json()["message"]


@pytest.mark.django_db
def test_a_slow_preview_is_stopped_and_told_to_become_a_query(
    customer_factory, demo_warehouse, monkeypatch, settings
):
    settings.PREVIEW_TIME_LIMIT_SECONDS = 1
    from queries import preview

    real = preview.warehouse_engine

    def slow_engine() -> Any:
        engine = real()
        execute = engine.execute

        def stalled(statement: Any, **kwargs: Any) -> Any:
            import time

            time.sleep(1.5)  # the timer fires meanwhile: the engine is canceled
            yield from execute(statement, **kwargs)

        setattr(engine, "execute", stalled)  # noqa: B010 (mypy: a method cannot be assigned)
        return engine

    monkeypatch.setattr(preview, "warehouse_engine", slow_engine)
    answer = _preview(_client(customer_factory("acme")), REQUEST_1)
    assert answer.status_code == 422
    assert "submit it as a query" in answer.json()["message"]


@pytest.mark.django_db
def test_previews_are_rate_limited_per_customer(customer_factory, demo_warehouse, settings):
    settings.PREVIEW_PER_MINUTE = 2
    client, other = _client(customer_factory("acme")), _client(customer_factory("globex"))
    answers = [_preview(client, REQUEST_1) for _ in range(5)]  # 5 calls straddle one minute boundary at most
    statuses = [answer.status_code for answer in answers]
    first_refusal = statuses.index(429)
    assert first_refusal >= 2 and set(statuses[:first_refusal]) == {200}, statuses
    throttled = answers[first_refusal]
    assert int(throttled["Retry-After"]) > 0 and throttled.json()["code"] == 429
    assert _preview(other, REQUEST_1).status_code == 200  # another customer's own budget
