"""Status polling throughput (docs/DESIGN.md §7): GET .../status against a bare DRF endpoint, same server, same load.

The server: gunicorn with 2 sync workers and `bench.settings` (the service's settings and URL map, plus the
bare endpoint of `bench.urls`) on a throwaway SQLite metadata database holding one customer, its API key and
QUERIES Completed query requests. The load: `wrk -t2 -c16 -d<BENCH_POLL_SECONDS>s --latency` (default 10 s),
BENCH_POLL_ROUNDS (default 3) times per endpoint, the endpoints taking turns after a short warm-up of each;
the figures are the medians over the rounds. The goal: status polling at least 0.85x the bare endpoint's
requests/s. `wrk` is a Debian package (`apt-get install wrk`).

On a shared 2-core machine the wrk ratio moves a lot from run to run (wrk, gunicorn and everything else
share the cores), so the section also reports the CPU time per request of each endpoint through Django's
WSGI handler in one process (`wsgi_cpu_compare`, BENCH_POLL_CPU_REQUESTS per turn): the same ratio without
the network, which is steady.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.report import Report

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONNECTIONS = 16
THREADS = 2
WARMUP_SECONDS = 2
QUERIES = 1000  # rows in the QueryRequest table, so the lookups are not into a one-row table
GOAL = 0.85
CUSTOMER = "acme"


class BenchToolMissing(RuntimeError):
    """A load generator the benchmark needs is not installed."""


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors plus non-2xx/3xx responses


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchToolMissing("wrk is not installed: `apt-get install -y wrk` (`make bench-tools`)")
    return found


def fixture_create() -> None:
    """Run inside the bench environment (`manage.py shell -c`): QUERIES Completed requests of CUSTOMER;
    prints `<pk> <guid>` of one of them."""
    from django.utils import timezone

    from insights.models import Customer
    from queries.models import QueryRequest, QueryStatus

    customer = Customer.objects.get(key=CUSTOMER)
    now = timezone.now()
    body = {
        "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
        "data": {"ApplicationExitEvent": {"fields": ["FlowId"]}},
    }
    rows = [
        QueryRequest(
            customer=customer,
            body=json.dumps(body),
            fingerprint="0" * 64,
            status=QueryStatus.COMPLETED,
            started_at=now,
            finished_at=now,
            progress_rows=1000,
            progress_bytes=25_000,
            row_count=1000,
            files=[{"path": f"reports/{CUSTOMER}/x.csv.gz", "size": 5000, "rows": 1000, "sha256": "0" * 64}],
        )
        for _ in range(QUERIES)
    ]
    QueryRequest.objects.bulk_create(rows)
    chosen = QueryRequest.objects.order_by("pk")[QUERIES // 2]
    print(chosen.pk, chosen.guid)


def wsgi_cpu_compare(*, pk: int, guid: str, api_key: str, requests: int = 300, rounds: int = 7) -> None:
    """Run inside the bench environment (`manage.py shell -c`): CPU microseconds per request of each endpoint
    through Django's WSGI handler in this one process, no network and no load generator; prints
    `{"bare_pk_lookup": us, "status_polling": us}`, the medians over `rounds` turns of `requests` each.

    The wrk figures carry the kernel, the load generator and whatever else the machine runs; this one
    counts only the Python the two requests execute, so it moves far less from run to run.
    """
    from wsgiref.util import setup_testing_defaults

    from django.core.handlers.wsgi import WSGIHandler

    application = WSGIHandler()
    targets = {
        "bare_pk_lookup": (f"/_bench/bare/{pk}", {}),
        "status_polling": (f"/_rest/v4/dwh/Q/{guid}/status", {"HTTP_AUTHORIZATION": f"Bearer {api_key}"}),
    }

    def call(path: str, extra: dict[str, str]) -> None:
        environ: dict[str, object] = {"PATH_INFO": path, "REQUEST_METHOD": "GET", **extra}
        setup_testing_defaults(environ)
        statuses: list[str] = []
        b"".join(application(environ, lambda status, headers: statuses.append(status)))  # type: ignore[arg-type]
        if not statuses[0].startswith("200"):
            raise RuntimeError(f"{path} answered {statuses[0]}")

    samples: dict[str, list[float]] = {name: [] for name in targets}
    for target in targets.values():
        call(*target)  # the first request of a process opens and primes everything
    for _ in range(rounds):
        for name, target in targets.items():
            started = time.process_time()
            for _ in range(requests):
                call(*target)
            samples[name].append((time.process_time() - started) / requests * 1e6)
    print(json.dumps({name: statistics.median(values) for name, values in samples.items()}))


def wrk_parse(output: str) -> LoadResult:
    """Requests/s, p50, p99 and the error count from `wrk --latency` output."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    if rate is None or total is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return LoadResult(
        requests_per_second=float(rate.group(1)),
        p50_ms=_latency_ms(output, "50%"),
        p99_ms=_latency_ms(output, "99%"),
        requests=int(total.group(1)),
        errors=errors,
    )


