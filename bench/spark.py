"""The Spark engine's export (issue 15) against DuckDB's on the same rows, and against Spark's own gzip CSV.

Two ratios, both sides measured in this run:
- the worker path through the Spark engine over the worker path through DuckDB (the same query, rows, writer
  and storage): what one worker loses on one node by going through Spark Connect; Spark's point is scale
  (many workers, many executors), not one-node speed;
- the worker path through the Spark engine over Spark's own `df.write.csv(path, compression="gzip")` of the
  same query on the same Spark Connect server: the anchor, Spark serialising and compressing the same rows
  itself, on its executors, with no client in the way.
Beside them, the same worker path through the PostgreSQL engine, and each engine's export rate (rows/s of one
worker) with the CPU seconds it took (the worker process's, and the Spark server's for the Spark modes): the
figures of the README's cost model.

The worker path is what queries.runner does between the claim and the final status update, minus the
database writes: engine.execute -> the writer's gzip CSV parts -> staged into a LocalStorage publication as
they finish -> committed. Its statement carries the summary's hidden columns, as a submitted query's plan
does; Spark's own write runs the statement without them.

The data: BENCH_ROWS (default 1,000,000) demo rows of one customer over 29 days, generated once and loaded
through each engine's `load` (the same tables in the same order: the same `_row_id`s) into a DuckDB file, a
throwaway PostgreSQL server and a Parquet lake behind a Spark Connect server (local[2], SERVER_CONFS), both
started for the run as the tests start them (`tests.servers`). The query: every event with every one of its
fields over the whole window, in the service's order: it returns every row loaded.

Each mode runs BENCH_SPARK_REPEATS times (default 2), taking turns in a rotating order; each run opens its
own engine (a worker opens one per query). The figure of each mode is its best run: the machine is shared,
and the best of a few is what background load disturbs least.
"""

from __future__ import annotations

import csv
import gzip
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import memory_probe
from bench.demo_rows import CUSTOMER, demo_rows, query_body
from bench.paired import process_cpu
from bench.report import Report
from exports.engines import engine_from_url
from exports.engines.base import Statement, WarehouseEngine
from exports.engines.spark import SparkEngine
from queries.catalog import catalog
from queries.compiler import query_compile
from queries.validation import query_validate

DEFAULT_ROWS = 1_000_000
DEFAULT_REPEATS = 2
MODES = ("duckdb_worker", "postgres_worker", "spark_worker", "spark_write_csv_gzip")
NAMES = {  # figure names
    "duckdb_worker": "duckdb_worker_path",
    "postgres_worker": "postgres_worker_path",
    "spark_worker": "spark_worker_path",
    "spark_write_csv_gzip": "spark_write_csv_gzip",
}
ENGINE_OF = {"duckdb_worker": "duckdb", "postgres_worker": "postgres", "spark_worker": "spark"}
# The tests' server has a 1 GB driver and two shuffle partitions (a few rows each): a sorted export of a million
# rows needs more. The driver holds each sorted partition's Arrow result until it is sent, in order (with two
# partitions, half the result at once: the 1 GB driver died of it), so more partitions and a bigger heap.
SERVER_CONFS = {"spark.driver.memory": "3g", "spark.sql.shuffle.partitions": "8"}


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu_seconds: float  # this process (the worker's side)
    server_cpu_seconds: float  # the Spark Connect server's JVM (0 for the other engines)
    rows: int
    csv_bytes: int  # uncompressed
    file_bytes: int  # gzip, on disk


@dataclass(frozen=True)
class Warehouses:
    """Where the same rows live, once per engine."""

    duckdb: str
    postgres: str
    spark: str
    lake: str
    spark_pid: int  # the Spark Connect server's JVM, whose CPU seconds are read around each run

    def url(self, engine: str) -> str:
        return str(getattr(self, engine))


