"""POST to Completed for a small query (docs/DESIGN.md §7: median under 300 ms with a warm worker and Redis).

The whole service as real processes (`tests.service.service_running`): gunicorn, one Celery worker
(prefork, concurrency 2) on a throwaway Redis, a DuckDB warehouse seeded with the demo data, and the metadata
database named by BENCH_LATENCY_DB: `postgres` (default, a throwaway PostgreSQL server, as in production)
or `sqlite`. The query is the seed document's Request 1 (one column of one customer's ApplicationExitEvents
over one day). BENCH_LATENCY_WARMUP (default 5) runs first (each prefork child opens its connections and
imports on its first task), then BENCH_LATENCY_RUNS (default 50) timed runs, one after the other: POST,
then GET .../status every 10 ms until the query is no longer Pending.

Besides the median and p95, each run is split by the server's own timestamps (same machine, same clock):
`post` (the POST round trip), `queued` (submitted_at -> started_at: commit, on_commit enqueue, Redis, the
worker's claim), `run` (started_at -> finished_at: validate, compile, DuckDB, writer, publish) and
`observed` (finished_at -> the client seeing Completed: the poll interval and one status request).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import Report

REQUEST_1 = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"ApplicationExitEvent": {"fields": ["FlowId"]}},
}
CUSTOMER = "acme"  # a demo customer, so Request 1 has rows
POLL_SECONDS = 0.01
WARMUP = 5
TIMEOUT_SECONDS = 60  # the first warm-up run also waits for the worker to boot
GOAL_MS = 300.0
PHASES = ("post", "queued", "run", "observed")


@dataclass(frozen=True)
class Run:
    total_ms: float
    phases_ms: dict[str, float]


def _instant(text: str) -> float:
    """Seconds since the epoch of the API's `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@contextlib.contextmanager
def _metadata_database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'insights.sqlite3'}"
        return
    if kind != "postgres":
        raise ValueError("BENCH_LATENCY_DB is postgres or sqlite")
    from tests.servers import postgres_server

    with postgres_server() as server:
        yield server.create_database("insights_bench")


def run_once(service: object, key: str) -> Run:
    """POST Request 1, poll its status every POLL_SECONDS until it leaves Pending; it must be Completed."""
    from tests.service import Service

    assert isinstance(service, Service)
    started_wall, started = time.time(), time.perf_counter()
    created = service.request("POST", "/_rest/v4/dwh/Q", key=key, body=REQUEST_1)
    posted = time.perf_counter()
    if created.status != 201:
        raise RuntimeError(f"POST answered {created.status}: {created.body[:300]!r}")
    guid = created.json()["id"]
    deadline = started + TIMEOUT_SECONDS
    while True:
        status = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/status", key=key).json()
        if status["status"] != "Pending":
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"query {guid} still Pending after {TIMEOUT_SECONDS} s (is the worker up?)")
        time.sleep(POLL_SECONDS)
    seen = time.perf_counter()
    if status["status"] != "Completed":
        raise RuntimeError(f"query {guid} ended {status['status']}: {status.get('messages')}")
    seen_wall = started_wall + (seen - started)
    submitted, begun, finished = (_instant(status[k]) for k in ("submitted_at", "started_at", "finished_at"))
    phases = {
        "post": (posted - started) * 1000,
        "queued": (begun - submitted) * 1000,
        "run": (finished - begun) * 1000,
        "observed": (seen_wall - finished) * 1000,
    }
    return Run(total_ms=(seen - started) * 1000, phases_ms=phases)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (fraction in (0, 1]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil without floats drifting
    return ordered[int(rank) - 1]


@contextlib.contextmanager
def latency_service(prefix: str) -> Iterator[tuple[Any, str]]:
    """The whole service as real processes (one Celery worker, prefork, concurrency 2, on a throwaway Redis;
    the metadata database BENCH_LATENCY_DB names; a DuckDB warehouse of demo data) and the key of a customer."""
    from tests.servers import redis_server
    from tests.service import Shape, service_running

    kind = os.environ.get("BENCH_LATENCY_DB", "postgres")
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as tmp,
        redis_server() as redis,
        _metadata_database(kind, Path(tmp)) as database_url,
    ):
        var_dir = Path(tmp, "var")
        var_dir.mkdir()
        shape = Shape(
            name=kind,
            database_url=database_url,
            broker_url=redis.url,
            warehouse_url=f"duckdb:///{var_dir / 'warehouse.duckdb'}",
            cache_url=redis.url,
        )
        with service_running(shape=shape, var_dir=var_dir) as service:
            key = service.customer_create(CUSTOMER, max_concurrent=2)
            service.worker_start()
            yield service, key


def run(report: Report) -> None:
    runs = int(os.environ.get("BENCH_LATENCY_RUNS", "50"))
    warmup = int(os.environ.get("BENCH_LATENCY_WARMUP", str(WARMUP)))
    kind = os.environ.get("BENCH_LATENCY_DB", "postgres")
    with latency_service("insights-bench-latency-") as (service, key):
        for _ in range(warmup):
            run_once(service, key)
        measured = [run_once(service, key) for _ in range(runs)]
    totals = [r.total_ms for r in measured]
    median = statistics.median(totals)
    report.add(
        "post_to_completed_median",
        median,
        "ms",
        ratio=median / GOAL_MS,
        anchor=f"{GOAL_MS:.0f} ms goal (metadata on {kind}, {runs} runs)",
    )
    report.add("post_to_completed_p95", percentile(totals, 0.95), "ms")
    for phase in PHASES:
        report.add(
            f"post_to_completed_phase_median[{phase}]",
            statistics.median(r.phases_ms[phase] for r in measured),
            "ms",
        )
