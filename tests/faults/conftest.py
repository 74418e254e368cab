"""Fixtures for the fault-injection tests: the whole service as real processes on its own Redis, with short
leases and a beat running the reaper, over a warehouse big enough that a fault lands mid-export.

Every test gets a fresh metadata database, broker, var dir and export dir, so the invariants are checked on
exactly what that test did. The summary at the end of the run prints one line per fault: what the service
did and how long after the fault the invariants held (the table in the README comes from it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faults.invariants import Verdict, invariants_wait, query_read
from tests.servers import PostgresServer, _stop, free_port, require_binary, wait_for_port
from tests.service import ROOT, Service, Shape, embedded_shape, process_children, service_running

# Short enough that a lost worker is noticed within seconds (production defaults: 30 s and 30 s). A lost
# broker message is recovered with the default QUERY_REQUEUE_AFTER_SECONDS (300 s): the reaper notices the
# broker lost its messages, it does not wait that long. FAULTS_AT_DEFAULT_SETTINGS=1 keeps the production
# defaults instead, to measure the recovery times an operator gets (the README's table has both).
_SHORT_LEASES = {"QUERY_LEASE_SECONDS": "3", "REAPER_INTERVAL_SECONDS": "1", "QUERY_MAX_ATTEMPTS": "3"}
FAULT_ENV = {
    **({} if os.environ.get("FAULTS_AT_DEFAULT_SETTINGS") == "1" else _SHORT_LEASES),
    # Many parts, each compressed as hard as the writer goes: the export lasts long enough to be hit mid-way.
    "EXPORT_PART_BYTES": "2000000",
    "EXPORT_GZIP_LEVEL": "3",
    "DELIVERY_BACKOFF_SECONDS": "1",
}
BIG_CUSTOMER = "acme"  # the customer whose events fill the big warehouse
BIG_SESSIONS = 150_000  # about 500,000 rows: a few seconds of sorting, then a few seconds of writing
WINDOW = {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-27T00:00:00Z"}
_COMMON = ["TimeStamp", "SessionId", "FlowId", "FlowName", "ActionName", "HostId", "Passthrough"]
WIDE_QUERY: dict[str, Any] = {
    "timestamp": WINDOW,
    "data": {
        "CallEvent": {"fields": [*_COMMON, "Ani", "Dnis", "Duration", "DisconnectReason", "SipResponseCode"]},
        "DtmfEvent": {"fields": [*_COMMON, "DtmfInput", "DtmfSource"]},
        "MsgEvent": {"fields": [*_COMMON, "From", "To", "MessageType", "Segments", "Carrier"]},
        "ApplicationExitEvent": {"fields": [*_COMMON, "StartTime", "EndTime", "Path", "ExitReason"]},
    },
}
SMALL_QUERY: dict[str, Any] = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-25T06:00:00Z"},
    "data": {"CallEvent": {"fields": ["TimeStamp", "SessionId", "Ani", "Duration"]}},
}

_REPORT: list[tuple[str, str, float]] = []


# -- the broker ------------------------------------------------------------------------------------------


@dataclass
class RedisBroker:
    """A Redis server of this test's own, which can be shut down and started again on the same port."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                require_binary("redis-server", "install-servers"),
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)

    def shutdown_nosave(self) -> None:
        """`SHUTDOWN NOSAVE`: the server exits at once and every message it held is gone. Sent over a bare
        socket: a client library would retry the connection the server drops in answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(b"SHUTDOWN NOSAVE\r\n")
            with contextlib.suppress(OSError):
                connection.recv(1024)
        assert self.process is not None
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[RedisBroker]:
    """Per test, so no message of an earlier test (query ids restart in each database) reaches a worker."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisBroker(port=free_port(), directory=directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- the warehouse ---------------------------------------------------------------------------------------


def _manage(*args: str, var_dir: Path) -> str:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "insights.settings", "INSIGHTS_VAR_DIR": str(var_dir)}
    env.pop("DATABASE_URL", None)  # the embedded metadata database in var_dir: loading needs none of it
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


@pytest.fixture(scope="session")
def big_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB warehouse with BIG_SESSIONS sessions of BIG_CUSTOMER, built once; each test gets a copy."""
    directory = tmp_path_factory.mktemp("big-warehouse")
    path = directory / "warehouse.duckdb"
    _manage(
        *("seed_demo", "--customers", "1", "--sessions", str(BIG_SESSIONS), "--seed", "11"),
        *("--warehouse", f"duckdb:///{path}"),
        var_dir=directory,
    )
    return path


@pytest.fixture(scope="session")
def postgres_warehouse(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PostgreSQL warehouse with the big customer's events (for faults of a PostgreSQL warehouse)."""
    url = postgres.create_database("faults_warehouse")
    _manage(
        *("seed_demo", "--customers", "1", "--sessions", str(BIG_SESSIONS), "--seed", "11"),
        *("--warehouse", url),
        var_dir=tmp_path_factory.mktemp("pg-warehouse"),
    )
    return url


# -- the service -----------------------------------------------------------------------------------------


