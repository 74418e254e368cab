"""The whole service as real processes: gunicorn + Celery workers on a real broker, for black-box HTTP tests."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import _stop, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Service:
    """A running web server plus the environment it shares with workers and management commands."""

    env: dict[str, str]
    base_url: str
    var_dir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    beat: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def customer_create(self, key: str, *, max_concurrent: int | None = None) -> str:
        """A new customer with an API key; returns the raw key."""
        args = ["create_customer", key.title(), "--key", key, "--api-key"]
        if max_concurrent is not None:
            args += ["--max-concurrent", str(max_concurrent)]
        return self.manage(*args).strip().splitlines()[-1]

    def worker_start(
        self,
        concurrency: int = 2,
        *,
        extra_env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> subprocess.Popen[bytes]:
        """A Celery worker; `extra_env` overrides the service's environment for this worker only, and
        `preexec_fn` runs in the child before exec (e.g. to lower a resource limit)."""
        log = open(self.var_dir / f"worker-{len(self.workers)}.log", "ab")
        process = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "insights",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"w{len(self.workers)}-{os.getpid()}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
        self.workers.append(process)
        return process

    def workers_stop(self) -> None:
        for process in self.workers:
            _stop(process)
        self.workers.clear()

    def beat_start(self) -> subprocess.Popen[bytes]:
        """Celery beat, so the periodic tasks (the lease reaper above all) run as in production."""
        if self.beat is not None and self.beat.poll() is None:
            return self.beat
        log = open(self.var_dir / "beat.log", "ab")
        self.beat = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "insights",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(self.var_dir / "celerybeat-schedule"),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self.beat

    def beat_stop(self) -> None:
        if self.beat is not None:
            _stop(self.beat)
            self.beat = None

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> HttpResponse:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=30) as response:
                return HttpResponse(response.status, dict(response.headers.items()), response.read())
        except urllib.error.HTTPError as error:
            return HttpResponse(error.code, dict(error.headers.items()), error.read())

    def wait_terminal(self, guid: str, key: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.request("GET", f"/_rest/v4/dwh/Q/{guid}/status", key=key).json()
            if status["status"] != "Pending":
                return dict(status)
            time.sleep(0.1)
        raise AssertionError(f"query {guid} still Pending after {timeout}s")

    def download_rows(self, guid: str, key: str, part: int = 0) -> list[str]:
        response = self.request("GET", f"/_rest/v4/dwh/Q/{guid}/download/{part}", key=key)
        assert response.status == 200, response.body[:500]
        return gzip.decompress(response.body).decode("utf-8").splitlines()


def process_children(pid: int) -> list[int]:
    """The direct children of a live process (e.g. a Celery worker's pool processes), from /proc."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(child) for child in (task / "children").read_text().split()]
    return sorted(set(children))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@contextlib.contextmanager
def service_running(
    *, database_url: str, broker_url: str, var_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Service]:
    """Migrate, seed a DuckDB warehouse and start gunicorn; workers are started by the tests that want them."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "insights.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "INSIGHTS_VAR_DIR": str(var_dir),
        "WAREHOUSE_URL": f"duckdb:///{var_dir / 'warehouse.duckdb'}",
        "LOG_LEVEL": "WARNING",
        # Each service its own cache (in its var dir): failed-authentication counts must not cross test modules.
        "CACHE_URL": "",
        **(extra_env or {}),
    }
    port = free_port()
    service = Service(env=env, base_url=f"http://127.0.0.1:{port}", var_dir=var_dir)
    service.manage("migrate", "--noinput")
    service.manage("seed_demo", "--customers", "3", "--sessions", "400", "--seed", "7")
    web_log = open(var_dir / "web.log", "wb")
    web = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "insights.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "8",
        ],
        cwd=ROOT,
        env=env,
        stdout=web_log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process=web)
        yield service
    finally:
        service.workers_stop()
        service.beat_stop()
        _stop(web)
        web_log.close()