def warehouses_load(places: Warehouses, rows: int, report: Report) -> None:
    """Exactly `rows` demo rows of CUSTOMER into each warehouse, through each engine's `load`."""
    engines = {name: _open(places, name, read_only=False) for name in ("duckdb", "postgres", "spark")}
    seconds = dict.fromkeys(engines, 0.0)
    try:
        for engine in engines.values():
            engine.ensure_schema(catalog().warehouse_columns())
        for table in demo_rows(rows):
            for name, engine in engines.items():
                started = time.perf_counter()
                engine.load(table)
                seconds[name] += time.perf_counter() - started
    finally:
        for engine in engines.values():
            engine.close()
    for name, spent in seconds.items():
        report.add(f"spark_load_seconds[{name}]", spent, "s")


def _open(places: Warehouses, engine: str, *, read_only: bool = True) -> WarehouseEngine:
    return engine_from_url(places.url(engine), read_only=read_only, lake_path=places.lake)


def worker_export(engine: WarehouseEngine, statement: Statement, out: Path) -> tuple[int, int, int]:
    """The worker path into a local publication under `out`: (rows, CSV bytes, bytes of the gzip parts)."""
    from django.conf import settings

    return memory_probe.worker_export(engine, statement, out, part_bytes=settings.EXPORT_PART_BYTES)


def spark_write_csv_gzip(engine: SparkEngine, statement: Statement, target: Path) -> None:
    """Spark's own gzip CSV of the statement (a header, Spark's part files) into `target`, a directory on the
    server's filesystem (the server runs on this machine)."""
    spark = engine._connection()
    try:
        engine._events_view(spark)  # the view the engine's own statements read
        frame = engine._query(spark, statement.sql, statement.params)
        frame.write.mode("overwrite").option("header", "true").csv(str(target), compression="gzip")
    finally:
        engine.close()


def gzip_csv_parts(directory: Path) -> tuple[int, int, int]:
    """Records (not lines: a quoted value may hold a newline), CSV bytes and gzip bytes of Spark's part files."""
    rows, text_bytes, size = 0, 0, 0
    for part in sorted(directory.glob("part-*.csv.gz")):
        size += part.stat().st_size
        with gzip.open(part, "rt", encoding="utf-8", newline="") as text:
            rows += sum(1 for _ in csv.reader(text)) - 1  # its header
        with gzip.open(part, "rb") as raw:
            text_bytes += sum(len(block) for block in iter(lambda: raw.read(1 << 20), b""))
    return rows, text_bytes, size


def timed(mode: str, places: Warehouses, statements: dict[str, Statement], scratch: Path) -> Run:
    """One run of `mode` in a scratch directory of its own, removed after."""
    out = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=scratch))
    spark_cpu_before = process_cpu(places.spark_pid)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        if mode == "spark_write_csv_gzip":
            spark = _open(places, "spark")
            assert isinstance(spark, SparkEngine)
            spark_write_csv_gzip(spark, statements["anchor"], out / "spark")
        else:
            rows, text_bytes, size = worker_export(
                _open(places, ENGINE_OF[mode]), statements[ENGINE_OF[mode]], out
            )
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        server_cpu = process_cpu(places.spark_pid) - spark_cpu_before if mode.startswith("spark") else 0.0
        if mode == "spark_write_csv_gzip":
            rows, text_bytes, size = gzip_csv_parts(out / "spark")  # counted after the timed span
        return Run(seconds, cpu_seconds, server_cpu, rows, text_bytes, size)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def turns_run(
    places: Warehouses, statements: dict[str, Statement], scratch: Path, *, repeats: int
) -> dict[str, list[Run]]:
    """Every mode `repeats` times; round r starts with mode r (mod the number of modes)."""
    runs: dict[str, list[Run]] = {mode: [] for mode in MODES}
    for index in range(repeats):
        for offset in range(len(MODES)):
            mode = MODES[(index + offset) % len(MODES)]
            runs[mode].append(timed(mode, places, statements, scratch))
    return runs


@contextmanager
def _warehouses(scratch: Path) -> Iterator[Warehouses]:
    from tests.servers import postgres_server, spark_server

    with ExitStack() as stack:
        postgres = stack.enter_context(postgres_server())
        spark = stack.enter_context(spark_server(SERVER_CONFS))
        yield Warehouses(
            duckdb=f"duckdb:///{scratch / 'warehouse.duckdb'}",
            postgres=postgres.create_database("insights_bench_spark"),
            spark=spark.url,
            lake=str(spark.work / "lake"),
            spark_pid=_listening_pid(spark.port),
        )


