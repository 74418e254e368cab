"""The rows the engine benches load (exactly N demo rows of one customer) and the query that reads them all."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pyarrow as pa

from queries.catalog import catalog
from queries.ingest import DEFAULT_START, demo_batches

CUSTOMER = "acme"
DAYS = 29  # the demo rows' span; the query's window is a day longer (a session may end after its last day)
ROWS_PER_SESSION = 3  # demo sessions hold ~3.4 rows: this many sessions per wanted row / 3 is enough


def demo_rows(rows: int) -> Iterator[pa.Table]:
    """Tables of demo rows of CUSTOMER, exactly `rows` in all (RuntimeError if the generator gives fewer)."""
    loaded = 0
    tables = demo_batches(
        customers=[CUSTOMER],
        sessions=rows // ROWS_PER_SESSION + 1,
        seed=15,
        days=DAYS,
        chunk_sessions=100_000,
    )
    for table in tables:
        if loaded >= rows:
            break
        chunk = table.slice(0, rows - loaded)
        loaded += chunk.num_rows
        yield chunk
    if loaded != rows:
        raise RuntimeError(f"the demo generator gave {loaded} rows, not {rows}")


def query_body() -> dict[str, Any]:
    """Every event, each with all of its fields, over the days the demo rows span."""
    end = DEFAULT_START + timedelta(days=DAYS + 1)
    return {
        "timestamp": {
            "$gte": f"{DEFAULT_START.isoformat()}T00:00:00Z",
            "$lt": f"{end.isoformat()}T00:00:00Z",
        },
        "data": {name: {"fields": list(event.fields)} for name, event in catalog().events.items()},
    }
