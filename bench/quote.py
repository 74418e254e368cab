"""A dry run's latency (issue 16): `POST /dwh/Q?dry_run=true` over HTTP, rows counted exactly:
`python -m bench quote`. Goal: median under 50 ms on a customer window of BENCH_ROWS rows (default 5,000,000).

Two windows of one warehouse, built as bench.export builds it (BENCH_EXPORT_WAREHOUSE keeps it for later runs),
both of one customer's CallEvents with all 29 fields:
- `<BENCH_ROWS>_rows`: bench.export's window, from the first demo day to the bound that holds BENCH_ROWS of them;
- `one_day`: the first day alone (what "a customer's day" costs).

The service runs as real processes (`tests.service.service_running`: gunicorn on a SQLite metadata database, no
worker: a dry run needs none) over that DuckDB file. BENCH_QUOTE_WARMUP rounds (default 10: both gunicorn
processes answer some, each opening its engine on its first), then BENCH_QUOTE_RUNS rounds (default 30). A
round, per window and taking turns: one dry run, whose answer must say `exact-count` and the window's row count
(counted once, before the rounds, by `SELECT COUNT(*)` over the window's rows); then the anchors, in this
process: the dry run's count alone (`queries.row_counts.exact_rows`: from the hourly event counts, which these
plain windows can use) on a connection kept open (the floor: what is left above it is HTTP, validation, the
history and the slots), the window's `SELECT COUNT(*)` on that connection (what the dry run counted before the
hourly counts: `quote_count_star_median`), and the dry run's count on a fresh read-only connection
(what a dry run costs when its web process has no warm engine: queries.warm_engines; the service runs with
QUOTE_ENGINE_IDLE_SECONDS=600, so that its engines stay warm through rounds that take seconds, as they do
under a steady stream of dry runs, where the default 2 s suffices). Each
round also times an authenticated GET of the catalog: what HTTP, authentication and Django cost on this server
under the same load.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.export import CUSTOMER, _warehouse, export_query_body, window_end
from bench.latency import percentile
from bench.memory_probe import BENCH_MAX_WINDOW
from bench.report import Report

DEFAULT_ROWS = 5_000_000
DEFAULT_RUNS = 30
DEFAULT_WARMUP = 10
GOAL_MS = 50.0


@dataclass
class Window:
    name: str
    body: dict[str, Any]
    rows: int = 0  # counted once, before the rounds
    dry_run: list[float] = field(default_factory=list)
    open_connection: list[float] = field(default_factory=list)
    count_star: list[float] = field(default_factory=list)
    fresh_connection: list[float] = field(default_factory=list)


def run(report: Report) -> None:
    from django.conf import settings

    from tests.service import Shape, service_running

    rows = int(os.environ.get("BENCH_ROWS", str(DEFAULT_ROWS)))
    runs = int(os.environ.get("BENCH_QUOTE_RUNS", str(DEFAULT_RUNS)))
    warmup = int(os.environ.get("BENCH_QUOTE_WARMUP", str(DEFAULT_WARMUP)))
    memory_limit = str(settings.WAREHOUSE_MEMORY_LIMIT)
    with tempfile.TemporaryDirectory(prefix="insights-bench-quote-") as tmp:
        scratch = Path(tmp)
        warehouse = _warehouse(scratch, event_rows=rows, report=report)
        whole = export_query_body(window_end(warehouse, rows))
        first_day = datetime.fromisoformat(whole["timestamp"]["$gte"].removesuffix("Z")) + timedelta(days=1)
        windows = [Window(f"{rows}_rows", whole), Window("one_day", export_query_body(first_day))]
        var_dir = scratch / "var"
        var_dir.mkdir()
        shape = Shape(
            name="embedded",
            database_url=f"sqlite:///{var_dir / 'insights.sqlite3'}",
            broker_url="filesystem://",
            warehouse_url=f"duckdb:///{warehouse}",
            cache_url=f"file://{var_dir / 'cache'}",
        )
        # The windows (at most 30 days) fit the default 31. Each web process keeps its engine warm for the whole
        # run: a round here takes longer than the default 2 s between two dry runs reaching the same process.
        environment = {"QUOTE_PER_MINUTE": "1000000", "QUOTE_ENGINE_IDLE_SECONDS": "600"}
        with service_running(shape=shape, var_dir=var_dir, seed=False, extra_env=environment) as service:
            key = service.customer_create(CUSTOMER)
            warm = _engine(warehouse, memory_limit)
            try:
                for window in windows:
                    window.rows = _count(warm, window.body, count_star=True)[1]
                for _ in range(warmup):
                    for window in windows:
                        _dry_run(service, key, window)
                http_floor = []
                for _ in range(runs):  # taking turns: the same machine load for all
                    http_floor.append(_catalog_get(service, key))
                    for window in windows:
                        window.dry_run.append(_dry_run(service, key, window))
                        window.open_connection.append(_count(warm, window.body, rows=window.rows)[0])
                        window.count_star.append(_count(warm, window.body, count_star=True)[0])
                        # DuckDB shares one database instance between a process's connections to a file: a
                        # fresh connection is fresh only while this process holds no other.
                        warm.close()
                        window.fresh_connection.append(
                            _fresh_count(warehouse, window.body, memory_limit, rows=window.rows)
                        )
                        warm = _engine(warehouse, memory_limit)
                        _count(warm, window.body)  # connected again, untimed
                        _count(warm, window.body, count_star=True)  # its blocks read: warm as before, untimed
            finally:
                warm.close()
    for window in windows:
        _figures(report, window, runs)
    floor = statistics.median(http_floor)
    report.add(
        "quote_http_floor_median",
        floor,
        "ms",
        ratio=statistics.median(windows[-1].dry_run) / floor,
        anchor="the one-day dry run's median over an authenticated GET of the catalog (in turn)",
    )


def _figures(report: Report, window: Window, runs: int) -> None:
    median = statistics.median(window.dry_run)
    report.add(f"quote_window_rows[{window.name}]", window.rows, "rows")
    report.add(
        f"quote_dry_run_median[{window.name}]",
        median,
        "ms",
        ratio=median / GOAL_MS,
        anchor=f"{GOAL_MS:.0f} ms goal (exact-count, {runs} runs over HTTP)",
    )
    report.add(f"quote_dry_run_p95[{window.name}]", percentile(window.dry_run, 0.95), "ms")
    for anchor in ("open_connection", "fresh_connection"):
        count = statistics.median(getattr(window, anchor))
        report.add(
            f"quote_exact_count_median[{window.name},{anchor}]",
            count,
            "ms",
            ratio=median / count,
            anchor=f"the dry run's median over the count alone on {anchor.replace('_', ' ')}s (in turn)",
        )
    count_star = statistics.median(window.count_star)
    report.add(
        f"quote_count_star_median[{window.name}]",
        count_star,
        "ms",
        ratio=statistics.median(window.open_connection) / count_star,
        anchor="the dry run's count alone over SELECT COUNT(*) of the window's rows, open connection (in turn)",
    )


def _dry_run(service: object, key: str, window: Window) -> float:
    """One dry run over HTTP; its milliseconds. It must have counted exactly the window's rows."""
    from tests.service import Service

    assert isinstance(service, Service)
    started = time.perf_counter()
    response = service.request("POST", "/_rest/v4/dwh/Q?dry_run=true", key=key, body=window.body)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"the dry run answered {response.status}: {response.body[:300]!r}")
    estimate = response.json()["estimate"]
    if (estimate["method"], estimate["rows"]) != ("exact-count", window.rows):
        raise RuntimeError(f"the dry run did not count the window's {window.rows} rows exactly: {estimate}")
    return elapsed


