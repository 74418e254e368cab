"""Property: a dry run's exact count read from the hourly event counts (queries.row_counts.hourly_count_statement)
is exactly what COUNT(*) over the export's rows gives, and what the reference evaluator (tests.reference) counts,
on DuckDB and PostgreSQL, whatever the window: bounds inclusive or exclusive, on an hour, a microsecond either
side of one or inside it, and rows exactly on and beside hour boundaries, loaded in one to three loads.

Queries the counts cannot answer (a condition, a scope, counts not marked complete) are counted as before: the
tests below spoil the counts first, so that reading them would show."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from exports.engines.base import Statement, WarehouseEngine
from exports.engines.counts import COUNTS_TABLE, STATE_TABLE
from exports.engines.duckdb import DUCKDB
from exports.schema import Column, ColumnType
from queries.catalog import catalog
from queries.row_counts import count_statement, exact_rows, hourly_count_statement
from queries.spec import Query
from queries.validation import QueryValidationError, query_validate
from tests.reference import Row, Warehouses, reference_evaluate, rows_number, rows_table

pytestmark = pytest.mark.postgres

HOUR = timedelta(hours=1)
TICK = timedelta(microseconds=1)
BASE = datetime(2020, 2, 28, 22)  # across a leap day's midnight
HOURS = [BASE + HOUR * n for n in range(5)]
# Row timestamps: on each hour, a microsecond either side, inside it.
STAMPS = sorted(
    {hour + offset for hour in HOURS for offset in (-TICK, timedelta(0), TICK, timedelta(minutes=27))}
)
# Window bounds: the same instants, and one within a minute of the data's ends.
BOUNDS = sorted({*STAMPS, HOURS[0] - timedelta(minutes=1), HOURS[-1] + timedelta(minutes=59)})
CUSTOMERS = ["c1", "c2"]
EVENTS = sorted(catalog().events)


def _json(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@st.composite
def rows(draw: st.DrawFn) -> list[Row]:
    return [
        {
            "EventName": draw(st.sampled_from([*EVENTS, None])),
            "CustomerId": draw(st.sampled_from([*CUSTOMERS, None])),
            "TimeStamp": draw(st.sampled_from([*STAMPS, None])),
            "SessionId": "s1",
        }
        for _ in range(draw(st.integers(min_value=0, max_value=60)))
    ]


@st.composite
def plain_queries(draw: st.DrawFn) -> Query:
    """A customer's window and events only: what the counts answer."""
    start, end = sorted(draw(st.lists(st.sampled_from(BOUNDS), min_size=2, max_size=2)))
    lower, upper = draw(st.sampled_from(["$gte", "$gt"])), draw(st.sampled_from(["$lte", "$lt"]))
    events = draw(st.lists(st.sampled_from(EVENTS), min_size=1, max_size=3, unique=True))
    body = {
        "timestamp": {lower: _json(start), upper: _json(end)},
        "data": {event: {"fields": ["TimeStamp"]} for event in events},
    }
    try:
        return query_validate(body)
    except QueryValidationError:  # an empty window ($gt x, $lt x)
        assume(False)
        raise


@pytest.fixture(scope="module")
def warehouses(postgres: Any) -> Iterator[Warehouses]:
    warehouses = Warehouses(postgres.create_database("hourly_counts"))
    yield warehouses
    warehouses.close()


def _load(warehouses: Warehouses, loads: list[list[Row]]) -> list[Row]:
    """The loads, one after the other, into both warehouses (emptied first); the rows numbered as loaded."""
    warehouses.load(loads[0])
    for more in loads[1:]:
        if more:
            table = rows_table(more)
            assert warehouses.duckdb.load(table) == warehouses.postgres.load(table) == len(more)
    return rows_number([row for load in loads for row in load])


def _count(engine: WarehouseEngine, statement: Any) -> int:
    return sum(int(v) for batch in engine.execute(statement) for v in batch.column(0).to_pylist())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    query=plain_queries(),
    loads=st.lists(rows(), min_size=1, max_size=3),
    customer_id=st.sampled_from(CUSTOMERS),
)
def test_the_hourly_count_is_exactly_count_star(
    warehouses: Warehouses, query: Query, loads: list[list[Row]], customer_id: str
) -> None:
    loaded = _load(warehouses, loads)
    expected = len(reference_evaluate(query, loaded, customer_id=customer_id).rows)
    for engine in (warehouses.duckdb, warehouses.postgres):
        assert engine.event_counts_ready(), engine.dialect.name
        assert (
            _count(engine, count_statement(query, customer_id=customer_id, dialect=engine.dialect))
            == expected
        )
        hourly = hourly_count_statement(query, customer_id=customer_id, dialect=engine.dialect)
        window = query.window
        if window.end - window.start >= 2 * HOUR:  # a whole hour inside, however the bounds fall
            assert hourly is not None
        if hourly is not None:
            assert _count(engine, hourly) == expected, engine.dialect.name
        assert exact_rows(engine, query, customer_id=customer_id) == expected, engine.dialect.name


