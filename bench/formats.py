"""Output formats: the Parquet and xlsx writers against what a customer would otherwise use, on the rows of
bench.export's query (one customer's CallEvents, 29 columns, from a DuckDB warehouse): `python -m bench formats`.

Goals:
- Parquet: the worker's path (engine.execute -> write_parts, format parquet) within 1.2x of DuckDB's own
  `COPY (...) TO 'x.parquet' (FORMAT parquet)` of the same rows, at DuckDB's defaults (snappy pages, all
  cores). The COPY reads what the worker reads: the engine skips the query's ORDER BY when the scan is in
  order (it is, in this warehouse), so the anchor COPYs the statement's unordered form (`copy_parquet`).
  Beside it: DuckDB's COPY of the query as compiled, sort included (`copy_parquet_sorted`: what a user of
  DuckDB alone would run; with millions of rows its sort may spill under the 1GB memory limit), and with zstd pages
  like ours (`copy_parquet_zstd`).
- xlsx: at least 2x faster than openpyxl's write-only mode on the same rows (engine batches -> Python rows ->
  `ws.append`), both timed from the warehouse's opening to the file's close. openpyxl writes some 20-50k such
  rows a second, so it runs at BENCH_FORMATS_OPENPYXL_ROWS rows (default 200,000) and ours is timed at that
  count too for the ratio; ours is also timed at BENCH_ROWS for the absolute figure. (openpyxl runs as it is
  installed here, on et_xmlfile; with lxml installed it is faster.)
- xlsx: the writer's peak RSS at the larger of BENCH_FORMATS_MEMORY_ROWS (default "1000000,2000000") within
  1.2x of its peak at the smaller: the sheet is streamed, so the row count must not show.

Each measurement runs in a fresh process (`python -m bench.formats <mode> ...`, like bench.memory_probe), so
its time and peak RSS are its own; the Parquet pair runs BENCH_FORMATS_REPEATS times (default 2), taking
turns, best time kept. Sizes: BENCH_ROWS (default 5,000,000). The warehouse is built in a temporary
directory, or kept at BENCH_EXPORT_WAREHOUSE (shared with bench.export; it must hold enough rows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.export import CUSTOMER, ROOT, export_query_body, warehouse_build, window_end
from bench.memory_probe import BENCH_MAX_WINDOW, Measurement, rss_mb
from bench.report import Report

DEFAULT_ROWS = 5_000_000
DEFAULT_OPENPYXL_ROWS = 200_000
DEFAULT_MEMORY_ROWS = "1000000,2000000"
DEFAULT_REPEATS = 2
GOAL_PARQUET_VS_COPY = 1.2
GOAL_XLSX_SPEEDUP = 2.0
GOAL_MEMORY_GROWTH = 1.2
COPIES = {  # mode: (COPY the statement's unordered form, COPY options)
    "copy_parquet": (True, "(FORMAT parquet)"),
    "copy_parquet_zstd": (True, "(FORMAT parquet, COMPRESSION zstd)"),
    "copy_parquet_sorted": (False, "(FORMAT parquet)"),
}
MODES = ("parquet", "xlsx", "openpyxl", *COPIES)


# --- one measurement, in its own process -------------------------------------------------------------


def probe_run(
    *, mode: str, warehouse: Path, body: dict[str, Any], out: Path, memory_limit: str
) -> Measurement:
    """Run one measurement in this process; `out` receives the files and DuckDB's spill directory."""
    from exports.engines.duckdb import DuckDBEngine
    from queries.compiler import query_compile
    from queries.validation import query_validate

    statement = query_compile(
        query_validate(body, max_window=BENCH_MAX_WINDOW), customer_id=CUSTOMER, dialect=DuckDBEngine.dialect
    )
    spill = str(out / "duckdb-tmp")
    baseline = rss_mb("VmRSS")
    started = time.perf_counter()
    if mode in COPIES:
        config = {"memory_limit": memory_limit, "temp_directory": spill}
        rows, content_bytes, file_bytes = _duckdb_copy(warehouse, statement, out, config, *COPIES[mode])
    else:
        from exports.engines import engine_from_url

        url = f"duckdb:///{warehouse}"
        engine = engine_from_url(url, read_only=True, memory_limit=memory_limit, temp_directory=spill)
        try:
            batches = engine.execute(statement)
            write = _openpyxl_write if mode == "openpyxl" else _ours_write
            rows, content_bytes, file_bytes = write(mode, batches, statement.columns, out)
        finally:
            engine.close()
    seconds = time.perf_counter() - started
    return Measurement(mode, seconds, rows, content_bytes, file_bytes, baseline, rss_mb("VmHWM"))