def _catalog_get(service: object, key: str) -> float:
    """GET /dwh/Q (the catalog: authenticated, no warehouse, no database query of its own); its milliseconds."""
    from tests.service import Service

    assert isinstance(service, Service)
    started = time.perf_counter()
    response = service.request("GET", "/_rest/v4/dwh/Q", key=key)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"the catalog answered {response.status}")
    return elapsed


def _engine(warehouse: Path, memory_limit: str) -> Any:
    """A read-only engine of the bench warehouse, as the web process opens one."""
    from exports.engines import engine_from_url

    return engine_from_url(f"duckdb:///{warehouse}", read_only=True, memory_limit=memory_limit)


def _count(
    engine: Any, body: dict, *, count_star: bool = False, rows: int | None = None
) -> tuple[float, int]:
    """The dry run's count alone on `engine` (`count_star`: `SELECT COUNT(*)` over the window's rows instead):
    its milliseconds, and the count, which must be `rows` when given."""
    from queries.row_counts import count_statement, exact_rows
    from queries.validation import query_validate

    query = query_validate(body, max_window=BENCH_MAX_WINDOW)
    started = time.perf_counter()
    if count_star:
        statement = count_statement(query, customer_id=CUSTOMER, dialect=engine.dialect)
        counted = sum(value for batch in engine.execute(statement) for value in batch.column(0).to_pylist())
    else:
        counted = exact_rows(engine, query, customer_id=CUSTOMER)
    elapsed = (time.perf_counter() - started) * 1000
    if counted <= 0:
        raise RuntimeError("the window holds no rows")
    if rows is not None and counted != rows:
        raise RuntimeError(f"the count gave {counted} rows, COUNT(*) {rows}")
    return elapsed, int(counted)


def _fresh_count(warehouse: Path, body: dict, memory_limit: str, *, rows: int) -> float:
    """Open an engine, count as the dry run does, close it: the milliseconds of all three."""
    started = time.perf_counter()
    engine = _engine(warehouse, memory_limit)
    try:
        _count(engine, body, rows=rows)
    finally:
        engine.close()
    return (time.perf_counter() - started) * 1000