def test_only_a_plain_window_holding_a_whole_hour_is_read_from_the_counts() -> None:
    def statement(timestamp: dict[str, str], **extra: Any) -> Any:
        body = {"timestamp": timestamp, "data": {"CallEvent": {"fields": ["Ani"]}}, **extra}
        return hourly_count_statement(query_validate(body), customer_id="c1", dialect=DUCKDB)

    assert statement({"$gt": "2020-02-28T22:00:00Z", "$lt": "2020-02-28T23:00:00Z"}) is None
    assert statement({"$gte": "2020-02-28T22:00:00Z", "$lt": "2020-02-28T23:00:00Z"}) is not None
    assert (
        statement({"$gt": "2020-02-28T21:59:59.999999Z", "$lte": "2020-02-28T22:59:59.999999Z"}) is not None
    )
    assert statement({"$gte": "2020-02-28T22:00:00.000001Z", "$lte": "2020-02-28T23:59:59Z"}) is None
    assert statement({"$gte": "2020-02-28T22:30:00Z", "$lt": "2020-02-29T00:30:00Z"}) is not None
    scope = {"scope": {"scope": "SessionId", "filters": {}}}
    assert statement({"$gte": "2020-02-28T22:00:00Z", "$lt": "2020-02-29T00:00:00Z"}, **scope) is None


WIDE = {"$gte": "2020-02-28T21:00:00Z", "$lt": "2020-02-29T04:00:00Z"}
ROWS = [
    {"EventName": event, "CustomerId": "c1", "TimeStamp": stamp, "SessionId": "s1", "Duration": duration}
    for event in ("CallEvent", "DtmfEvent")
    for stamp in STAMPS
    for duration in (1.0, 9.0)
]


def _spoil(warehouses: Warehouses, *, complete: bool) -> None:
    """Make the counts wrong by 1000 a row (and, unless `complete`, no longer marked complete)."""
    statements = [f'UPDATE "{COUNTS_TABLE}" SET "Rows" = "Rows" + 1000']
    if not complete:
        statements.append(f'UPDATE "{STATE_TABLE}" SET "complete" = FALSE')
    with psycopg.connect(warehouses.postgres_url, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)
    for sql in statements:  # the in-memory DuckDB warehouse: through its engine
        changed = Statement(
            sql=f"{sql} RETURNING 1 AS n",
            params=(),
            columns=(Column("n", ColumnType.INTEGER),),
            dialect="duckdb",
        )
        assert _count(warehouses.duckdb, changed) > 0


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"CallEvent": {"fields": ["Ani"], "filters": {"Duration": {"$gte": 5}}}}},
        {"data": {"CallEvent": {"fields": ["Ani"]}}, "scope": {"scope": "SessionId", "filters": {}}},
    ],
    ids=["condition", "scope"],
)
def test_a_condition_or_a_scope_is_counted_from_the_events(
    warehouses: Warehouses, body: dict[str, Any]
) -> None:
    query = query_validate({**body, "timestamp": WIDE})
    loaded = _load(warehouses, [ROWS])
    expected = len(reference_evaluate(query, loaded, customer_id="c1").rows)
    assert expected > 0
    _spoil(warehouses, complete=True)
    for engine in (warehouses.duckdb, warehouses.postgres):
        assert hourly_count_statement(query, customer_id="c1", dialect=engine.dialect) is None
        assert exact_rows(engine, query, customer_id="c1") == expected, engine.dialect.name


def test_counts_not_marked_complete_are_not_read(warehouses: Warehouses) -> None:
    query = query_validate({"timestamp": WIDE, "data": {"CallEvent": {"fields": ["Ani"]}}})
    loaded = _load(warehouses, [ROWS])
    expected = len(reference_evaluate(query, loaded, customer_id="c1").rows)
    for engine in (warehouses.duckdb, warehouses.postgres):
        assert exact_rows(engine, query, customer_id="c1") == expected  # read from the counts
    _spoil(warehouses, complete=False)
    for engine in (warehouses.duckdb, warehouses.postgres):
        assert not engine.event_counts_ready()
        assert exact_rows(engine, query, customer_id="c1") == expected, engine.dialect.name
    # The spoiled counts would have said otherwise: the test can tell which path answered.
    spoiled = hourly_count_statement(query, customer_id="c1", dialect=warehouses.postgres.dialect)
    assert spoiled is not None and _count(warehouses.postgres, spoiled) > expected
