"""A 1-day window for one customer: time in a warehouse of 50 customers vs one of that customer alone.

The layout (each load stored sorted by customer and time; DuckDB's zone maps per row group of 122,880 rows)
should make the cost follow the customer's rows in the window, not the table's size: the goal is a ratio
within GOAL (1.1) for 50x the rows.

The query takes a few milliseconds, where a shared machine's noise is as large as the effect measured, so:
- both warehouses hold the same rows of that customer (the one-customer warehouse is loaded with that
  customer's rows of the very batches loaded into the other), so the query returns the same rows from both;
- both are open in this one process with the worker's engine settings (WAREHOUSE_MEMORY_LIMIT) and are warmed
  up before anything is timed (the first query of a connection reads the catalog and the table's metadata);
- BENCH_PRUNING_ROUNDS rounds (default 40), each timing a batch of BENCH_PRUNING_BATCH executions (default 10)
  on each warehouse, the two taking turns and alternating which goes first. The ratio is the median of the
  rounds' ratios: paired, so load that comes and goes touches both sides of a round alike. Beside it: its
  quartiles, and the ratio of the two best batches (the figure background load disturbs least).
- EXPLAIN ANALYZE in each warehouse reports what the pruning did: row groups scanned of the table's total,
  and the rows the scan read in them.

Size: BENCH_WAREHOUSE_ROWS (default 10,000,000) / 5 demo sessions for the 50 customers; at about 3.4 events
a session, that is 6.7M rows, and 134k for the one customer.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pyarrow.compute as pc

from bench.report import Report
from exports.engines import engine_from_url
from exports.engines.base import Statement, WarehouseEngine
from queries.catalog import catalog
from queries.compiler import query_compile
from queries.ingest import demo_batches, demo_customer_keys
from queries.validation import query_validate

CUSTOMERS = 50
DAYS = 30
GOAL = 1.1
DEFAULT_ROWS = 10_000_000
DEFAULT_ROUNDS = 40
DEFAULT_BATCH = 10
WARM_UP = 20  # executions on each warehouse before timing
QUERY = {
    "timestamp": {"$gte": "2019-11-26T00:00:00Z", "$lt": "2019-11-27T00:00:00Z"},
    "data": {
        "CallEvent": {"fields": ["TimeStamp", "SessionId", "Ani", "Duration"]},
        "ApplicationExitEvent": {"fields": ["TimeStamp", "SessionId", "ExitReason"]},
    },
}
SIDES = ("1_customer", "50_customers")  # in figure names, which take no spaces


@dataclass(frozen=True)
class Paired:
    """Per-execution seconds of each round's batch on each side, and the rounds' ratios (shared / alone)."""

    alone: list[float]
    shared: list[float]

    @property
    def ratios(self) -> list[float]:
        return [s / a for a, s in zip(self.alone, self.shared, strict=True)]

    def ratio_quartiles(self) -> tuple[float, float, float]:
        """First quartile, median, third quartile of the rounds' ratios (at least two rounds)."""
        q1, median, q3 = statistics.quantiles(self.ratios, n=4, method="inclusive")
        return q1, median, q3


def warehouses_build(
    alone: Path, shared: Path, *, customer: str, keys: list[str], sessions: int
) -> list[int]:
    """Load the demo batches of `keys` into `shared`, and `customer`'s rows of the same batches into `alone`;
    returns the row counts [alone, shared]. Each load is one engine.load, as a loader's would be."""
    engines = [engine_from_url(f"duckdb:///{path}", read_only=False) for path in (alone, shared)]
    rows = [0, 0]
    try:
        for engine in engines:
            engine.ensure_schema(catalog().warehouse_columns())
        for table in demo_batches(
            customers=keys, sessions=sessions, seed=3, days=DAYS, chunk_sessions=200_000
        ):
            rows[0] += engines[0].load(table.filter(pc.equal(table["CustomerId"], customer)))
            rows[1] += engines[1].load(table)
    finally:
        for engine in engines:
            engine.close()
    return rows


def _execute_batch(engine: WarehouseEngine, statement: Statement, executions: int) -> tuple[float, int]:
    """Seconds per execution of `statement` through the engine (as a worker runs it), and its row count."""
    rows = 0
    started = time.perf_counter()
    for _ in range(executions):
        rows = sum(batch.num_rows for batch in engine.execute(statement))
    return (time.perf_counter() - started) / executions, rows


def rounds_time(engines: list[WarehouseEngine], statement: Statement, *, rounds: int, batch: int) -> Paired:
    """Warm both engines up, then time `rounds` paired batches, alternating which engine goes first."""
    for engine in engines:
        _execute_batch(engine, statement, WARM_UP)
    seconds: list[list[float]] = [[], []]
    for index in range(rounds):
        gc.collect()  # not inside a timed batch
        for side in (0, 1) if index % 2 == 0 else (1, 0):
            seconds[side].append(_execute_batch(engines[side], statement, batch)[0])
    return Paired(alone=seconds[0], shared=seconds[1])


