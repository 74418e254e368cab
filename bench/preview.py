"""Look before you export: a preview and a window summary against the full export of the same window:
`python -m bench preview`.

The window is bench.export's: one customer's CallEvents with all 29 fields, BENCH_ROWS rows (default
5,000,000). The anchor is the worker path's export of that window (bench.memory_probe "worker", a fresh
process, hidden summary columns counted as a worker counts them), run once. Against it:
- `preview_seconds[limit_100]`: what POST /dwh/Q/preview does after validation: open the warehouse, run the
  export's statement with LIMIT 100 (`preview_statement`), read the rows, turn them into JSON values, close.
  Goal: at most 0.02x the export, and under 1 s.
- `summary_seconds[window]`: what POST /dwh/summary does: the three aggregate statements over the same rows.
Both run in this process BENCH_PREVIEW_REPEATS times (default 5), best kept; the warehouse is opened read-only
with the worker's memory limit, as the web process opens it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.export import CUSTOMER, _warehouse, export_query_body, probe, window_end
from bench.memory_probe import BENCH_MAX_WINDOW
from bench.report import Report

DEFAULT_ROWS = 5_000_000
DEFAULT_REPEATS = 5
LIMIT = 100
GOAL_PREVIEW_VS_EXPORT = 0.02


def run(report: Report) -> None:
    from django.conf import settings

    rows = int(os.environ.get("BENCH_ROWS", str(DEFAULT_ROWS)))
    repeats = int(os.environ.get("BENCH_PREVIEW_REPEATS", str(DEFAULT_REPEATS)))
    memory_limit = str(settings.WAREHOUSE_MEMORY_LIMIT)
    with tempfile.TemporaryDirectory(prefix="insights-bench-preview-") as tmp:
        scratch = Path(tmp)
        warehouse = _warehouse(scratch, event_rows=rows, report=report)
        body = export_query_body(window_end(warehouse, rows))
        exported = probe("worker", warehouse=warehouse, body=body, scratch=scratch, memory_limit=memory_limit)
        preview = _best(repeats, lambda: _preview(warehouse, body, memory_limit))
        summary = _best(repeats, lambda: _summary(warehouse, body, memory_limit))
    report.add("preview_window_rows", exported.rows, "rows")
    report.add("preview_seconds[full_export]", exported.seconds, "s")
    report.add(
        f"preview_seconds[limit_{LIMIT}]",
        preview,
        "s",
        ratio=preview / exported.seconds,
        anchor=f"the full export of the same window (goal <= {GOAL_PREVIEW_VS_EXPORT}, and < 1 s)",
    )
    report.add(
        "summary_seconds[window]",
        summary,
        "s",
        ratio=summary / exported.seconds,
        anchor="the full export of the same window (its summary is counted in that pass)",
    )


def _best(repeats: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(repeats))


def _engine(warehouse: Path, memory_limit: str) -> Any:
    from exports.engines import engine_from_url

    return engine_from_url(f"duckdb:///{warehouse}", read_only=True, memory_limit=memory_limit)


def _preview(warehouse: Path, body: dict, memory_limit: str) -> float:
    from queries.preview import _json_value, preview_statement, statement_rows
    from queries.validation import query_validate

    query = query_validate(body, max_window=BENCH_MAX_WINDOW)
    started = time.perf_counter()
    engine = _engine(warehouse, memory_limit)
    try:
        statement = preview_statement(query, customer_id=CUSTOMER, dialect=engine.dialect, limit=LIMIT)
        rows = statement_rows(engine, statement, limit=LIMIT)
        data = [[_json_value(value) for value in row] for row in rows]
    finally:
        engine.close()
    seconds = time.perf_counter() - started
    assert len(data) == LIMIT, len(data)
    return seconds


def _summary(warehouse: Path, body: dict, memory_limit: str) -> float:
    from queries.preview import statement_rows
    from queries.summary_sql import summary_from_results, summary_statements
    from queries.validation import query_validate

    query = query_validate(body, max_window=BENCH_MAX_WINDOW)
    started = time.perf_counter()
    engine = _engine(warehouse, memory_limit)
    try:
        statements = summary_statements(query, customer_id=CUSTOMER, dialect=engine.dialect)
        summary = summary_from_results([statement_rows(engine, s, limit=None) for s in statements])
    finally:
        engine.close()
    seconds = time.perf_counter() - started
    assert summary["rows"] > 0
    return seconds