def _ours_write(mode: str, batches: Any, columns: Any, out: Path) -> tuple[int, int, int]:
    from django.conf import settings

    from exports.writers import OutputFormat, write_parts

    output = OutputFormat.parse(format=mode)
    parts = write_parts(
        batches,
        output=output,
        columns=columns,
        directory=out,
        name_for_part=lambda index: f"part{index}.{output.extension}",
        part_bytes=settings.EXPORT_PART_BYTES,
        compression_level=settings.EXPORT_GZIP_LEVEL,
    )
    return sum(p.rows for p in parts), sum(p.bytes for p in parts), sum(p.compressed_bytes for p in parts)


def _openpyxl_write(mode: str, batches: Any, columns: Any, out: Path) -> tuple[int, int, int]:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Export")
    sheet.append([column.name for column in columns])
    rows = 0
    for batch in batches:
        for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
            sheet.append(row)
        rows += batch.num_rows
    target = out / "openpyxl.xlsx"
    workbook.save(target)
    return rows, 0, target.stat().st_size


def _duckdb_copy(
    warehouse: Path, statement: Any, out: Path, config: dict[str, Any], unordered: bool, options: str
) -> tuple[int, int, int]:
    import duckdb

    query = statement.sql
    if unordered and statement.unordered is not None:  # its last two columns are the sort keys: left out
        positions = ", ".join(f"#{i + 1}" for i in range(len(statement.columns)))
        query = f"SELECT {positions} FROM ({statement.unordered.sql})"
    target = out / "copy.parquet"
    # COPY binds no file name: the target, our own temporary path, goes in as a SQL string literal.
    sql = "COPY ({}) TO '{}' {}".format(query, str(target).replace("'", "''"), options)
    with duckdb.connect(str(warehouse), read_only=True, config=config) as conn:
        ((rows,),) = conn.execute(sql, list(statement.params)).fetchall()
    return int(rows), 0, target.stat().st_size


def main(argv: list[str]) -> int:
    """`python -m bench.formats <mode> <spec>`: spec is the JSON of probe_run's other arguments."""
    mode, spec = argv
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "insights.settings")
    import django

    django.setup()
    options = json.loads(spec)
    measurement = probe_run(
        mode=mode,
        warehouse=Path(options["warehouse"]),
        body=options["body"],
        out=Path(options["out"]),
        memory_limit=options["memory_limit"],
    )
    print(json.dumps(asdict(measurement)), flush=True)
    return 0


# --- the section ------------------------------------------------------------------------------------


