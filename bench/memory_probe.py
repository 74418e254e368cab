"""One export measurement in a process of its own, so its peak RSS is its own: `python -m bench.memory_probe`.

Modes, each running the compiled statement of the query body it is given, with the DuckDB memory limit it
is given and a spill directory of its own:

- `worker`: this product's worker path, engine.execute -> write_csv_gzip_parts -> parts staged into a
  LocalStorage publication as they finish -> commit (the engine skips the sort when the scan is in order);
- `worker_sorted`: the same, with the statement's unordered form removed, so the engine sorts as it must
  for a query whose scan is not in order;
- `copy_csv`: DuckDB's own `COPY (<sql>) TO 'x.csv' (HEADER)`, the serialisation floor of a query that sorts;
- `copy_csv_unsorted`: the same COPY of the query without its ORDER BY (the statement's unordered form, its
  sort keys left out): the floor of a worker that skipped the sort, the same work;
- `copy_gzip`: DuckDB's own `COPY (<sql>) TO 'x.csv.gz' (HEADER, COMPRESSION gzip)`.

The timed span starts before the warehouse is opened and ends once the files are in place (published, for
`worker`). Django is set up first in every mode, so each process carries what a worker process carries and
the baselines compare. Prints one JSON object (see `Measurement`) as its last line of output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MODES = ("worker", "worker_sorted", "copy_csv", "copy_csv_unsorted", "copy_gzip")
# The window of a benchmark query may span the whole warehouse; the product's 31-day default still applies
# to customers, not here.
BENCH_MAX_WINDOW = timedelta(days=3650)


@dataclass(frozen=True)
class Measurement:
    mode: str
    seconds: float
    rows: int
    csv_bytes: int  # uncompressed CSV, as the writer counts it (0 where the engine wrote it and did not say)
    file_bytes: int  # what ended up on disk
    baseline_rss_mb: float  # resident before the timed span (interpreter, Django, pyarrow, duckdb)
    peak_rss_mb: float  # the process's high-water mark at the end (VmHWM)
    # CPU seconds of every thread of the process over the timed span: on a shared machine, where other work
    # stretches the wall time, the figure that says whether two runs did the same work (-1: not measured).
    cpu_seconds: float = -1.0


def rss_mb(field: str = "VmHWM") -> float:
    """A memory figure of this process from /proc/self/status (VmHWM: peak resident; VmRSS: now), in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # reported in kB
    raise RuntimeError(f"{field} is not in /proc/self/status (Linux only)")


def probe_run(
    *,
    mode: str,
    warehouse: Path,
    body: dict[str, Any],
    customer: str,
    out: Path,
    memory_limit: str,
    part_bytes: int,
) -> Measurement:
    """Run one measurement in this process; `out` receives the files and DuckDB's spill directory."""
    from exports.engines.duckdb import DuckDBEngine
    from queries.compiler import query_compile
    from queries.validation import query_validate

    worker = mode in ("worker", "worker_sorted")
    # The worker's statement carries the hidden summary columns, as a submitted query's plan does.
    statement = query_compile(
        query_validate(body, max_window=BENCH_MAX_WINDOW),
        customer_id=customer,
        dialect=DuckDBEngine.dialect,
        summary=worker,
    )
    if mode == "worker_sorted":
        statement = dataclasses.replace(statement, unordered=None)
    spill = out / "duckdb-tmp"
    baseline = rss_mb("VmRSS")
    started, cpu_started = time.perf_counter(), time.process_time()
    if worker:
        rows, csv_bytes, file_bytes = _worker_path(warehouse, statement, out, memory_limit, spill, part_bytes)
    else:
        sql = _unsorted_sql(statement) if mode == "copy_csv_unsorted" else statement.sql
        rows, file_bytes = _duckdb_copy(
            warehouse, sql, statement.params, out, memory_limit, spill, gzip=mode == "copy_gzip"
        )
        csv_bytes = 0 if mode == "copy_gzip" else file_bytes
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return Measurement(mode, seconds, rows, csv_bytes, file_bytes, baseline, rss_mb("VmHWM"), cpu_seconds)


def _worker_path(
    warehouse: Path, statement: Any, out: Path, memory_limit: str, spill: Path, part_bytes: int
) -> tuple[int, int, int]:
    """What queries.runner does between the claim and the final status update, minus the database writes:
    parts are staged into the local storage's publication by the upload thread as they are finished."""
    from exports.engines import engine_from_url

    engine = engine_from_url(
        f"duckdb:///{warehouse}", read_only=True, memory_limit=memory_limit, temp_directory=str(spill)
    )
    return worker_export(engine, statement, out, part_bytes=part_bytes)


