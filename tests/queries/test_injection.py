"""Hostile values are data, never SQL; no body reaches another customer's rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exports.engines.duckdb import DUCKDB
from exports.engines.postgres import POSTGRES
from queries.catalog import catalog
from queries.compiler import query_compile
from queries.spec import Condition, EventQuery, Op, Query, Window
from queries.validation import QueryValidationError, query_validate
from tests.reference import Row, Warehouses, reference_evaluate

WINDOW = {"$gte": "2020-01-01T00:00:00Z", "$lt": "2020-01-02T00:00:00Z"}
HOSTILE = [
    "'",
    '"',
    "'; DROP TABLE events; --",
    "' OR '1'='1",
    '" OR CustomerId <> "',
    "--",
    "/*",
    "\\",
    "%s",
    "%(x)s",
    "?",
    "$1",
    "\x00",
    "a\x00b",
    "\u202e\u0000'",
    "😀' UNION SELECT * FROM events --",
    "x" * 10_000,
]
hostile_text = st.sampled_from(HOSTILE) | st.text(max_size=50)
# What a warehouse can store: PostgreSQL text holds no NUL (validation refuses it in values too).
storable_text = st.sampled_from([h for h in HOSTILE if "\x00" not in h]) | st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=50
)


def _body(value: str) -> dict[str, Any]:
    return {
        "timestamp": WINDOW,
        "data": {"CallEvent": {"fields": ["Ani"], "filters": {"Dnis": {"$ne": value}}}},
        "filters": {"CallEvent": {"Ani": {"$eq": value}}},
        # One $in item: a list shrinks when values repeat (["1", "1"]), which rightly changes the SQL's shape.
        "scope": {"filters": {"DtmfEvent": {"DtmfInput": {"$in": [value]}}}, "scope": "SessionId"},
    }


@settings(max_examples=200, deadline=None)
@given(value=hostile_text)
@example(value="1")
def test_sql_text_never_depends_on_a_value(value: str) -> None:
    try:
        query = query_validate(_body(value))
    except QueryValidationError:
        return  # refused (NUL, too long): also safe
    benign = query_validate(_body("benign"))
    for dialect in (DUCKDB, POSTGRES):
        statement = query_compile(query, customer_id="c1", dialect=dialect)
        reference = query_compile(benign, customer_id="c1", dialect=dialect)
        assert statement.sql == reference.sql
        # Three bound places hold the value; a value that is also a name the query binds (an event's, the
        # customer's: "CallEvent", "c1") is found there too.
        assert statement.params.count(value) == 3 + reference.params.count(value)


def test_nul_and_overlong_values_are_refused_by_validation() -> None:
    for value in ("a\x00b", "x" * 10_000):
        with pytest.raises(QueryValidationError):
            query_validate(_body(value))


def test_customer_id_is_bound_too() -> None:
    query = query_validate(_body("x"))
    statement = query_compile(query, customer_id="c1' OR '1'='1", dialect=DUCKDB)
    assert "OR '1'='1" not in statement.sql
    assert statement.params.count("c1' OR '1'='1") == 2  # the branch and the scope


# -- on the engines ----------------------------------------------------------------------------------------

AT = datetime(2020, 1, 1, 12)


@pytest.fixture(scope="module")
def warehouses(postgres: Any) -> Iterator[Warehouses]:
    warehouses = Warehouses(postgres.create_database("injection"))
    yield warehouses
    warehouses.close()


def _ani_query(value: str) -> Query:
    """Built from the spec directly: validation caps strings at 1024 characters, the engines must not care."""
    call = catalog().events["CallEvent"]
    return Query(
        window=Window(
            start=datetime(2020, 1, 1), start_inclusive=True, end=datetime(2020, 1, 2), end_inclusive=False
        ),
        events=(
            EventQuery(
                call,
                (call.fields["CustomerId"], call.fields["Ani"]),
                (Condition(call.fields["Ani"], Op.EQ, value),),
            ),
        ),
        scope=None,
        columns=(call.fields["CustomerId"], call.fields["Ani"]),
    )


@pytest.mark.postgres
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=storable_text)
def test_hostile_values_match_literally(warehouses: Warehouses, value: str) -> None:
    rows = [
        {"CustomerId": "c1", "EventName": "CallEvent", "TimeStamp": AT, "Ani": value},
        {"CustomerId": "c1", "EventName": "CallEvent", "TimeStamp": AT, "Ani": value + "'"},
        {"CustomerId": "c2", "EventName": "CallEvent", "TimeStamp": AT, "Ani": value},
    ]
    warehouses.load(rows)
    for engine, result in warehouses.results(_ani_query(value), customer_id="c1").items():
        assert result.rows == [("c1", value)], engine


# Both customers hold the same sessions and events; c2's records would satisfy any condition naming c2.
SHARED: list[Row] = [
    {
        "CustomerId": customer,
        "SessionId": session,
        "EventName": event,
        "TimeStamp": AT,
        "DtmfInput": "0",
        "Ani": "1",
    }
    for customer in ("c1", "c2")
    for session in ("s1", "s2")
    for event in ("CallEvent", "DtmfEvent")
]
customer_conditions = st.sampled_from(
    [{"$eq": "c2"}, {"$ne": "c1"}, {"$in": ["c2", "c1"]}, {"$nin": ["c1"]}, {"$gt": "c1"}, {"$lte": "c2"}]
)


@st.composite
def cross_customer_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Bodies that name the other customer everywhere a body can: filters, both layouts, and the scope."""
    body: dict[str, Any] = {
        "timestamp": WINDOW,
        "data": {
            "CallEvent": {"fields": ["CustomerId", "SessionId"]},
            "DtmfEvent": {"fields": ["CustomerId"]},
        },
    }
    if draw(st.booleans()):
        body["filters"] = {"CallEvent": {"CustomerId": draw(customer_conditions)}}
    if draw(st.booleans()):
        body["data"]["DtmfEvent"]["filters"] = {"CustomerId": draw(customer_conditions)}
    if draw(st.booleans()):
        scope_event = draw(st.sampled_from(["CallEvent", "DtmfEvent"]))
        body["scope"] = {
            "filters": {scope_event: {"CustomerId": draw(customer_conditions)}},
            "scope": "SessionId",
        }
    return body


@pytest.fixture(scope="module")
def shared(postgres: Any) -> Iterator[tuple[Warehouses, list[Row]]]:
    warehouses = Warehouses(postgres.create_database("injection_shared"))
    rows = warehouses.load(SHARED)
    yield warehouses, rows
    warehouses.close()


@pytest.mark.postgres
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=cross_customer_bodies())
def test_no_body_returns_another_customers_rows(
    shared: tuple[Warehouses, list[Row]], body: dict[str, Any]
) -> None:
    warehouses, rows = shared
    query = query_validate(body)
    expected = reference_evaluate(query, rows, customer_id="c1")
    for engine, result in warehouses.results(query, customer_id="c1").items():
        assert result == expected, engine
        assert all(row[1] == "c1" for row in result.rows), engine  # column 0 is EventName
