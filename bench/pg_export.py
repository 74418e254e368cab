"""The PostgreSQL engine's read (issue 15) against PostgreSQL's own COPY of the same query to CSV.

Goal: the engine (`PostgresEngine.execute`: a server-side cursor FETCHed in batches that ADBC decodes into
Arrow in C++) reads the rows of a whole-window query within GOAL (1.3x) of the time PostgreSQL takes to
`COPY (same query) TO STDOUT (FORMAT csv)`, read by psycopg into /dev/null: the server's own serialisation
of the same rows, the floor of any client. Beside it, the path the engine had before (psycopg's binary
server-side cursor, rows converted to Arrow in Python), re-enacted here, for the before/after.

The data: BENCH_ROWS (default 1,000,000) demo rows of one customer over 29 days, loaded through the engine
(`load`: COPY FROM) into a throwaway PostgreSQL server started for the run (fsync off; `tests.servers`), then
VACUUM ANALYZE (hint bits set, statistics current: no read writes, and the planner knows the table). The
query: every event with every one of its fields (all output columns, the compiler's CASE for the fields only
some events have), over the whole window, ordered as the compiler orders (TimeStamp, _row_id): it returns every
row loaded.

All three run in this one process, BENCH_PG_REPEATS times each (default 3), taking turns in a rotating order;
each run opens its own connection (as a worker opens its engine per query). The figure of each is its best
run: the machine is shared, and the best of a few is what background load disturbs least; beside it, the ratio
of the medians and the median of each round's ratio (the two sides of a round run back to back, so load that
comes and goes touches both). CPU seconds are this process's (the client's) over the same runs: the server's
work is the same on all three sides, so they show what each client adds.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa

from bench.demo_rows import CUSTOMER, demo_rows, query_body
from bench.report import Report
from exports.engines.base import Statement
from exports.engines.postgres import POSTGRES, PostgresEngine
from exports.schema import arrow_schema
from queries.catalog import catalog
from queries.compiler import query_compile
from queries.validation import query_validate

GOAL = 1.3
DEFAULT_ROWS = 1_000_000
DEFAULT_REPEATS = 3
MODES = ("copy_csv", "engine", "psycopg_rows")
NAMES = {  # figure names
    "copy_csv": "postgres_copy_csv",
    "engine": "engine_adbc",
    "psycopg_rows": "engine_before_psycopg_rows",
}


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu_seconds: float
    rows: int


def warehouse_load(url: str, rows: int) -> int:
    """Exactly `rows` demo rows of CUSTOMER into the database at `url`, through the engine; then VACUUM ANALYZE."""
    engine = PostgresEngine(url, read_only=False)
    loaded = 0
    try:
        engine.ensure_schema(catalog().warehouse_columns())
        for table in demo_rows(rows):
            loaded += engine.load(table)
    finally:
        engine.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) events")
    return loaded


def read_engine(url: str, statement: Statement) -> int:
    """The product's path: the engine's batches, as a worker reads them."""
    engine = PostgresEngine(url)
    try:
        return sum(batch.num_rows for batch in engine.execute(statement))
    finally:
        engine.close()


def read_copy_csv(url: str, statement: Statement) -> int:
    """PostgreSQL's own CSV of the same query (psycopg merges the parameters into the COPY text: COPY takes no
    bound ones), each chunk written to /dev/null."""
    with psycopg.connect(url, autocommit=True) as conn, open(os.devnull, "wb") as sink:
        conn.execute("SET TIME ZONE 'UTC'")
        with conn.cursor() as cursor:
            with cursor.copy(f"COPY ({statement.sql}) TO STDOUT (FORMAT csv)", statement.params) as copy:
                for chunk in copy:
                    sink.write(chunk)
            return cursor.rowcount


def read_psycopg_rows(url: str, statement: Statement) -> int:
    """The engine's read before ADBC: psycopg's binary server-side cursor, rows turned into Arrow in Python."""
    schema = arrow_schema(statement.columns)
    rows = 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("SET default_transaction_read_only = on")
        with conn.transaction(), conn.cursor(name="insights_export", binary=True) as cursor:
            cursor.execute(statement.sql, statement.params)
            while fetched := cursor.fetchmany(65_536):
                rows += _record_batch(fetched, schema).num_rows
    return rows


def _record_batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    """The engine's conversion before ADBC, as it was: rows from the cursor, column by column."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = [pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


