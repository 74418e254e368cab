"""The one-scan shape on every engine (DuckDB, PostgreSQL, Spark), for the cases a sorted scan with CASE columns
could get wrong: a sort key that is also an output column empty for some events, ties across events, and typed
empties."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from queries.validation import query_validate
from tests.reference import Row, Warehouses, reference_evaluate

pytestmark = pytest.mark.postgres

T1, T2, T3 = datetime(2020, 1, 1, 12), datetime(2020, 1, 1, 13), datetime(2020, 1, 1, 14)
WINDOW = {"$gte": "2020-01-01T00:00:00Z", "$lt": "2020-01-02T00:00:00Z"}
# Loaded in this order (so `_row_id` 1..6): times out of order, and a tie at T2 across two events.
ROWS: list[Row] = [
    {"CustomerId": "c1", "EventName": "CallEvent", "TimeStamp": T3, "Duration": 3.0, "FlowId": "f3"},
    {"CustomerId": "c1", "EventName": "DtmfEvent", "TimeStamp": T2, "DtmfInput": "9", "FlowId": "f2b"},
    {"CustomerId": "c1", "EventName": "CallEvent", "TimeStamp": T2, "Duration": 2.0, "FlowId": "f2a"},
    {"CustomerId": "c1", "EventName": "DtmfEvent", "TimeStamp": T1, "DtmfInput": "1", "FlowId": "f1"},
    {"CustomerId": "c1", "EventName": "MsgEvent", "TimeStamp": T1, "FlowId": "not asked for"},
    {"CustomerId": "c2", "EventName": "CallEvent", "TimeStamp": T1, "Duration": 9.0, "FlowId": "other"},
]


@pytest.fixture(scope="module")
def warehouses(
    postgres: Any, spark_connect: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Warehouses, list[Row]]]:
    spark = (spark_connect.url, tmp_path_factory.mktemp("compiler_engines"))
    warehouses = Warehouses(postgres.create_database("compiler_engines"), spark=spark)
    rows = warehouses.load(ROWS)
    yield warehouses, rows
    warehouses.close()


def _results(warehouses: tuple[Warehouses, list[Row]], body: dict[str, Any]) -> list[list[tuple[Any, ...]]]:
    """Each engine's rows, after checking columns and rows against the reference evaluator."""
    engines, rows = warehouses
    query = query_validate(body)
    expected = reference_evaluate(query, rows, customer_id="c1")
    out = []
    results = engines.results(query, customer_id="c1")
    assert sorted(results) == ["duckdb", "postgresql", "spark"]
    for engine, result in results.items():
        assert result == expected, engine
        out.append(result.rows)
    return out


def test_a_sort_key_asked_for_one_event_only_still_sorts_every_row(
    warehouses: tuple[Warehouses, list[Row]],
) -> None:
    body = {
        "timestamp": WINDOW,
        "data": {"CallEvent": {"fields": ["TimeStamp", "Duration"]}, "DtmfEvent": {"fields": ["DtmfInput"]}},
    }
    for rows in _results(warehouses, body):
        assert rows == [
            ("DtmfEvent", None, None, "1"),
            ("DtmfEvent", None, None, "9"),  # T2, loaded before the CallEvent at T2
            ("CallEvent", T2, 2.0, None),
            ("CallEvent", T3, 3.0, None),
        ]


def test_event_name_asked_for_one_event_and_a_shared_field(warehouses: tuple[Warehouses, list[Row]]) -> None:
    body = {
        "timestamp": WINDOW,
        "data": {
            "DtmfEvent": {"fields": ["EventName", "FlowId"]},
            "CallEvent": {"fields": ["FlowId"], "filters": {"Duration": {"$gt": 2.5}}},
        },
    }
    for rows in _results(warehouses, body):
        assert rows == [("DtmfEvent", "f1"), ("DtmfEvent", "f2b"), (None, "f3")]
