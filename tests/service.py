"""The whole service as real processes: gunicorn + Celery workers on a real broker, for black-box HTTP tests."""

from __future__ import annotations

import base64
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

import pytest

from tests.servers import PostgresServer, RedisServer, SparkServer, _stop, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DESTINATION_SECRETS = ("secret_access_key", "password", "private_key")


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
    shape: Shape
    bin_dir: Path = BIN
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    beat: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.bin_dir / "python"), "manage.py", *args],
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

    def web_start(self, port: int, *, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """gunicorn on `port` (2 processes of 8 threads), logging to web-<port>.log; returns once it listens."""
        log = open(
            self.var_dir / ("web.log" if self.base_url.endswith(f":{port}") else f"web-{port}.log"), "ab"
        )
        web = subprocess.Popen(
            [
                str(self.bin_dir / "gunicorn"),
                "insights.wsgi",
                *("--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "8"),
            ],
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for_port(port, process=web)
        return web

    def destination_create(
        self, customer: str, name: str, config: dict[str, Any], *, default: bool, kind: str = "s3"
    ) -> None:
        """What an operator does in the admin (Destinations: add, then "test connection"), done through the
        service's own code and database."""
        script = (
            "from insights.models import Customer, Destination\n"
            "from insights.destinations import destination_secrets_set, destination_test\n"
            f"config = {config!r}\n"
            f"secrets = {{k: config.pop(k) for k in {DESTINATION_SECRETS!r} if config.get(k)}}\n"
            "config = {k: v for k, v in config.items() if v is not None}\n"
            f"d = Destination.objects.create(customer=Customer.objects.get(key={customer!r}), name={name!r}, "
            f"kind={kind!r}, is_default={default!r}, **config)\n"
            "destination_secrets_set(d, **secrets)\n"
            "destination_test(d)\n"
        )
        self.manage("shell", "-c", script)

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
                str(self.bin_dir / "celery"),
                "-A",
                "insights",
                "--quiet",  # no start-up banner in the JSON log, as in docker-compose.yml
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
            [str(self.bin_dir / "celery"), "-A", "insights", "--quiet", "beat", "--loglevel", "INFO"],
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
        base_url: str | None = None,
    ) -> HttpResponse:
        """One HTTP request to the service (or to another web process of it at `base_url`)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request((base_url or self.base_url) + path, data=data, method=method)
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


@dataclass(frozen=True)
class Shape:
    """Where a service keeps its state. `embedded`: what `make run` uses (SQLite metadata, a DuckDB warehouse,
    the filesystem broker, a file cache). `production`: what docker-compose.yml runs (PostgreSQL metadata and
    warehouse, Redis broker and cache). `spark`: production's, with a Spark Connect warehouse (spark_shape)."""

    name: str
    database_url: str
    broker_url: str
    warehouse_url: str
    cache_url: str
    lake_path: str | None = None  # a lake engine's files (Spark: WAREHOUSE_LAKE_PATH)

    def env(self) -> dict[str, str]:
        env = {
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "WAREHOUSE_URL": self.warehouse_url,
            "CACHE_URL": self.cache_url,
        }
        if self.lake_path is not None:
            env["WAREHOUSE_LAKE_PATH"] = self.lake_path
        if not self.database_url.startswith("sqlite"):
            env["INSIGHTS_SECRETS_KEY"] = TEST_SECRETS_KEY  # required beside a shared metadata database
        return env


SHAPES = ("embedded", "production")
# What service_running loads into the warehouse (a test may load the same rows into another warehouse).
DEMO_SEED = ("seed_demo", "--customers", "3", "--sessions", "400", "--seed", "7")
# A Fernet key (32 bytes, url-safe base64) for the services these tests start; no deployment uses it.
TEST_SECRETS_KEY = base64.urlsafe_b64encode(b"insights-tests-only-secrets-key!").decode()


def embedded_shape(var_dir: Path) -> Shape:
    return Shape(
        name="embedded",
        database_url=f"sqlite:///{var_dir / 'insights.sqlite3'}",
        broker_url="filesystem://",
        warehouse_url=f"duckdb:///{var_dir / 'warehouse.duckdb'}",
        cache_url=f"file://{var_dir / 'cache'}",
    )


def production_shape(postgres: PostgresServer, redis: RedisServer, label: str) -> Shape:
    """PostgreSQL metadata and warehouse (databases of their own) and a Redis database of its own."""
    redis_url = redis.database_url()
    return Shape(
        name="production",
        database_url=postgres.create_database(f"{label}_meta"),
        broker_url=redis_url,
        warehouse_url=postgres.create_database(f"{label}_warehouse"),
        cache_url=redis_url,
    )


def spark_shape(
    postgres: PostgresServer, redis: RedisServer, spark: SparkServer, var_dir: Path, label: str
) -> Shape:
    """The production shape's metadata, broker and cache, with the warehouse on a Spark Connect server: a
    Parquet lake under `var_dir` (the server runs on this machine, so it reads and writes the same path)."""
    redis_url = redis.database_url()
    return Shape(
        name="spark",
        database_url=postgres.create_database(f"{label}_meta"),
        broker_url=redis_url,
        warehouse_url=spark.url,
        cache_url=redis_url,
        lake_path=str(var_dir / "lake"),
    )


def shape_make(name: str, request: pytest.FixtureRequest, var_dir: Path, label: str) -> Shape:
    """The shape called `name`; the production one starts (or reuses) the session's PostgreSQL and Redis."""
    if name == "embedded":
        return embedded_shape(var_dir)
    return production_shape(request.getfixturevalue("postgres"), request.getfixturevalue("redis"), label)


@contextlib.contextmanager
def service_running(
    *,
    shape: Shape,
    var_dir: Path,
    extra_env: dict[str, str] | None = None,
    bin_dir: Path = BIN,
    seed: bool = True,
) -> Iterator[Service]:
    """Migrate, seed the warehouse with demo data and start gunicorn; workers are started by the tests that
    want them. `bin_dir` holds the python, gunicorn and celery to run (another virtualenv's, say)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "insights.settings",
        "INSIGHTS_VAR_DIR": str(var_dir),
        # Not this test process's (its settings set the variable): the service's own, beside its var dir.
        "PROMETHEUS_MULTIPROC_DIR": str(var_dir / "metrics"),
        "LOG_LEVEL": "WARNING",
        **shape.env(),
        **(extra_env or {}),
    }
    port = free_port()
    service = Service(
        env=env, base_url=f"http://127.0.0.1:{port}", var_dir=var_dir, shape=shape, bin_dir=bin_dir
    )
    service.manage("migrate", "--noinput")
    if seed:
        service.manage(*DEMO_SEED)
    web = service.web_start(port)
    try:
        yield service
    finally:
        service.workers_stop()
        service.beat_stop()
        _stop(web)


@contextlib.contextmanager
def service_of_shape(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, label: str, **options: Any
) -> Iterator[Service]:
    """`service_running` on the shape a module's fixture is parametrised with (`request.param`, one of SHAPES), in
    a var dir of its own; `label` names its databases; `options` go to `service_running`."""
    var_dir = tmp_path_factory.mktemp(f"{label}-{request.param}")
    with service_running(
        shape=shape_make(request.param, request, var_dir, label), var_dir=var_dir, **options
    ) as running:
        yield running


def warehouse_rows(service: Service, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Rows read straight from the service's warehouse (`?` placeholders, either engine): what a result must
    hold, computed without the service."""
    url = service.shape.warehouse_url
    if url.startswith("duckdb://"):
        import duckdb

        with duckdb.connect(url.removeprefix("duckdb://"), read_only=True) as con:
            return con.execute(sql, params).fetchall()
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        return [tuple(row) for row in conn.execute(sql.replace("?", "%s"), params).fetchall()]