READERS: dict[str, Callable[[str, Statement], int]] = {
    "copy_csv": read_copy_csv,
    "engine": read_engine,
    "psycopg_rows": read_psycopg_rows,
}


def timed(read: Callable[[str, Statement], int], url: str, statement: Statement) -> Run:
    started, cpu = time.perf_counter(), time.process_time()
    rows = read(url, statement)
    return Run(time.perf_counter() - started, time.process_time() - cpu, rows)


def turns_run(url: str, statement: Statement, *, repeats: int) -> dict[str, list[Run]]:
    """Every mode `repeats` times; round r starts with mode r (mod 3), so none always goes first."""
    runs: dict[str, list[Run]] = {mode: [] for mode in MODES}
    for index in range(repeats):
        for offset in range(len(MODES)):
            mode = MODES[(index + offset) % len(MODES)]
            runs[mode].append(timed(READERS[mode], url, statement))
    return runs


@contextmanager
def _database() -> Iterator[str]:
    from tests.servers import postgres_server

    with postgres_server() as server:
        yield server.create_database("insights_bench_pg_export")


def _sizes() -> tuple[int, int]:
    rows = int(os.environ.get("BENCH_ROWS", str(DEFAULT_ROWS)))
    repeats = int(os.environ.get("BENCH_PG_REPEATS", str(DEFAULT_REPEATS)))
    if rows < 1 or repeats < 1:
        raise ValueError("BENCH_ROWS and BENCH_PG_REPEATS take a positive count")
    return rows, repeats


def run(report: Report) -> None:
    rows, repeats = _sizes()
    statement = query_compile(query_validate(query_body()), customer_id=CUSTOMER, dialect=POSTGRES)
    with _database() as url:
        started = time.perf_counter()
        warehouse_load(url, rows)
        report.add("pg_export_load_seconds", time.perf_counter() - started, "s")
        runs = turns_run(url, statement, repeats=repeats)
    counts = {mode: {run.rows for run in mode_runs} for mode, mode_runs in runs.items()}
    if any(count != {rows} for count in counts.values()):
        raise RuntimeError(f"the reads did not return the {rows} rows loaded: {counts}")
    _figures(report, rows=rows, columns=len(statement.columns), runs=runs)


def _figures(report: Report, *, rows: int, columns: int, runs: dict[str, list[Run]]) -> None:
    best = {mode: min(mode_runs, key=lambda run: run.seconds) for mode, mode_runs in runs.items()}
    median = {mode: statistics.median(run.seconds for run in mode_runs) for mode, mode_runs in runs.items()}
    anchor = best["copy_csv"]
    report.add("pg_export_rows", rows, "rows")
    report.add("pg_export_columns", columns, "columns")
    report.add(f"pg_export_seconds[{NAMES['copy_csv']}]", anchor.seconds, "s")
    for mode, goal in (
        ("engine", f" (goal <= {GOAL})"),
        ("psycopg_rows", ": the path before, for comparison"),
    ):
        report.add(
            f"pg_export_seconds[{NAMES[mode]}]",
            best[mode].seconds,
            "s",
            ratio=best[mode].seconds / anchor.seconds,
            anchor=f"PostgreSQL COPY (same query) TO STDOUT (FORMAT csv) read by psycopg, same rows, best runs{goal}",
        )
        report.add(
            f"pg_export_median_seconds[{NAMES[mode]}]",
            median[mode],
            "s",
            ratio=median[mode] / median["copy_csv"],
            anchor="the same COPY, median runs",
        )
        paired = [
            ours.seconds / copy.seconds for ours, copy in zip(runs[mode], runs["copy_csv"], strict=True)
        ]
        report.add(
            f"pg_export_paired_ratio[{NAMES[mode]}]",
            statistics.median(paired),
            "x",
            ratio=statistics.median(paired),
            anchor=f"the same COPY in the same round: median of {len(paired)} rounds' ratios "
            f"(min {min(paired):.3f}, max {max(paired):.3f})",
        )
    for mode in MODES:
        report.add(f"pg_export_client_cpu_seconds[{NAMES[mode]}]", best[mode].cpu_seconds, "s")
    report.add("pg_export_rows_per_second[engine_adbc]", rows / best["engine"].seconds, "rows/s")
