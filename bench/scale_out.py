"""One query, many workers (docs/DESIGN.md §8): a big export's throughput with 1, 2 and 4 worker processes.

The whole service as real processes (`tests.service.service_running`): gunicorn, PostgreSQL metadata, a Redis
broker, a DuckDB warehouse of BENCH_SCALE_ROWS (default 10,000,000) CallEvent rows built as `bench.export`
builds it, and W Celery worker processes (prefork, concurrency 1 each: one process, one export at a time).
The query is `bench.export`'s (every CallEvent field, the first BENCH_SCALE_ROWS rows in time), cut into
BENCH_SCALE_SLICES (default 8) slices whatever W is, so every run does the same work and writes the same files;
W = 1 is the single worker running the slices one after the other. Each W runs BENCH_SCALE_REPEATS times
(default 2), taking turns, best kept. Figures: rows per second from POST to Completed, the ratio against
W = 1 (goal: 1.7x at W = 2 on the 2-core machine), and the largest peak RSS of any worker process (flat:
a slice's memory does not grow with the query).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.export import CUSTOMER, export_query_body, warehouse_build, window_end
from bench.report import Report

WORKERS = (1, 2, 4)
TIMEOUT_SECONDS = 1800


def _peak_rss_mb(pids: list[int]) -> float:
    """The largest VmHWM (peak resident set) among the processes, in MB."""
    peaks = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
    return max(peaks, default=0.0)


@contextlib.contextmanager
def _workers(service: object, count: int, env: dict[str, str]) -> Iterator[list[int]]:
    """`count` worker processes of concurrency 1; yields a callable list of their pool processes' pids."""
    from tests.service import Service, process_children

    assert isinstance(service, Service)
    parents = [service.worker_start(1, extra_env=env) for _ in range(count)]
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(pids) < count:
            pids = [child for parent in parents for child in process_children(parent.pid)]
            time.sleep(0.2)
        yield pids
    finally:
        service.workers_stop()


def _export_seconds(service: object, key: str, body: dict[str, object]) -> float:
    from tests.service import Service

    assert isinstance(service, Service)
    started = time.perf_counter()
    created = service.request("POST", "/_rest/v4/dwh/Q", key=key, body=body)
    if created.status != 201:
        raise RuntimeError(f"POST answered {created.status}: {created.body[:300]!r}")
    status = service.wait_terminal(created.json()["id"], key, timeout=TIMEOUT_SECONDS)
    if status["status"] != "Completed":
        raise RuntimeError(f"the export ended {status['status']}: {status.get('messages')}")
    return time.perf_counter() - started


def run(report: Report) -> None:
    from tests.servers import postgres_server, redis_server
    from tests.service import Shape, service_running

    rows = int(os.environ.get("BENCH_SCALE_ROWS", "10000000"))
    slices = int(os.environ.get("BENCH_SCALE_SLICES", "8"))
    repeats = int(os.environ.get("BENCH_SCALE_REPEATS", "2"))
    with (
        tempfile.TemporaryDirectory(prefix="insights-bench-scale-") as tmp,
        redis_server() as redis,
        postgres_server() as postgres,
    ):
        var_dir = Path(tmp, "var")
        var_dir.mkdir()
        warehouse = var_dir / "warehouse.duckdb"
        warehouse_build(warehouse, event_rows=rows)
        body = export_query_body(window_end(warehouse, rows))
        shape = Shape(
            name="scale-out",
            database_url=postgres.create_database("insights_scale"),
            broker_url=redis.url,
            warehouse_url=f"duckdb:///{warehouse}",
            cache_url=redis.url,
        )
        env = {"EXPORT_SPLIT_ROWS": str(math.ceil(rows / slices)), "EXPORT_MAX_SLICES": str(slices)}
        with service_running(shape=shape, var_dir=var_dir, seed=False, extra_env=env) as service:
            key = service.customer_create(CUSTOMER, max_concurrent=2)
            best: dict[int, float] = {}
            peaks: dict[int, float] = {}
            for _ in range(repeats):
                for count in WORKERS:
                    with _workers(service, count, env) as pids:
                        seconds = _export_seconds(service, key, body)
                        peaks[count] = max(peaks.get(count, 0.0), _peak_rss_mb(pids))
                    best[count] = min(best.get(count, math.inf), seconds)
                    print(f"  {count} worker(s): {seconds:.1f} s", flush=True)
    for count in WORKERS:
        report.add(
            f"scale_out_{count}_workers",
            rows / best[count],
            "rows/s",
            ratio=best[1] / best[count],
            anchor=f"the same export ({rows} rows, {slices} slices) by 1 worker process",
        )
        report.add(f"scale_out_{count}_workers_seconds", best[count], "s")
        report.add(f"scale_out_{count}_workers_peak_rss", peaks[count], "MB")
