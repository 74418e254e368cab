"""Slices of a big export (queries.slicing) on every engine: cut where the warehouse's quantiles say, in time
order, they are the whole result in order; ties on a boundary are never split; a scope still sees the whole
window."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from exports.engines.base import WarehouseEngine
from queries.slicing import SliceRange, slice_count, slice_plan, slice_ranges, slice_statement
from queries.validation import query_validate
from tests.reference import Row, Warehouses, engine_result

pytestmark = pytest.mark.postgres

START = datetime(2020, 1, 1)
WINDOW = {"$gte": "2020-01-01T00:00:00Z", "$lt": "2020-01-03T00:00:00Z"}
EVENTS = ("CallEvent", "DtmfEvent", "MsgEvent")


def _rows() -> list[Row]:
    """300 rows over two days for c1 (and some for c2): many TimeStamp ties (whole minutes), times loaded out
    of order, sessions spanning both days."""
    rng = random.Random(15)
    rows: list[Row] = []
    for n in range(300):
        event = rng.choice(EVENTS)
        row: Row = {
            "CustomerId": "c1" if n % 7 else "c2",
            "EventName": event,
            "TimeStamp": START + timedelta(minutes=rng.randrange(0, 2 * 24 * 60, 30)),
            "SessionId": f"s{rng.randrange(40)}",
            "FlowId": f"f{n}",
        }
        if event == "CallEvent":
            row["Duration"] = float(rng.randrange(100))
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def warehouses(
    postgres: Any, spark_connect: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouses]:
    spark = (spark_connect.url, tmp_path_factory.mktemp("slicing"))
    warehouses = Warehouses(postgres.create_database("slicing"), spark=spark)
    warehouses.load(_rows())
    yield warehouses
    warehouses.close()


def _engines(warehouses: Warehouses) -> dict[str, WarehouseEngine]:
    assert warehouses.spark is not None
    return {"duckdb": warehouses.duckdb, "postgresql": warehouses.postgres, "spark": warehouses.spark}


def _sliced_rows(
    engine: WarehouseEngine, body: dict[str, Any], *, split_rows: int
) -> tuple[list[SliceRange], list[Any]]:
    query = query_validate(body)
    plan = slice_plan(query, customer_id="c1", dialect=engine.dialect)
    ranges = slice_ranges(engine, plan, split_rows=split_rows, max_slices=8)
    rows: list[Any] = []
    for piece in ranges:
        for batch in engine.execute(slice_statement(plan, piece), batch_rows=5):
            rows.extend(tuple(record.values()) for record in batch.to_pylist())
    return ranges, rows


BODIES = [
    {"timestamp": WINDOW, "data": {"CallEvent": {"fields": ["TimeStamp", "Duration", "FlowId"]}}},
    {
        "timestamp": WINDOW,
        "data": {"CallEvent": {"fields": ["TimeStamp", "Duration"]}, "DtmfEvent": {"fields": ["FlowId"]}},
    },
    {  # a scope: sessions with a call in the whole window, whichever slice their rows fall in
        "timestamp": WINDOW,
        "scope": {"filters": {"CallEvent": {"Duration": {"$gt": 30}}}, "scope": "SessionId"},
        "data": {"MsgEvent": {"fields": ["TimeStamp", "SessionId"]}},
    },
]


@pytest.mark.parametrize("body", BODIES, ids=["one-event", "two-events", "scope"])
def test_slices_in_order_are_the_whole_result_in_order(warehouses: Warehouses, body: dict[str, Any]) -> None:
    for name, engine in _engines(warehouses).items():
        whole = engine_result(engine, query_validate(body), customer_id="c1")
        ranges, rows = _sliced_rows(engine, body, split_rows=max(1, len(whole.rows) // 4))
        assert len(ranges) >= 3, (name, len(whole.rows))
        # Slices as a cover of the window: each starts where the last ended.
        assert all(a.upper == b.lower for a, b in itertools.pairwise(ranges)), name
        # The summary columns ride along in slices: compare the output columns only.
        assert [row[: len(whole.columns)] for row in rows] == whole.rows, name


def test_ties_on_a_boundary_fall_in_one_slice(warehouses: Warehouses) -> None:
    body = BODIES[0]
    for name, engine in _engines(warehouses).items():
        ranges, rows = _sliced_rows(engine, body, split_rows=10)
        # Every boundary is a TimeStamp that some row has (a discrete quantile), so ties exist there ...
        times = [row[0] for row in rows]
        assert any(piece.lower in times for piece in ranges[1:]), name
        # ... and all rows of one TimeStamp are in one slice: the one whose range holds it.
        for piece in ranges:
            inside = [t for t in times if piece.lower <= t < piece.upper]
            assert inside == sorted(inside), name
        assert len(times) == len(set(times)) or len(ranges) < len(times), name


def test_a_small_export_is_not_cut(warehouses: Warehouses) -> None:
    for name, engine in _engines(warehouses).items():
        ranges, _ = _sliced_rows(engine, BODIES[0], split_rows=10_000)
        assert ranges == [], name


def test_an_empty_window_is_not_cut(warehouses: Warehouses) -> None:
    body = {
        "timestamp": {"$gte": "2021-01-01T00:00:00Z", "$lt": "2021-01-02T00:00:00Z"},
        "data": BODIES[0]["data"],
    }
    for name, engine in _engines(warehouses).items():
        assert _sliced_rows(engine, body, split_rows=1) == ([], []), name


@pytest.mark.parametrize(
    ("rows", "split", "most", "expected"),
    [(0, 5, 8, 1), (5, 5, 8, 1), (6, 5, 8, 2), (100, 5, 8, 8), (10_000_000, 5_000_000, 16, 2), (10, 0, 8, 1)],
)
def test_slice_count(rows: int, split: int, most: int, expected: int) -> None:
    assert slice_count(rows, split_rows=split, max_slices=most) == expected