def _latency_ms(output: str, percentile: str) -> float:
    found = re.search(rf"^\s*{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    if found is None:
        raise ValueError(f"no {percentile} latency in wrk output:\n{output}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
    return float(found.group(1)) * scale


def wrk_run(url: str, *, seconds: int, headers: dict[str, str] | None = None) -> LoadResult:
    command = [wrk_binary(), f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run([*command, url], capture_output=True, text=True, check=True)
    return wrk_parse(done.stdout)


@dataclass(frozen=True)
class PollingServer:
    base_url: str
    api_key: str
    pk: int
    guid: str
    env: dict[str, str]  # what manage.py needs to reach the same database


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


@contextlib.contextmanager
def polling_server(var_dir: Path, *, workers: int = 2) -> Iterator[PollingServer]:
    """gunicorn (sync workers) on bench.settings over a fresh SQLite database in `var_dir`."""
    from tests.servers import _stop, free_port, wait_for_port

    # PROMETHEUS_MULTIPROC_DIR: this process's settings set it (for its own var dir); the server derives its own.
    inherited = ("DATABASE_URL", "DJANGO_DEBUG", "PROMETHEUS_MULTIPROC_DIR")
    env = {key: value for key, value in os.environ.items() if key not in inherited}
    env.update(DJANGO_SETTINGS_MODULE="bench.settings", INSIGHTS_VAR_DIR=str(var_dir), LOG_LEVEL="WARNING")
    _manage(env, "migrate", "--noinput")
    api_key = _manage(env, "create_customer", "Acme", "--key", CUSTOMER, "--api-key").strip().splitlines()[-1]
    # The last line: `shell` may print a note on its automatic imports first.
    setup = _manage(env, "shell", "-c", "from bench.polling import fixture_create; fixture_create()")
    pk, guid = setup.strip().splitlines()[-1].split()
    port = free_port()
    command = [
        str(BIN / "gunicorn"),
        "insights.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
    ]
    with open(var_dir / "gunicorn.log", "wb") as log:
        web = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, process=web)
            yield PollingServer(f"http://127.0.0.1:{port}", api_key, int(pk), guid, env)
        finally:
            _stop(web)


def _get(url: str, headers: dict[str, str]) -> bytes:
    """GET one of our own http://127.0.0.1 URLs (never a user-supplied scheme)."""
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return bytes(response.read())


def run(report: Report) -> None:
    from bench.urls import BARE_PATH  # a URL module: imported once Django is set up

    seconds = int(os.environ.get("BENCH_POLL_SECONDS", "10"))
    rounds = int(os.environ.get("BENCH_POLL_ROUNDS", "3"))
    cpu_requests = int(os.environ.get("BENCH_POLL_CPU_REQUESTS", "300"))
    wrk_binary()  # fail before starting anything
    with (
        tempfile.TemporaryDirectory(prefix="insights-bench-polling-") as tmp,
        polling_server(Path(tmp)) as server,
    ):
        auth = {"Authorization": f"Bearer {server.api_key}"}
        targets = {
            "bare_pk_lookup": (f"{server.base_url}/{BARE_PATH}{server.pk}", {}),
            "status_polling": (f"{server.base_url}/_rest/v4/dwh/Q/{server.guid}/status", auth),
        }
        # Both must answer the right thing before their speed means anything.
        if b'"Completed"' not in _get(*targets["status_polling"]) or server.guid.encode() not in _get(
            *targets["bare_pk_lookup"]
        ):
            raise RuntimeError("the status or the bare endpoint did not answer as expected")
        results = _interleaved(targets, seconds=seconds, rounds=rounds)
        cpu = json.loads(
            _manage(
                server.env,
                "shell",
                "-c",
                "from bench.polling import wsgi_cpu_compare; "
                f"wsgi_cpu_compare(pk={server.pk}, guid={server.guid!r}, api_key={server.api_key!r}, "
                f"requests={cpu_requests})",
            )
            .strip()
            .splitlines()[-1]
        )
    bare, polled = results["bare_pk_lookup"], results["status_polling"]
    report.add("bare_pk_lookup", bare.requests_per_second, "req/s")
    report.add(
        "status_polling",
        polled.requests_per_second,
        "req/s",
        ratio=polled.requests_per_second / bare.requests_per_second,
        anchor=f"a bare DRF endpoint doing one primary-key lookup, same server and load (goal >= {GOAL})",
    )
    for name, result in results.items():
        report.add(f"{name}_p99", result.p99_ms, "ms")
        report.add(f"{name}_errors", result.errors, "responses")
    report.add("bare_pk_lookup_cpu", cpu["bare_pk_lookup"], "us/request")
    report.add(
        "status_polling_cpu",
        cpu["status_polling"],
        "us/request",
        ratio=cpu["bare_pk_lookup"] / cpu["status_polling"],
        anchor="the bare endpoint's CPU per request, in-process WSGI (as a throughput ratio; goal >= 0.85)",
    )


def _interleaved(
    targets: dict[str, tuple[str, dict[str, str]]], *, seconds: int, rounds: int
) -> dict[str, LoadResult]:
    """Each target warmed up, then `rounds` runs of `seconds` each, taking turns so that a change in the
    machine's background load falls on both; per target, the median rate and p99 and the summed counts."""
    for url, headers in targets.values():
        wrk_run(url, seconds=min(WARMUP_SECONDS, seconds), headers=headers)
    runs: dict[str, list[LoadResult]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (url, headers) in targets.items():
            runs[name].append(wrk_run(url, seconds=seconds, headers=headers))
    return {
        name: LoadResult(
            requests_per_second=statistics.median(r.requests_per_second for r in results),
            p50_ms=statistics.median(r.p50_ms for r in results),
            p99_ms=statistics.median(r.p99_ms for r in results),
            requests=sum(r.requests for r in results),
            errors=sum(r.errors for r in results),
        )
        for name, results in runs.items()
    }
