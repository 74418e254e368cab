"""Export speed and memory (docs/DESIGN.md §7): the worker path against DuckDB's own COPY of the same rows.

Goals: the worker path (engine.execute -> write_csv_gzip_parts -> parts staged in local storage) within 1.1x of
DuckDB's uncompressed `COPY ... TO 'x.csv'` of the same work (the serialisation floor), so at least 5x faster
than DuckDB's `COPY ... (COMPRESSION gzip)`; the worker's peak RSS at 10M rows within 1.2x of its peak at 1M.

The same work: this warehouse is loaded in time order, so the worker skips the query's sort (the engine sees
the scan is in order) and its anchor is the COPY of the query without ORDER BY (`copy_csv_unsorted`). For a
query that must sort, the worker is run once more with the sort forced (`worker_sorted`: the statement
without its unordered form) against the COPY of the query as compiled, ORDER BY included (`copy_csv`).

The query: one customer's CallEvent rows with every field a CallEvent has (the 19 common fields and its 10
own ones: 29 columns), from the start of the data to a bound chosen so that the wanted number of rows comes
out. (Every query is one scan of the events table, whatever its number of events.)

Each measurement runs in a fresh process (`bench.memory_probe`), so its peak RSS is its own. The worker paths
and the plain COPYs run with the worker's DuckDB settings (WAREHOUSE_MEMORY_LIMIT, a spill directory),
BENCH_EXPORT_REPEATS times each (default 2), taking turns, best time kept: the machine these run on is
shared, and the best of a few runs is the figure that background load disturbs least. DuckDB's gzip COPY
runs out of memory under 1GB at these sizes, so it gets BENCH_EXPORT_GZIP_MEMORY_LIMIT (default 4GB) and
runs once; more memory can only help it, so the speed-up reported is a lower bound. Beside each time of the
pairs, the CPU seconds of the same run (every thread): other work on a shared machine stretches wall time far
more than CPU time, so their ratio says whether the worker does more work than its anchor.

The warehouse: demo sessions (one CallEvent each, ~3.4 rows per session in all) for one customer, generated
by `demo_batches` up to BASE_SESSIONS sessions, then repeated inside DuckDB, each copy shifted later by the
base's span in days (the whole stays within 30 days), so that 10M CallEvent rows (33M warehouse rows) take
minutes to build, not ten. BENCH_EXPORT_WAREHOUSE=<path> keeps the warehouse there for later runs (one
kept from before the hourly event counts existed gets them on its next run: `_warehouse_upgrade`).
Sizes: BENCH_ROWS (default 5,000,000) rows for the speed figures; BENCH_MEMORY_ROWS (default
"1000000,10000000") for the memory figures. The defaults take 8-11 minutes on 2 busy cores.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from bench.memory_probe import Measurement
from bench.report import Report
from exports.engines import engine_from_url
from exports.engines.base import EVENTS_TABLE, ROW_ID
from exports.engines.counts import event_counts_rebuild
from exports.engines.duckdb import DUCKDB
from exports.schema import ColumnType, quote_identifier
from queries.catalog import catalog
from queries.ingest import DEFAULT_START, demo_batches

ROOT = Path(__file__).resolve().parent.parent
CUSTOMER = "acme"
EVENT = "CallEvent"
SPAN_DAYS = 30  # copies of the base spread over this many days, so the window stays within the 31-day limit
BASE_SESSIONS = 400_000
LOADER_MEMORY_LIMIT = "2GB"
DEFAULT_GZIP_MEMORY_LIMIT = "4GB"  # DuckDB's gzip COPY of 5M rows runs out of memory under 1GB
DEFAULT_REPEATS = 2
DEFAULT_ROWS = 5_000_000
DEFAULT_MEMORY_ROWS = "1000000,10000000"
GOAL_VS_COPY_CSV = 1.1
GOAL_VS_COPY_GZIP = 5.0
GOAL_MEMORY_GROWTH = 1.2
MODES = ("copy_csv", "worker_sorted", "copy_csv_unsorted", "worker")  # taking turns, in this order
_NAMES = {"worker": "worker_path", "worker_sorted": "worker_path_sorted"}  # figure names of the worker modes


def export_query_body(end: datetime) -> dict[str, Any]:
    """Every CallEvent field from the first demo day up to `end` (exclusive, UTC, whole seconds)."""
    fields = list(catalog().events[EVENT].fields)
    return {
        "timestamp": {
            "$gte": f"{DEFAULT_START.isoformat()}T00:00:00Z",
            "$lt": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "data": {EVENT: {"fields": fields}},
    }


def warehouse_build(path: Path, *, event_rows: int) -> int:
    """A DuckDB warehouse at `path` holding at least `event_rows` CallEvent rows of CUSTOMER; returns its
    total row count."""
    base_sessions = max(1, min(event_rows, BASE_SESSIONS))
    copies = math.ceil(event_rows / base_sessions)
    days = max(1, SPAN_DAYS // copies)
    engine = engine_from_url(f"duckdb:///{path}", read_only=False, memory_limit=LOADER_MEMORY_LIMIT)
    try:
        engine.ensure_schema(catalog().warehouse_columns())
        base_rows = sum(
            engine.load(table)
            for table in demo_batches(
                customers=[CUSTOMER], sessions=base_sessions, seed=11, days=days, chunk_sessions=100_000
            )
        )
    finally:
        engine.close()
    with duckdb.connect(str(path), config={"memory_limit": LOADER_MEMORY_LIMIT}) as conn:
        conn.begin()
        for copy in range(1, copies):
            conn.execute(
                _copy_sql(), [copy * days] * len(_timestamp_columns()) + [copy * base_rows, base_rows]
            )
        # Rows appended by SQL of our own, not by the engine's load: the hourly event counts are made again
        # from the rows, in the same transaction, as exports.engines.counts asks of such a writer.
        event_counts_rebuild(conn, DUCKDB)
        conn.commit()
        ((total,),) = conn.execute(f"SELECT count(*) FROM {quote_identifier(EVENTS_TABLE)}").fetchall()
    return int(total)


def _timestamp_columns() -> list[str]:
    return [c.name for c in catalog().warehouse_columns() if c.type is ColumnType.TIMESTAMP]


def _copy_sql() -> str:
    """Append the base rows again, every timestamp moved ? days later and `_row_id` moved past the end.

    The base is stored sorted by (CustomerId, TimeStamp) and each copy lies after the previous one in time,
    so appending in scan order keeps the layout the engine's loader makes.
    """
    shifted = [
        f"{quote_identifier(name)} + ? * INTERVAL 1 DAY AS {quote_identifier(name)}"
        for name in _timestamp_columns()
    ]
    row_id = quote_identifier(ROW_ID)
    table = quote_identifier(EVENTS_TABLE)
    return (
        f"INSERT INTO {table} SELECT * REPLACE ({', '.join(shifted)}, {row_id} + ? AS {row_id}) "
        f"FROM {table} WHERE {row_id} <= ?"
    )


def window_end(path: Path, rows: int) -> datetime:
    """The whole second just after the `rows`-th CallEvent of CUSTOMER in time order (or after the last)."""
    column, table = quote_identifier("TimeStamp"), quote_identifier(EVENTS_TABLE)
    sql = (
        f"SELECT max(ts) FROM (SELECT {column} AS ts FROM {table} WHERE {quote_identifier('CustomerId')} = ? "
        f"AND {quote_identifier('EventName')} = ? ORDER BY {column} LIMIT ?)"
    )
    with duckdb.connect(str(path), read_only=True) as conn:
        ((last,),) = conn.execute(sql, [CUSTOMER, EVENT, rows]).fetchall()
    return last.replace(microsecond=0) + timedelta(seconds=1)


def probe(
    mode: str, *, warehouse: Path, body: dict[str, Any], scratch: Path, memory_limit: str
) -> Measurement:
    """One measurement in a fresh `python -m bench.memory_probe` process; its files are removed after."""
    from django.conf import settings

    out = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=scratch))
    command = [
        sys.executable,
        "-m",
        "bench.memory_probe",
        mode,
        "--warehouse",
        str(warehouse),
        "--body",
        json.dumps(body),
        "--customer",
        CUSTOMER,
        "--out",
        str(out),
        "--memory-limit",
        memory_limit,
        "--part-bytes",
        str(settings.EXPORT_PART_BYTES),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"bench.memory_probe {mode} failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )
        return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _memory_rows() -> list[int]:
    text = os.environ.get("BENCH_MEMORY_ROWS", DEFAULT_MEMORY_ROWS)
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if len(sizes) != 2 or min(sizes) < 1:
        raise ValueError("BENCH_MEMORY_ROWS takes two positive row counts, e.g. 1000000,10000000")
    return sorted(sizes)


def run(report: Report) -> None:
    from django.conf import settings

    rows = int(os.environ.get("BENCH_ROWS", str(DEFAULT_ROWS)))
    small, large = _memory_rows()
    worker_limit = str(settings.WAREHOUSE_MEMORY_LIMIT)
    with tempfile.TemporaryDirectory(prefix="insights-bench-export-") as tmp:
        scratch = Path(tmp)
        warehouse = _warehouse(scratch, event_rows=max(rows, large), report=report)
        body = export_query_body(window_end(warehouse, rows))
        measure = functools.partial(probe, warehouse=warehouse, body=body, scratch=scratch)
        repeats = int(os.environ.get("BENCH_EXPORT_REPEATS", str(DEFAULT_REPEATS)))
        turns = [(mode, measure(mode, memory_limit=worker_limit)) for _ in range(repeats) for mode in MODES]
        gzip_limit = os.environ.get("BENCH_EXPORT_GZIP_MEMORY_LIMIT", DEFAULT_GZIP_MEMORY_LIMIT)
        gzipped = measure("copy_gzip", memory_limit=gzip_limit)
        memory = [
            probe(
                "worker",
                warehouse=warehouse,
                body=export_query_body(window_end(warehouse, n)),
                scratch=scratch,
                memory_limit=worker_limit,
            )
            for n in (small, large)
        ]
    best = {mode: min((m for name, m in turns if name == mode), key=lambda m: m.seconds) for mode in MODES}
    _speed_figures(report, best=best, gzipped=gzipped)
    _memory_figures(report, small=(small, memory[0]), large=(large, memory[1]))


def _warehouse(scratch: Path, *, event_rows: int, report: Report) -> Path:
    """A fresh warehouse in `scratch`, or the file BENCH_EXPORT_WAREHOUSE names, built there on first use and
    kept (for repeated runs while tuning; it must hold enough rows)."""
    kept = os.environ.get("BENCH_EXPORT_WAREHOUSE")
    path = Path(kept) if kept else scratch / "warehouse.duckdb"
    if not path.exists():
        started = time.perf_counter()
        total = warehouse_build(path, event_rows=event_rows)
        report.add("export_warehouse_build", time.perf_counter() - started, "s")
        report.add("export_warehouse_rows", total, "rows")
    else:
        _warehouse_upgrade(path)
    return path


def _warehouse_upgrade(path: Path) -> None:
    """A kept warehouse built before the hourly event counts existed gets them, as a loader's ensure_schema
    gives them to any warehouse. Checked read-only first: other benches may be reading the file, and only a
    file without complete counts is opened for writing (once)."""
    reader = engine_from_url(f"duckdb:///{path}", read_only=True)
    try:
        ready = reader.event_counts_ready()
    finally:
        reader.close()
    if not ready:
        writer = engine_from_url(f"duckdb:///{path}", read_only=False, memory_limit=LOADER_MEMORY_LIMIT)
        try:
            writer.ensure_schema(catalog().warehouse_columns())
        finally:
            writer.close()


def _speed_figures(report: Report, *, best: dict[str, Measurement], gzipped: Measurement) -> None:
    """Each worker path against the COPY doing the same work, and the gzip COPY against the worker."""
    counts = {mode: m.rows for mode, m in [*best.items(), ("copy_gzip", gzipped)]}
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"the measurements did not write the same rows: {counts}")
    worker = best["worker"]
    report.add("export_rows", worker.rows, "rows")
    report.add("export_csv_bytes", worker.csv_bytes / 1e6, "MB")
    report.add("export_gzip_bytes[worker_path]", worker.file_bytes / 1e6, "MB")
    report.add("export_gzip_bytes[duckdb_copy_gzip]", gzipped.file_bytes / 1e6, "MB")
    for path, anchor, what in (
        ("worker", "copy_csv_unsorted", "of the query without ORDER BY: the worker skipped the sort"),
        ("worker_sorted", "copy_csv", "of the query as compiled: the worker made to sort"),
    ):
        report.add(f"export_seconds[duckdb_{anchor}]", best[anchor].seconds, "s")
        report.add(
            f"export_seconds[{_NAMES[path]}]",
            best[path].seconds,
            "s",
            ratio=best[path].seconds / best[anchor].seconds,
            anchor=f"DuckDB COPY to uncompressed CSV {what}, same rows (goal <= {GOAL_VS_COPY_CSV})",
        )
    for path, anchor in (("worker", "copy_csv_unsorted"), ("worker_sorted", "copy_csv")):
        report.add(f"export_cpu_seconds[duckdb_{anchor}]", best[anchor].cpu_seconds, "s")
        report.add(
            f"export_cpu_seconds[{_NAMES[path]}]",
            best[path].cpu_seconds,
            "s",
            ratio=best[path].cpu_seconds / best[anchor].cpu_seconds,
            anchor=f"the CPU time of duckdb_{anchor}, same runs",
        )
    report.add(
        "export_seconds[duckdb_copy_gzip]",
        gzipped.seconds,
        "s",
        ratio=gzipped.seconds / worker.seconds,
        anchor=f"the worker path, same rows: speed-up (goal >= {GOAL_VS_COPY_GZIP})",
    )
    for mode, measurement in [*best.items(), ("copy_gzip", gzipped)]:
        report.add(f"export_peak_rss[{_NAMES.get(mode, 'duckdb_' + mode)}]", measurement.peak_rss_mb, "MB")


def _memory_figures(
    report: Report, *, small: tuple[int, Measurement], large: tuple[int, Measurement]
) -> None:
    (small_rows, at_small), (large_rows, at_large) = small, large
    report.add("worker_baseline_rss", at_small.baseline_rss_mb, "MB")
    for wanted, measurement in (small, large):
        report.add(f"worker_rows[{wanted}_rows]", measurement.rows, "rows")
    report.add(f"worker_peak_rss[{small_rows}_rows]", at_small.peak_rss_mb, "MB")
    report.add(
        f"worker_peak_rss[{large_rows}_rows]",
        at_large.peak_rss_mb,
        "MB",
        ratio=at_large.peak_rss_mb / at_small.peak_rss_mb,
        anchor=f"the worker's peak at {small_rows} rows (goal <= {GOAL_MEMORY_GROWTH})",
    )
