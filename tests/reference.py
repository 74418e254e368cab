"""A reference evaluator of docs/DESIGN.md §3 over in-memory rows, and a harness that runs a query on every engine.

The evaluator is written from the contract, not from the compiler (it shares only the spec dataclasses), so
the engine tests compare two independent readings of the same rules: window, per-record conditions, the
session scope, NULL handling, output columns and order (TimeStamp, then load order).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa

from exports.engines.base import EVENTS_TABLE, ROW_ID, WarehouseEngine
from exports.engines.counts import event_counts_rebuild
from exports.engines.duckdb import MEMORY, DuckDBEngine
from exports.engines.postgres import POSTGRES, PostgresEngine
from exports.engines.spark import SparkEngine
from exports.schema import arrow_schema
from exports.summary import SUMMARY_COLUMNS, SummaryCollector
from queries.catalog import catalog
from queries.compiler import query_compile
from queries.spec import Condition, Op, Query, Window
from queries.summary_sql import summary_from_results, summary_statements

Row = dict[str, Any]


@dataclass(frozen=True)
class Result:
    """What a query returns: column names and rows (tuples of Python values), in order."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


# -- the evaluator ---------------------------------------------------------------------------------------


def reference_evaluate(query: Query, rows: Iterable[Row], *, customer_id: str) -> Result:
    """Evaluate `query` for `customer_id` over `rows` (dicts by column name, `_row_id` included)."""
    own = [row for row in rows if row.get("CustomerId") == customer_id]
    sessions = _scope_sessions(query, own) if query.scope is not None else None
    asked = {field.name for event in query.events for field in event.fields}
    selected = []
    for row in own:
        if not _in_window(query.window, row.get("TimeStamp")):
            continue
        for event in query.events:
            if row.get("EventName") != event.event.name:
                continue
            if not all(_matches(condition, row) for condition in event.conditions):
                continue
            if sessions is not None and row.get("SessionId") not in sessions:
                continue
            names = {field.name for field in event.fields}
            if "EventName" not in asked:  # put first by the contract when several events mix: always filled
                names.add("EventName")
            values = tuple(row.get(column.name) if column.name in names else None for column in query.columns)
            selected.append((row["TimeStamp"], row[ROW_ID], values))
    selected.sort(key=lambda item: (item[0], item[1]))
    return Result(tuple(column.name for column in query.columns), [values for _, _, values in selected])


def _scope_sessions(query: Query, own: list[Row]) -> set[str]:
    """Sessions with a record in the window that meets every condition of at least one scope filter."""
    assert query.scope is not None
    sessions = set()
    for row in own:
        if row.get("SessionId") is None or not _in_window(query.window, row.get("TimeStamp")):
            continue
        if not query.scope.filters or any(
            row.get("EventName") == scope_filter.event.name
            and all(_matches(c, row) for c in scope_filter.conditions)
            for scope_filter in query.scope.filters
        ):
            sessions.add(row["SessionId"])
    return sessions


def _in_window(window: Window, timestamp: datetime | None) -> bool:
    if timestamp is None:
        return False
    after_start = timestamp >= window.start if window.start_inclusive else timestamp > window.start
    before_end = timestamp <= window.end if window.end_inclusive else timestamp < window.end
    return after_start and before_end


def _matches(condition: Condition, row: Row) -> bool:
    """MongoDB's reading: a missing value is "not equal" ($ne, $nin match it); nothing else matches NULL."""
    value, target = row.get(condition.field.name), condition.value
    op = condition.op
    if value is None:
        return op in (Op.NE, Op.NIN)
    if op is Op.EQ:
        return bool(value == target)
    if op is Op.NE:
        return bool(value != target)
    if op is Op.IN:
        return value in _as_tuple(target)
    if op is Op.NIN:
        return value not in _as_tuple(target)
    if op is Op.GT:
        return bool(value > target)
    if op is Op.GTE:
        return bool(value >= target)
    if op is Op.LT:
        return bool(value < target)
    return bool(value <= target)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


