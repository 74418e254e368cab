"""POST to Completed for a small query with the hybrid wait, against polling in the same run (issue 16):
`python -m bench wait`. Goal: the wait's median at most 40 ms.

The set-up is bench.latency's: the whole service as real processes, one Celery worker (prefork, concurrency 2)
on a throwaway Redis, the metadata database named by BENCH_LATENCY_DB (`postgres` by default, a throwaway
PostgreSQL server, or `sqlite`), a DuckDB warehouse of demo data, and the seed's Request 1. The two ways take
turns, BENCH_WAIT_RUNS times each (default 50) after BENCH_LATENCY_WARMUP runs (default 5) of each:

- `wait`: one `POST /dwh/Q?wait=5`, whose answer carries the status once the query is Completed;
- `polling`: bench.latency's run: POST, then GET .../status every 10 ms until it is no longer Pending.

The ratio is the wait's median over polling's (same machine, same load, in turn). A warm-up run of each
comes first, the first ones also waiting for the worker to boot.
"""

from __future__ import annotations

import os
import statistics
import time

from bench.latency import REQUEST_1, WARMUP, Run, _instant, latency_service, percentile, run_once
from bench.report import Report

DEFAULT_RUNS = 50
WAIT_SECONDS = 5
GOAL_MS = 40.0


def run(report: Report) -> None:
    runs = int(os.environ.get("BENCH_WAIT_RUNS", str(DEFAULT_RUNS)))
    warmup = int(os.environ.get("BENCH_LATENCY_WARMUP", str(WARMUP)))
    kind = os.environ.get("BENCH_LATENCY_DB", "postgres")
    with latency_service("insights-bench-wait-") as (service, key):
        for _ in range(warmup):
            run_once(service, key)
            wait_once(service, key)
        waits, polls = [], []
        for _ in range(runs):
            waits.append(wait_once(service, key))
            polls.append(run_once(service, key))
    waited, polled = [r.total_ms for r in waits], [r.total_ms for r in polls]
    wait_median, poll_median = statistics.median(waited), statistics.median(polled)
    report.add(
        "wait_post_to_completed_median",
        wait_median,
        "ms",
        ratio=wait_median / GOAL_MS,
        anchor=f"{GOAL_MS:.0f} ms goal (?wait={WAIT_SECONDS}, metadata on {kind}, {runs} runs)",
    )
    report.add("wait_post_to_completed_p95", percentile(waited, 0.95), "ms")
    report.add(
        "poll_post_to_completed_median",
        poll_median,
        "ms",
        ratio=wait_median / poll_median,
        anchor="the wait's median over polling every 10 ms (same runs, in turn)",
    )
    report.add("poll_post_to_completed_p95", percentile(polled, 0.95), "ms")
    # Where the time goes, by the server's own timestamps: `run` is the worker's (claim to Completed), `observed`
    # from Completed to the client holding the answer (what the wait shortens).
    for phase in ("queued", "run", "observed"):
        for way, measured in (("wait", waits), ("poll", polls)):
            report.add(
                f"{way}_phase_median[{phase}]", statistics.median(r.phases_ms[phase] for r in measured), "ms"
            )


def wait_once(service: object, key: str) -> Run:
    """POST Request 1 with ?wait: the milliseconds until the answer (which must say Completed), and its phases
    as bench.latency splits them (`post` is not separable from the wait: 0)."""
    from tests.service import Service

    assert isinstance(service, Service)
    started_wall, started = time.time(), time.perf_counter()
    response = service.request("POST", f"/_rest/v4/dwh/Q?wait={WAIT_SECONDS}", key=key, body=REQUEST_1)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 201:
        raise RuntimeError(f"POST answered {response.status}: {response.body[:300]!r}")
    status = response.json().get("status", {})
    if status.get("status") != "Completed":
        raise RuntimeError(f"the query was not Completed within {WAIT_SECONDS} s: {status}")
    submitted, begun, finished = (_instant(status[k]) for k in ("submitted_at", "started_at", "finished_at"))
    phases = {
        "post": 0.0,
        "queued": (begun - submitted) * 1000,
        "run": (finished - begun) * 1000,
        "observed": (started_wall + elapsed / 1000 - finished) * 1000,
    }
    return Run(total_ms=elapsed, phases_ms=phases)