class Scan(NamedTuple):
    row_groups_scanned: int
    row_groups_total: int
    rows_scanned: int  # the rows of the row groups scanned that the scan read


def scan_pruning(path: Path, statement: Statement) -> Scan:
    """What the statement's table scan read, by EXPLAIN ANALYZE (DuckDB's JSON profile)."""
    with duckdb.connect(str(path), read_only=True) as conn:
        explained = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement.sql, list(statement.params))
        ((_, plan),) = explained.fetchall()
    scans = list(_table_scans(json.loads(plan)))
    if len(scans) != 1:
        raise RuntimeError(f"expected one table scan in the plan, found {len(scans)}")
    scan = scans[0]
    return Scan(
        int(scan["row_groups_scanned"]), int(scan["total_row_groups_to_scan"]), int(scan["rows_scanned"])
    )


def _table_scans(node: Any) -> Iterator[dict[str, Any]]:
    """Every TABLE_SCAN operator of a JSON plan, wherever it sits (the root holds `io` and `operator`)."""
    if isinstance(node, dict):
        if node.get("type") == "TABLE_SCAN":
            yield node
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            yield from _table_scans(child)


def _sizes() -> tuple[int, int, int]:
    total_rows = int(os.environ.get("BENCH_WAREHOUSE_ROWS", str(DEFAULT_ROWS)))
    rounds = int(os.environ.get("BENCH_PRUNING_ROUNDS", str(DEFAULT_ROUNDS)))
    batch = int(os.environ.get("BENCH_PRUNING_BATCH", str(DEFAULT_BATCH)))
    if total_rows < 1 or rounds < 2 or batch < 1:
        raise ValueError(
            "BENCH_WAREHOUSE_ROWS and BENCH_PRUNING_BATCH take a positive count, BENCH_PRUNING_ROUNDS at least 2"
        )
    return total_rows, rounds, batch


def run(report: Report) -> None:
    from django.conf import settings

    total_rows, rounds, batch = _sizes()
    sessions = max(total_rows // 5, CUSTOMERS)  # as before, so that figures compare with earlier runs
    keys = list(demo_customer_keys(CUSTOMERS))
    customer = keys[0]
    with tempfile.TemporaryDirectory(prefix="insights-bench-") as tmp:
        paths = [Path(tmp, "one.duckdb"), Path(tmp, "fifty.duckdb")]
        loaded = warehouses_build(*paths, customer=customer, keys=keys, sessions=sessions)
        engines = [
            engine_from_url(
                f"duckdb:///{path}",
                read_only=True,
                memory_limit=str(settings.WAREHOUSE_MEMORY_LIMIT),
                temp_directory=tmp,
            )
            for path in paths
        ]
        statement = query_compile(query_validate(QUERY), customer_id=customer, dialect=engines[0].dialect)
        try:
            returned = [_execute_batch(engine, statement, 1)[1] for engine in engines]
            paired = rounds_time(engines, statement, rounds=rounds, batch=batch)
        finally:
            for engine in engines:
                engine.close()
        pruning = [scan_pruning(path, statement) for path in paths]
    if returned[0] != returned[1]:
        raise RuntimeError(f"the query returned {returned} rows: the warehouses do not hold the same rows")
    _figures(report, loaded=loaded, returned=returned[0], pruning=pruning, paired=paired, batch=batch)


def _figures(
    report: Report,
    *,
    loaded: list[int],
    returned: int,
    pruning: list[Scan],
    paired: Paired,
    batch: int,
) -> None:
    for side, rows, scan in zip(SIDES, loaded, pruning, strict=True):
        report.add(f"warehouse_rows[{side}]", rows, "rows")
        report.add(f"row_groups_scanned[{side}]", scan.row_groups_scanned, "row_groups")
        report.add(f"row_groups_total[{side}]", scan.row_groups_total, "row_groups")
        report.add(f"rows_scanned[{side}]", scan.rows_scanned, "rows")
    report.add("one_day_query_rows", returned, "rows")
    q1, median, q3 = paired.ratio_quartiles()
    rounds = len(paired.ratios)
    report.add(f"one_day_query[{SIDES[0]}]", statistics.median(paired.alone) * 1000, "ms")
    report.add(
        f"one_day_query[{SIDES[1]}]",
        statistics.median(paired.shared) * 1000,
        "ms",
        ratio=median,
        anchor=f"the same query on that customer alone, 50x fewer rows (median of {rounds} paired rounds of "
        f"{batch}; goal <= {GOAL})",
    )
    report.add("one_day_query_ratio[q1]", q1, "x")
    report.add("one_day_query_ratio[q3]", q3, "x")
    report.add(f"one_day_query_best[{SIDES[0]}]", min(paired.alone) * 1000, "ms")
    report.add(
        f"one_day_query_best[{SIDES[1]}]",
        min(paired.shared) * 1000,
        "ms",
        ratio=min(paired.shared) / min(paired.alone),
        anchor="the best batch on that customer alone",
    )