def measure(mode: str, *, warehouse: Path, rows: int, scratch: Path) -> Measurement:
    """One measurement of `rows` rows in a fresh `python -m bench.formats` process; its files are removed."""
    from django.conf import settings

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    with tempfile.TemporaryDirectory(prefix=f"{mode}-", dir=scratch) as out:
        spec = {
            "warehouse": str(warehouse),
            "body": export_query_body(window_end(warehouse, rows)),
            "out": out,
            "memory_limit": settings.WAREHOUSE_MEMORY_LIMIT,
        }
        command = [sys.executable, "-m", "bench.formats", mode, json.dumps(spec)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench.formats {mode} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


def _sizes() -> tuple[int, int, int, int]:
    rows = int(os.environ.get("BENCH_ROWS", str(DEFAULT_ROWS)))
    openpyxl_rows = min(rows, int(os.environ.get("BENCH_FORMATS_OPENPYXL_ROWS", str(DEFAULT_OPENPYXL_ROWS))))
    text = os.environ.get("BENCH_FORMATS_MEMORY_ROWS", DEFAULT_MEMORY_ROWS)
    memory = sorted(int(part) for part in text.split(",") if part.strip())
    if len(memory) != 2 or memory[0] < 1 or min(rows, openpyxl_rows) < 1:
        raise ValueError("BENCH_FORMATS_MEMORY_ROWS takes two positive row counts, e.g. 1000000,2000000")
    return rows, openpyxl_rows, memory[0], memory[1]


def run(report: Report) -> None:
    rows, openpyxl_rows, small, large = _sizes()
    repeats = int(os.environ.get("BENCH_FORMATS_REPEATS", str(DEFAULT_REPEATS)))
    with tempfile.TemporaryDirectory(prefix="insights-bench-formats-") as tmp:
        scratch = Path(tmp)
        kept = os.environ.get("BENCH_EXPORT_WAREHOUSE")
        warehouse = Path(kept) if kept else scratch / "warehouse.duckdb"
        if not warehouse.exists():
            warehouse_build(warehouse, event_rows=max(rows, large))

        def at(count: int, mode: str) -> Measurement:
            return measure(mode, warehouse=warehouse, rows=count, scratch=scratch)

        pairs = [(at(rows, "copy_parquet"), at(rows, "parquet")) for _ in range(repeats)]
        copy = min((copy for copy, _ in pairs), key=lambda m: m.seconds)
        ours = min((ours for _, ours in pairs), key=lambda m: m.seconds)
        zstd = at(rows, "copy_parquet_zstd")
        sorted_copy = at(rows, "copy_parquet_sorted")
        xlsx = {count: at(count, "xlsx") for count in sorted({rows, openpyxl_rows, small, large})}
        openpyxl = at(openpyxl_rows, "openpyxl")
    if {m.rows for m in (copy, zstd, sorted_copy)} != {ours.rows}:
        raise RuntimeError(f"the Parquet runs wrote different row counts: {ours.rows} by the worker path")
    report.add("formats_rows", ours.rows, "rows")
    report.add("parquet_seconds[duckdb_copy]", copy.seconds, "s")
    others = (("duckdb_copy_zstd", zstd), ("duckdb_copy_sorted", sorted_copy))
    for name, measurement in others:
        _compared(
            report,
            f"parquet_seconds[{name}]",
            measurement.seconds,
            "s",
            to=ours.seconds,
            anchor="the worker path, same rows: its speed-up",
        )
    _compared(
        report,
        "parquet_seconds[worker_path]",
        ours.seconds,
        "s",
        to=copy.seconds,
        anchor=f"DuckDB COPY TO parquet at its defaults, same scan and rows (goal <= {GOAL_PARQUET_VS_COPY})",
    )
    for name, measurement in (("worker_path", ours), ("duckdb_copy", copy), *others):
        report.add(f"parquet_file_bytes[{name}]", measurement.file_bytes / 1e6, "MB")
        report.add(f"parquet_peak_rss[{name}]", measurement.peak_rss_mb, "MB")
    report.add(f"xlsx_seconds[worker_path_{rows}_rows]", xlsx[rows].seconds, "s")
    report.add(f"xlsx_file_bytes[worker_path_{rows}_rows]", xlsx[rows].file_bytes / 1e6, "MB")
    report.add("xlsx_rows_per_second[worker_path]", xlsx[rows].rows / xlsx[rows].seconds, "rows/s")
    same = xlsx[openpyxl_rows].seconds
    _compared(
        report,
        f"xlsx_seconds[openpyxl_write_only_{openpyxl_rows}_rows]",
        openpyxl.seconds,
        "s",
        to=same,
        anchor=f"the worker path on the same rows ({same:.3g} s): speed-up (goal >= {GOAL_XLSX_SPEEDUP})",
    )
    report.add("xlsx_baseline_rss", xlsx[small].baseline_rss_mb, "MB")
    report.add(f"xlsx_peak_rss[{small}_rows]", xlsx[small].peak_rss_mb, "MB")
    _compared(
        report,
        f"xlsx_peak_rss[{large}_rows]",
        xlsx[large].peak_rss_mb,
        "MB",
        to=xlsx[small].peak_rss_mb,
        anchor=f"the xlsx writer's peak at {small} rows (goal <= {GOAL_MEMORY_GROWTH})",
    )


def _compared(report: Report, name: str, value: float, unit: str, *, to: float, anchor: str) -> None:
    """A figure with its ratio to the anchor's value `to`."""
    report.add(name, value, unit, ratio=value / to, anchor=anchor)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