def worker_export(engine: Any, statement: Any, out: Path, *, part_bytes: int) -> tuple[int, int, int]:
    """The worker path from `engine` into a local publication under `out` (the engine is closed after):
    (rows, CSV bytes, bytes of the gzip parts)."""
    from django.conf import settings

    from exports.pipeline import ExportOptions, StagedExport
    from exports.results import ResultNames
    from exports.storage.local import LocalStorage
    from exports.summary import ExportSummary
    from exports.writers import manifest_build, manifest_bytes, manifest_schema

    names = ResultNames(prefix="reports/bench", guid="0" * 32, epoch_ms=int(time.time() * 1000))
    workdir, storage = out / "work", LocalStorage(out / "exports")
    workdir.mkdir(parents=True, exist_ok=True)
    options = ExportOptions(
        part_bytes=part_bytes,
        compression_level=settings.EXPORT_GZIP_LEVEL,
        max_bytes=None,
        parts_in_flight=settings.EXPORT_PARTS_IN_FLIGHT,
        retries=0,
        backoff_seconds=0,
    )
    with storage.publication() as publication:
        export = StagedExport(
            publication, names=names, directory=workdir, options=options, control=_Unattended(), label="bench"
        )
        summary = ExportSummary(statement)
        try:
            parts = export.write(summary.batches(engine), summary.columns)
        finally:
            engine.close()
        manifest = manifest_build(
            parts=parts,
            query={},
            fingerprint="",
            schema=manifest_schema(summary.columns),
            created_at=datetime.now(UTC),
            guid=names.guid,
            summary=summary.figures,
        )
        export.commit(manifest_bytes(manifest), commit_check=lambda: True)
    return sum(p.rows for p in parts), sum(p.bytes for p in parts), sum(p.compressed_bytes for p in parts)


class _Unattended:
    """The runner's control without a query behind it: never stopped, nothing recorded."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def should_stop(self) -> bool:
        return False

    def progress(self, rows: int, bytes_written: int) -> None:
        pass

    def delivery_tried(self) -> None:
        pass


def _unsorted_sql(statement: Any) -> str:
    """The statement without its ORDER BY: its unordered form, the two trailing sort keys left out."""
    if statement.unordered is None:
        raise ValueError("this query has no unordered form (its scan may not keep the sort order)")
    positions = ", ".join(f"#{index + 1}" for index in range(len(statement.columns)))
    return f"SELECT {positions} FROM ({statement.unordered.sql})"


def _duckdb_copy(
    warehouse: Path,
    sql: str,
    params: Any,
    out: Path,
    memory_limit: str,
    spill: Path,
    *,
    gzip: bool,
) -> tuple[int, int]:
    import duckdb

    target = out / ("copy.csv.gz" if gzip else "copy.csv")
    options = "(HEADER, COMPRESSION gzip)" if gzip else "(HEADER)"
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": memory_limit,
        "temp_directory": str(spill),
    }
    conn = duckdb.connect(str(warehouse), read_only=True, config=config)
    try:
        # The target is our own temporary path, quoted as a SQL string literal; the values stay bound.
        literal = "'" + str(target).replace("'", "''") + "'"
        result = conn.execute(f"COPY ({sql}) TO {literal} {options}", list(params))
        ((rows,),) = result.fetchall()
    finally:
        conn.close()
    return int(rows), target.stat().st_size


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--warehouse", type=Path, required=True, help="The DuckDB file.")
    parser.add_argument("--body", required=True, help="The query body, JSON.")
    parser.add_argument("--customer", required=True)
    parser.add_argument("--out", type=Path, required=True, help="An empty directory for the output.")
    parser.add_argument("--memory-limit", required=True, help="DuckDB memory_limit, e.g. 1GB.")
    parser.add_argument("--part-bytes", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "insights.settings")
    import django

    django.setup()
    measurement = probe_run(
        mode=args.mode,
        warehouse=args.warehouse,
        body=json.loads(args.body),
        customer=args.customer,
        out=args.out,
        memory_limit=args.memory_limit,
        part_bytes=args.part_bytes,
    )
    print(json.dumps(asdict(measurement)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