# -- the harness -----------------------------------------------------------------------------------------


def rows_number(rows: Sequence[Row]) -> list[Row]:
    """Copies of `rows` with the `_row_id` a load into an empty table assigns (1, 2, ... in input order)."""
    return [{**row, ROW_ID: index} for index, row in enumerate(rows, start=1)]


def rows_table(rows: Sequence[Row]) -> pa.Table:
    """`rows` as an Arrow table of every warehouse column (a key a row lacks is NULL), `_row_id` left out."""
    schema = arrow_schema(catalog().warehouse_columns())
    return pa.Table.from_pylist(
        [{k: v for k, v in row.items() if k != ROW_ID} for row in rows], schema=schema
    )


def engine_result(engine: WarehouseEngine, query: Query, *, customer_id: str) -> Result:
    statement = query_compile(query, customer_id=customer_id, dialect=engine.dialect)
    rows: list[tuple[Any, ...]] = []
    for batch in engine.execute(statement, batch_rows=7):  # small batches: exercise the streaming path
        assert batch.schema == arrow_schema(statement.columns)
        rows.extend(tuple(record.values()) for record in batch.to_pylist())
    return Result(tuple(column.name for column in statement.columns), rows)


class Warehouses:
    """A DuckDB (in memory, fresh per load) and a PostgreSQL warehouse holding the same rows; with `spark`
    (a Spark Connect URL and a directory for lakes), a Spark warehouse too (a new lake per load)."""

    def __init__(self, postgres_url: str, *, spark: tuple[str, Path] | None = None) -> None:
        self.postgres_url = postgres_url
        self.postgres = PostgresEngine(postgres_url, read_only=False)
        self.postgres.ensure_schema(catalog().warehouse_columns())
        self.duckdb = self._duckdb_fresh()
        self.spark: SparkEngine | None = None
        if spark is not None:
            self._lakes = (spark[1] / f"lake-{n}" for n in itertools.count())
            self.spark = SparkEngine(spark[0], lake_path=str(next(self._lakes)), read_only=False)

    @staticmethod
    def _duckdb_fresh() -> DuckDBEngine:
        engine = DuckDBEngine(MEMORY, read_only=False)
        engine.ensure_schema(catalog().warehouse_columns())
        return engine

    def load(self, rows: Sequence[Row]) -> list[Row]:
        """Replace every warehouse's rows with `rows`; returns them numbered as loaded (see rows_number)."""
        self.duckdb.close()
        self.duckdb = self._duckdb_fresh()
        with psycopg.connect(self.postgres_url, autocommit=True) as conn, conn.transaction():
            conn.execute(f"DELETE FROM {EVENTS_TABLE}")  # on a few rows far quicker than TRUNCATE
            event_counts_rebuild(conn, POSTGRES)  # rows removed by SQL of our own: the counts follow
        if self.spark is not None:  # a new lake on the same session: no table until ensure_schema
            self.spark.lake_path = str(next(self._lakes))
            self.spark.ensure_schema(catalog().warehouse_columns())
        if rows:
            table = rows_table(rows)
            assert self.duckdb.load(table) == len(rows)
            assert self.postgres.load(table) == len(rows)
            if self.spark is not None:
                assert self.spark.load(table) == len(rows)
        return rows_number(rows)

    def results(self, query: Query, *, customer_id: str) -> dict[str, Result]:
        results = {
            "duckdb": engine_result(self.duckdb, query, customer_id=customer_id),
            "postgresql": engine_result(self.postgres, query, customer_id=customer_id),
        }
        if self.spark is not None:
            results["spark"] = engine_result(self.spark, query, customer_id=customer_id)
        return results

    def close(self) -> None:
        self.duckdb.close()
        self.postgres.close()
        if self.spark is not None:
            self.spark.close()


