"""A 1-day window for one customer: time in a warehouse of that customer alone vs one of 50 customers.

The layout (rows sorted by customer and time; zone maps) should make the cost follow the customer's rows in the
window, not the table's size: the goal is a ratio near 1 for 50x the rows.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.report import Report
from exports.engines import engine_from_url
from queries.catalog import catalog
from queries.compiler import query_compile
from queries.ingest import demo_batches, demo_customer_keys
from queries.validation import query_validate

CUSTOMERS = 50
DAYS = 30
QUERY = {
    "timestamp": {"$gte": "2019-11-26T00:00:00Z", "$lt": "2019-11-27T00:00:00Z"},
    "data": {
        "CallEvent": {"fields": ["TimeStamp", "SessionId", "Ani", "Duration"]},
        "ApplicationExitEvent": {"fields": ["TimeStamp", "SessionId", "ExitReason"]},
    },
}


def _warehouse(path: Path, *, customers: list[str], sessions: int) -> int:
    engine = engine_from_url(f"duckdb:///{path}", read_only=False)
    engine.ensure_schema(catalog().warehouse_columns())
    rows = 0
    for table in demo_batches(
        customers=customers, sessions=sessions, seed=3, days=DAYS, chunk_sessions=200_000
    ):
        rows += engine.load(table)
    engine.close()
    return rows


def _time_query(path: Path, customer: str, repeats: int = 7) -> tuple[float, int]:
    engine = engine_from_url(f"duckdb:///{path}", read_only=True)
    statement = query_compile(query_validate(QUERY), customer_id=customer, dialect=engine.dialect)
    samples, rows = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        rows = sum(batch.num_rows for batch in engine.execute(statement))
        samples.append(time.perf_counter() - started)
    engine.close()
    return statistics.median(samples), rows


def run(report: Report) -> None:
    total_rows = int(os.environ.get("BENCH_WAREHOUSE_ROWS", "10000000"))
    sessions = max(total_rows // 5, CUSTOMERS)  # the demo averages about five events per session
    keys = list(demo_customer_keys(CUSTOMERS))
    with tempfile.TemporaryDirectory(prefix="insights-bench-") as tmp:
        alone, shared = Path(tmp, "one.duckdb"), Path(tmp, "fifty.duckdb")
        rows_alone = _warehouse(alone, customers=keys[:1], sessions=sessions // CUSTOMERS)
        rows_shared = _warehouse(shared, customers=keys, sessions=sessions)
        seconds_alone, returned_alone = _time_query(alone, keys[0])
        seconds_shared, returned_shared = _time_query(shared, keys[0])
    report.add("warehouse_rows[1 customer]", rows_alone, "rows")
    report.add("warehouse_rows[50 customers]", rows_shared, "rows")
    report.add("one_day_query_rows[1 customer]", returned_alone, "rows")
    report.add("one_day_query_rows[50 customers]", returned_shared, "rows")
    report.add("one_day_query[1 customer]", seconds_alone * 1000, "ms")
    report.add(
        "one_day_query[50 customers]",
        seconds_shared * 1000,
        "ms",
        ratio=seconds_shared / seconds_alone,
        anchor="the same query on a warehouse of that customer alone (50x fewer rows)",
    )
