"""DuckDB skips a query's sort when its scan already yields (TimeStamp, _row_id) order, and only then.

Every case compares the rows with the sorted statement run by DuckDB itself; a spy says which path ran.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from exports.engines import engine_from_url
from exports.engines.base import KeyOrderCheck
from exports.engines.duckdb import DuckDBEngine
from exports.errors import WarehouseError
from queries.catalog import catalog
from queries.compiler import query_compile
from queries.validation import query_validate

START = datetime(2019, 11, 25, tzinfo=UTC)
WINDOW = {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-27T00:00:00Z"}
TWO_EVENTS = {
    "timestamp": WINDOW,
    "data": {
        "CallEvent": {"fields": ["SessionId", "TimeStamp", "Duration"]},
        "DtmfEvent": {"fields": ["SessionId", "DtmfInput"]},
    },
    "filters": {"DtmfEvent": {"DtmfInput": {"$ne": "0"}}},
}


def _rows(day: int, count: int) -> list[dict]:
    """`count` rows on day `day`, two events at the same instant every time (ties across events)."""
    rows = []
    for i in range(count):
        at = START + timedelta(days=day, seconds=i // 2)
        event = "CallEvent" if i % 2 else "DtmfEvent"
        rows.append(
            {
                "CustomerId": "acme",
                "EventName": event,
                "TimeStamp": at,
                "SessionId": f"s{day}-{i}",
                "Duration": i if event == "CallEvent" else None,
                "DtmfInput": str(i % 10) if event == "DtmfEvent" else None,
            }
        )
    return rows


def _warehouse(tmp_path: Path, *loads: list[dict]) -> str:
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    engine = engine_from_url(url, read_only=False)
    engine.ensure_schema(catalog().warehouse_columns())
    for rows in loads:
        engine.load(pa.Table.from_pylist(rows))
    engine.close()
    return url


@pytest.fixture()
def paths(monkeypatch) -> list[str]:
    """Which path each execute() took: "unsorted" (sort skipped) or "sorted"."""
    taken: list[str] = []
    real = DuckDBEngine._scan_is_in_order

    def spy(self, conn, unordered):
        in_order = real(self, conn, unordered)
        taken.append("unsorted" if in_order else "sorted")
        return in_order

    monkeypatch.setattr(DuckDBEngine, "_scan_is_in_order", spy)
    return taken


def _export(url: str, body: dict) -> tuple[list[dict], list[dict]]:
    """(rows through execute, rows of the sorted statement run directly)."""
    engine = DuckDBEngine.from_url(url, read_only=True, memory_limit=None, temp_directory=None)
    statement = query_compile(
        query_validate(body, max_window=timedelta(days=31)), customer_id="acme", dialect=engine.dialect
    )
    try:
        got = [row for batch in engine.execute(statement, batch_rows=7) for row in batch.to_pylist()]
        conn = engine._connection()
        expected = conn.sql(statement.sql, params=list(statement.params)).to_arrow_table().to_pylist()
    finally:
        engine.close()
    return got, expected


def test_rows_loaded_in_time_order_are_exported_without_a_sort(tmp_path, paths):
    url = _warehouse(tmp_path, _rows(0, 40), _rows(1, 40))  # a day per load, in order
    got, expected = _export(url, TWO_EVENTS)
    assert paths == ["unsorted"]
    assert got == expected and len(got) > 40
    assert [row["SessionId"] for row in got] == [row["SessionId"] for row in expected]


def test_rows_loaded_out_of_time_order_are_sorted(tmp_path, paths):
    url = _warehouse(tmp_path, _rows(1, 40), _rows(0, 40))  # a backfill: day 1 before day 0
    got, expected = _export(url, TWO_EVENTS)
    assert paths == ["sorted"]
    assert got == expected and got[0]["SessionId"].startswith("s0-")


def test_a_scoped_query_always_sorts(tmp_path, paths):
    url = _warehouse(tmp_path, _rows(0, 40))
    body = {**TWO_EVENTS, "scope": {"filters": {}, "scope": "SessionId"}}
    got, expected = _export(url, body)
    assert paths == [] and got == expected  # no unordered form: a semi-join need not keep scan order


def test_a_scan_that_stops_being_in_order_fails_instead_of_misordering(tmp_path):
    url = _warehouse(tmp_path, _rows(1, 10), _rows(0, 10))
    engine = DuckDBEngine.from_url(url, read_only=True, memory_limit=None, temp_directory=None)
    statement = query_compile(
        query_validate(TWO_EVENTS, max_window=timedelta(days=31)), customer_id="acme", dialect=engine.dialect
    )
    assert statement.unordered is not None
    schema = pa.schema([pa.field(c.name, pa.string()) for c in statement.columns])
    try:
        with pytest.raises(WarehouseError, match="changed while the query ran") as failure:
            list(engine._unsorted(engine._connection(), statement.unordered.sql, statement.params, 4, schema))
    finally:
        engine.close()
    assert failure.value.retryable


def _keys(*pairs: tuple[int, int]) -> tuple[pa.Array, pa.Array]:
    return (
        pa.array([t for t, _ in pairs], pa.timestamp("us")),
        pa.array([r for _, r in pairs], pa.int64()),
    )


@pytest.mark.parametrize(
    ("batches", "in_order"),
    [
        ([[(1, 1), (1, 2), (2, 3)], [(2, 4), (5, 0)]], True),  # ties broken by row id; time rules first
        ([[(1, 1), (3, 2)], [(2, 3)]], False),  # back in time across a batch boundary
        ([[(1, 5)], [(1, 4)]], False),  # a tie with a smaller row id across a boundary
        ([[(1, 1), (1, 1)]], False),  # a repeated key is not strictly increasing
        ([[], [(1, 1)], []], True),
    ],
)
def test_key_order_check(batches, in_order):
    check = KeyOrderCheck()
    assert all(check.in_order(*_keys(*batch)) for batch in batches) is in_order


def test_key_order_check_refuses_null_keys():
    assert not KeyOrderCheck().in_order(pa.array([1, None], pa.timestamp("us")), pa.array([1, 2], pa.int64()))


def test_an_unsorted_scan_runs_under_the_small_limit_and_the_configured_one_comes_back(tmp_path):
    url = _warehouse(tmp_path, _rows(0, 40))
    engine = DuckDBEngine.from_url(url, read_only=True, memory_limit="700MB", temp_directory=None)
    statement = query_compile(
        query_validate(TWO_EVENTS, max_window=timedelta(days=31)), customer_id="acme", dialect=engine.dialect
    )
    limits = []

    def limit(conn) -> str:
        (value,) = conn.execute("SELECT current_setting('memory_limit')").fetchall()[0]
        return str(value)

    try:
        conn = engine._connection()
        for _ in engine.execute(statement, batch_rows=7):
            limits.append(limit(conn.cursor()))  # a cursor: the connection itself is streaming
        after = limit(conn)
    finally:
        engine.close()
    assert limits and set(limits) == {"244.1 MiB"}  # 256MB
    assert after == "667.5 MiB"  # 700MB