def engine_export_summary(
    engine: WarehouseEngine, query: Query, *, customer_id: str, sizes: Sequence[int]
) -> tuple[Result, dict[str, Any]]:
    """What an export with a summary shows (its visible columns) and the summary its SummaryCollector makes of
    the engine's batches, cut again at `sizes` (cycled) to vary where batches end."""
    statement = query_compile(query, customer_id=customer_id, dialect=engine.dialect, summary=True)
    schema = arrow_schema(statement.columns)
    table = pa.Table.from_batches(list(engine.execute(statement, batch_rows=7)), schema=schema)
    shown = len(query.columns)
    assert schema.names[shown:] == [name for name, _ in SUMMARY_COLUMNS]  # hidden ones last, nothing else
    collector, start, turn = SummaryCollector(), 0, 0
    while start < table.num_rows:
        size = sizes[turn % len(sizes)]
        collector.add(table.slice(start, size).combine_chunks().to_batches()[0])
        start, turn = start + size, turn + 1
    rows = [tuple(row.values()) for row in table.select(list(range(shown))).to_pylist()]
    return Result(tuple(schema.names[:shown]), rows), collector.result()


def engine_warehouse_summary(engine: WarehouseEngine, query: Query, *, customer_id: str) -> dict[str, Any]:
    """The summary the warehouse computes (the synchronous summary call's path)."""
    results = []
    for statement in summary_statements(query, customer_id=customer_id, dialect=engine.dialect):
        batches = engine.execute(statement)
        results.append([tuple(row.values()) for batch in batches for row in batch.to_pylist()])
    return summary_from_results(results)


# -- the summary (giosg's sidedata) ----------------------------------------------------------------------

_SUMMARY_FIELDS = ("EventName", "SessionId", "OriginatorId", "TimeStamp", "Duration", "DisconnectReason")


def reference_summary(query: Query, rows: Iterable[Row], *, customer_id: str) -> dict[str, Any]:
    """The summary of the rows `reference_evaluate` selects, in plain Python from the contract's wording: exact
    counts, UTC hours and ISO weekdays, timestamps floored to the millisecond, call figures over CallEvent rows
    only, the top 20 disconnect reasons by count then code point."""
    # The same selection with the summary's fields as every event's output: what a query selects does not
    # depend on the fields it asks for.
    fields = tuple(catalog().field(name) for name in _SUMMARY_FIELDS)
    wide = replace(query, events=tuple(replace(e, fields=fields) for e in query.events), columns=fields)
    selected = [
        dict(zip(_SUMMARY_FIELDS, values, strict=True))
        for values in reference_evaluate(wide, rows, customer_id=customer_id).rows
    ]
    calls = [row for row in selected if row["EventName"] == "CallEvent"]
    durations = [row["Duration"] for row in calls if row["Duration"] is not None]
    reasons = Counter(row["DisconnectReason"] for row in calls if row["DisconnectReason"] is not None)
    times = [row["TimeStamp"] for row in selected]
    hours = Counter(t.hour for t in times)
    days = Counter(t.isoweekday() for t in times)

    def text(moment: datetime | None) -> str | None:
        if moment is None:
            return None
        return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"

    return {
        "rows": len(selected),
        "rows_per_event": dict(sorted(Counter(row["EventName"] for row in selected).items())),
        "unique_sessions_count": len({row["SessionId"] for row in selected} - {None}),
        "unique_originators_count": len({row["OriginatorId"] for row in selected} - {None}),
        "approximate": False,
        "first_timestamp": text(min(times, default=None)),
        "last_timestamp": text(max(times, default=None)),
        "timeframe_stat": {
            "hour_in_day": [[hours[hour], hour] for hour in range(24)],
            "day_in_week": [[days[day], day] for day in range(1, 8)],
        },
        "call_duration": {
            "count": len(durations),
            "sum": math.fsum(durations),
            "min": min(durations, default=None),
            "max": max(durations, default=None),
            "mean": math.fsum(durations) / len(durations) if durations else None,
        },
        "disconnect_reason": [
            {"value": value, "count": count}
            for value, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:20]
        ],
    }
