"""Property: for random catalog-shaped rows and random valid query bodies, DuckDB, PostgreSQL and Spark all return
exactly the reference evaluator's columns and rows, in the same order.

Spark runs fewer examples (SPARK_EXAMPLES): each costs it a load and a query of about a second.

Rows are drawn from small pools (two customers, three sessions, a dozen timestamps with ties at the window's
edges, values that compare interestingly by code point) so conditions, scope and NULL rules all bite.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exports.schema import ColumnType
from queries.catalog import catalog
from queries.preview import preview_statement, statement_rows
from queries.validation import query_validate
from tests.reference import Row, Warehouses, reference_evaluate

pytestmark = pytest.mark.postgres

BASE = datetime(2020, 1, 1, 12, 0, 0)
TIMES = [BASE + timedelta(minutes=m, microseconds=u) for m in range(6) for u in (0, 1)]
CUSTOMERS = ["c1", "c2"]
SESSIONS = ["s1", "s2", "s3"]
# Value fields the rows carry and the queries use: each type, a field two events share (StartTime).
UNIVERSE = (
    "FlowId",
    "EventVersion",
    "IsTriggerAction",
    "StartTime",
    "ExitReason",
    "DtmfInput",
    "Duration",
    "SipResponseCode",
    "Segments",
    "MsgStatus",
)
STRUCTURE = ("EventName", "TimeStamp", "CustomerId", "SessionId")
EVENTS = sorted(catalog().events)
POOLS: dict[ColumnType, list[Any]] = {
    # "B" < "a" < "z" < "é" < "😀" by code point; a collation-aware engine would order them otherwise.
    ColumnType.STRING: ["", "a", "B", "b", "z", "é", "😀", "a b"],
    ColumnType.INTEGER: [-3, 0, 1, 2, 2**62],
    ColumnType.FLOAT: [-1.5, 0.0, 0.1, 0.30000000000000004, 2.0],
    ColumnType.BOOLEAN: [True, False],
    ColumnType.TIMESTAMP: TIMES,
}
OPERATORS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"]


def _fields(event: str) -> list[str]:
    return [name for name in catalog().events[event].fields if name in UNIVERSE]


def _value(column_type: ColumnType) -> st.SearchStrategy[Any]:
    return st.sampled_from([*POOLS[column_type], None, None])  # NULL often, yet not one time in two


@st.composite
def rows(draw: st.DrawFn, events: tuple[str, ...] = (), customer: str | None = None) -> list[Row]:
    """Event records. The query's `events` and `customer` come up more often than the others, so that most
    examples select rows and each condition meets many candidates, NULLs among them."""
    out = []
    customers = [customer, customer, *CUSTOMERS] if customer else CUSTOMERS
    for _ in range(draw(st.integers(min_value=4, max_value=40))):
        event = draw(st.sampled_from([*events, *events, *EVENTS]))
        row: Row = {
            "EventName": event,
            "CustomerId": draw(st.sampled_from(customers)),
            "SessionId": draw(st.sampled_from([*SESSIONS, None])),
            "TimeStamp": draw(st.sampled_from([*TIMES, None])),
        }
        for name in _fields(event):
            row[name] = draw(_value(catalog().field(name).type))
        out.append(row)
    return out


def _json(value: Any) -> Any:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if isinstance(value, datetime) else value


@st.composite
def conditions(draw: st.DrawFn, event: str, *, max_fields: int = 2) -> dict[str, dict[str, Any]]:
    """Filters for one event: field -> {operator: JSON value}, over the event's fields and the structure."""
    # Few conditions, few operators per field: each extra one rules out more rows (NULLs first), which would
    # hide how $ne and $nin treat NULL.
    size = draw(st.sampled_from([0, 1, 1, 1, max_fields]))
    names = draw(
        st.lists(
            st.sampled_from([*_fields(event), "SessionId", "TimeStamp"]),
            unique=True,
            min_size=size,
            max_size=size,
        )
    )
    out = {}
    for name in names:
        pool = POOLS[catalog().field(name).type] if name != "SessionId" else SESSIONS
        count = draw(st.sampled_from([1, 1, 1, 2]))
        ops = draw(st.lists(st.sampled_from(OPERATORS), min_size=count, max_size=count, unique=True))
        out[name] = {
            op: [_json(v) for v in draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))]
            if op in ("$in", "$nin")
            else _json(draw(st.sampled_from(pool)))
            for op in ops
        }
    return out


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid query body: both filter layouts, scope on or off, one to three events."""
    # Wide windows (most rows in them) whose edges sit on data timestamps, to test inclusive and exclusive.
    start, end = draw(st.sampled_from(TIMES[:4])), draw(st.sampled_from(TIMES[8:]))
    lower = draw(st.sampled_from(["$gte", "$gt"]))
    upper = draw(st.sampled_from(["$lte", "$lt"]))
    if end - start == timedelta(microseconds=1) and (lower, upper) == ("$gt", "$lt"):
        lower = "$gte"  # ($gt x, $lt x + 1 us) holds no instant: validation rightly refuses it
    body: dict[str, Any] = {"timestamp": {lower: _json(start), upper: _json(end)}, "data": {}}
    top_filters: dict[str, Any] = {}
    for event in draw(st.lists(st.sampled_from(EVENTS), min_size=1, max_size=3, unique=True)):
        selectable = [*STRUCTURE, *_fields(event)]
        entry: dict[str, Any] = {
            "fields": draw(st.lists(st.sampled_from(selectable), min_size=1, max_size=4, unique=True))
        }
        filters: dict[str, Any] = draw(conditions(event))
        inside = bool(draw(st.booleans()))  # data.Event.filters, or the top-level filters
        if filters and inside:
            entry["filters"] = filters
        elif filters:
            top_filters[event] = filters
        body["data"][event] = entry
    if top_filters:
        body["filters"] = top_filters
    if draw(st.booleans()):
        scope_events = draw(st.lists(st.sampled_from(EVENTS), max_size=2, unique=True))
        body["scope"] = {
            "scope": "SessionId",
            "filters": {e: draw(conditions(e, max_fields=1)) for e in scope_events},
        }
    return body


@pytest.fixture(scope="module")
def warehouses(postgres: Any) -> Iterator[Warehouses]:
    warehouses = Warehouses(postgres.create_database("engine_reference"))
    yield warehouses
    warehouses.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(body=bodies(), draw=st.data(), customer_id=st.sampled_from(CUSTOMERS))
def test_engines_return_exactly_the_reference_rows(
    warehouses: Warehouses, body: dict[str, Any], draw: st.DataObject, customer_id: str
) -> None:
    query = query_validate(body)
    loaded = warehouses.load(draw.draw(rows(tuple(body["data"]), customer_id), label="rows"))
    expected = reference_evaluate(query, loaded, customer_id=customer_id)
    for engine, result in warehouses.results(query, customer_id=customer_id).items():
        assert result == expected, engine


SPARK_EXAMPLES = 15


@pytest.fixture(scope="module")
def with_spark(
    postgres: Any, spark_connect: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouses]:
    spark = (spark_connect.url, tmp_path_factory.mktemp("engine_reference"))
    warehouses = Warehouses(postgres.create_database("engine_reference_spark"), spark=spark)
    yield warehouses
    warehouses.close()


@settings(
    max_examples=SPARK_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=bodies(), draw=st.data(), customer_id=st.sampled_from(CUSTOMERS))
def test_spark_returns_exactly_the_reference_rows(
    with_spark: Warehouses, body: dict[str, Any], draw: st.DataObject, customer_id: str
) -> None:
    query = query_validate(body)
    loaded = with_spark.load(draw.draw(rows(tuple(body["data"]), customer_id), label="rows"))
    expected = reference_evaluate(query, loaded, customer_id=customer_id)
    results = with_spark.results(query, customer_id=customer_id)
    assert "spark" in results
    for engine, result in results.items():
        assert result == expected, engine
    # The preview's statement (LIMIT a bound :pN after the ORDER BY) on the same lake: the first rows.
    assert with_spark.spark is not None
    limit = draw.draw(st.integers(1, 6), label="preview limit")
    preview = preview_statement(query, customer_id=customer_id, dialect=with_spark.spark.dialect, limit=limit)
    assert statement_rows(with_spark.spark, preview, limit=limit) == expected.rows[:limit]