@dataclass
class Harness:
    """One test's running service, with the helpers every fault test shares."""

    service: Service
    broker: RedisBroker
    big_customer = BIG_CUSTOMER
    wide_query = WIDE_QUERY
    small_query = SMALL_QUERY

    @property
    def database_url(self) -> str:
        return self.service.env["DATABASE_URL"]

    @property
    def export_dir(self) -> Path:
        return self.service.var_dir / "exports"

    def work_dir(self, guid: str, attempt: int) -> Path:
        return self.service.var_dir / "work" / f"{guid}-{attempt}"

    def scratch_removed_wait(self, guid: str, timeout: float = 30) -> None:
        """Until no scratch directory of the query is left (the runner removes it after the final
        transition, so it may outlive the status by a moment)."""
        deadline = time.monotonic() + timeout
        while leftovers := list((self.service.var_dir / "work").glob(f"{guid}-*")):
            assert time.monotonic() < deadline, f"scratch left behind after {timeout}s: {leftovers}"
            time.sleep(0.05)

    def worker_log_has(self, text: str) -> bool:
        """Whether any worker has logged `text` (workers log at WARNING and above here)."""
        logs = self.service.var_dir.glob("worker-*.log")
        return any(text in log.read_text(errors="replace") for log in logs)

    def customer(self, key: str = BIG_CUSTOMER, *, max_concurrent: int = 2) -> str:
        """Create the customer; returns its API key."""
        return self.service.customer_create(key, max_concurrent=max_concurrent)

    def submit(self, key: str, body: dict[str, Any] = WIDE_QUERY, *, base_url: str | None = None) -> str:
        response = self.service.request("POST", "/_rest/v4/dwh/Q", key=key, body=body, base_url=base_url)
        assert response.status == 201, response.body
        return str(response.json()["id"])

    def status(self, guid: str, key: str) -> dict[str, Any]:
        response = self.service.request("GET", f"/_rest/v4/dwh/Q/{guid}/status", key=key)
        assert response.status == 200, response.body
        return dict(response.json())

    def wait_mid_export(self, guid: str, key: str, *, attempt: int = 1, timeout: float = 60) -> None:
        """Until the attempt has written rows (the heartbeat reports progress) and is still running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(guid, key)
            assert status["status"] == "Pending", f"ended before the fault could be injected: {status}"
            row = query_read(self.database_url, guid)
            if row.attempts == attempt and row.progress_rows > 0:
                return
            time.sleep(0.05)
        raise AssertionError(f"{guid} wrote no rows within {timeout}s")

    def holder(self, guid: str, attempt: int, workers: list[subprocess.Popen[bytes]]) -> int:
        """The pid of the worker (main process) whose pool child has files open in the attempt's work dir."""
        work_dir = str(self.work_dir(guid, attempt))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for worker in workers:
                if any(_has_open_file_under(child, work_dir) for child in process_children(worker.pid)):
                    return worker.pid
            time.sleep(0.02)
        raise AssertionError(f"no worker has files open under {work_dir}")

    @staticmethod
    def signal_worker(worker_pid: int, signum: signal.Signals) -> list[int]:
        """Send `signum` to a worker's main process, then to its pool processes (listed before, so the main
        process cannot slip a replacement in between); returns the pids signalled."""
        pids = [worker_pid, *process_children(worker_pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        return pids

    @staticmethod
    def report(fault: str, what_happened: str, verdict: Verdict) -> None:
        """Record one line of the fault table (printed at the end of the run) and print it now."""
        _REPORT.append((fault, what_happened, verdict.seconds))
        print(f"\nFAULT | {fault} | {what_happened} | invariants after {verdict.seconds:.1f} s")

    def verdict(self, guids: list[str], *, since: float, bound: float = 120.0) -> Verdict:
        return invariants_wait(
            database_url=self.database_url,
            export_dir=self.export_dir,
            guids=guids,
            since=since,
            bound=bound,
        )


def _has_open_file_under(pid: int, directory: str) -> bool:
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for descriptor in descriptors:
        with contextlib.suppress(OSError):
            if os.readlink(descriptor).startswith(directory + "/"):
                return True
    return False


@pytest.fixture()
def harness(
    request: pytest.FixtureRequest, broker: RedisBroker, big_warehouse: Path, tmp_path: Path
) -> Iterator[Harness]:
    """The service (gunicorn + beat; the test starts its workers) on a copy of the big warehouse.

    Production shape (PostgreSQL metadata, Redis broker and cache) unless the test is parametrised with
    `harness` = "embedded" (indirect): SQLite metadata and the filesystem broker, as `make run` runs."""
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    shutil.copyfile(big_warehouse, var_dir / "warehouse.duckdb")
    if getattr(request, "param", "production") == "embedded":
        shape = embedded_shape(var_dir)
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres")
        shape = Shape(
            name="production",
            database_url=postgres.create_database(f"faults_{uuid.uuid4().hex[:12]}"),
            broker_url=broker.url,
            warehouse_url=f"duckdb:///{var_dir / 'warehouse.duckdb'}",
            cache_url=broker.url,
        )
    with service_running(shape=shape, var_dir=var_dir, extra_env=FAULT_ENV) as service:
        service.beat_start()
        try:
            yield Harness(service=service, broker=broker)
        finally:
            # A stopped worker ignores SIGTERM until it is continued: never leave one behind.
            for worker in service.workers:
                Harness.signal_worker(worker.pid, signal.SIGCONT)


# -- the report ------------------------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _REPORT:
        return
    terminalreporter.section("faults: what the service did, and time to invariants I1-I4")
    terminalreporter.write_line("| fault | what the service did | time to invariants |")
    terminalreporter.write_line("|---|---|---|")
    for fault, what_happened, seconds in _REPORT:
        terminalreporter.write_line(f"| {fault} | {what_happened} | {seconds:.1f} s |")