def _listening_pid(port: int) -> int:
    """The process whose command line binds the Spark Connect port (the server's JVM), from /proc."""
    needle = f"spark.connect.grpc.binding.port={port}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    raise RuntimeError(f"no process runs the Spark Connect server on port {port}")


def _sizes() -> tuple[int, int]:
    rows = int(os.environ.get("BENCH_ROWS", str(DEFAULT_ROWS)))
    repeats = int(os.environ.get("BENCH_SPARK_REPEATS", str(DEFAULT_REPEATS)))
    if rows < 1 or repeats < 1:
        raise ValueError("BENCH_ROWS and BENCH_SPARK_REPEATS take a positive count")
    return rows, repeats


def _statements() -> dict[str, Statement]:
    """The workers' statements per engine (with the summary's hidden columns), and the anchor's (without)."""
    from exports.engines import engine_class

    spec = query_validate(query_body())
    statements = {
        name: query_compile(spec, customer_id=CUSTOMER, dialect=engine_class(url).dialect, summary=True)
        for name, url in (("duckdb", "duckdb://"), ("postgres", "postgresql://"), ("spark", "sc://"))
    }
    statements["anchor"] = query_compile(spec, customer_id=CUSTOMER, dialect=SparkEngine.dialect)
    return statements


def run(report: Report) -> None:
    rows, repeats = _sizes()
    statements = _statements()
    with tempfile.TemporaryDirectory(prefix="insights-bench-spark-") as tmp:
        scratch = Path(tmp)
        with _warehouses(scratch) as places:
            warehouses_load(places, rows, report)
            runs = turns_run(places, statements, scratch, repeats=repeats)
    counts = {mode: {run.rows for run in mode_runs} for mode, mode_runs in runs.items()}
    if any(count != {rows} for count in counts.values()):
        raise RuntimeError(f"the exports did not write the {rows} rows loaded: {counts}")
    _figures(report, rows=rows, columns=len(statements["anchor"].columns), runs=runs)


def _figures(report: Report, *, rows: int, columns: int, runs: dict[str, list[Run]]) -> None:
    best = {mode: min(mode_runs, key=lambda run: run.seconds) for mode, mode_runs in runs.items()}
    duckdb, spark, own = best["duckdb_worker"], best["spark_worker"], best["spark_write_csv_gzip"]
    report.add("spark_rows", rows, "rows")
    report.add("spark_columns", columns, "columns")
    for mode in ("duckdb_worker", "spark_write_csv_gzip"):
        report.add(f"spark_seconds[{NAMES[mode]}]", best[mode].seconds, "s")
    report.add(
        f"spark_seconds[{NAMES['spark_worker']}]",
        spark.seconds,
        "s",
        ratio=spark.seconds / own.seconds,
        anchor="Spark's own df.write.csv(compression='gzip') of the same query, same server, same rows",
    )
    for mode in ("spark_worker", "postgres_worker"):
        report.add(
            f"spark_vs_duckdb_seconds[{NAMES[mode]}]",
            best[mode].seconds,
            "s",
            ratio=best[mode].seconds / duckdb.seconds,
            anchor="the worker path through DuckDB, same query, same rows",
        )
    for mode in MODES:
        run = best[mode]
        report.add(f"spark_rows_per_second[{NAMES[mode]}]", rows / run.seconds, "rows/s")
        report.add(f"spark_worker_cpu_seconds[{NAMES[mode]}]", run.cpu_seconds, "s")
        if mode.startswith("spark"):
            report.add(f"spark_server_cpu_seconds[{NAMES[mode]}]", run.server_cpu_seconds, "s")
        report.add(f"spark_csv_bytes[{NAMES[mode]}]", run.csv_bytes / 1e6, "MB")
        report.add(f"spark_gzip_bytes[{NAMES[mode]}]", run.file_bytes / 1e6, "MB")
