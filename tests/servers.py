"""Real servers for integration tests, each started on a free port in a temporary directory and stopped after.

A missing binary is a failure naming the make target that installs it, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str, make_target: str, search: list[Path] | None = None) -> str:
    for directory in search or []:
        candidate = directory / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run `make {make_target}` first", pytrace=False)
    return found


def wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class PostgresServer:
    port: int
    user: str = "postgres"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_postgres_user() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: (uid, gid) of the `postgres` account when we are root."""
    if os.geteuid() != 0:
        return None
    account = pwd.getpwnam("postgres")
    return account.pw_uid, account.pw_gid


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    initdb = require_binary("initdb", "install-servers", PG_BIN_DIRS)
    postgres = require_binary("postgres", "install-servers", PG_BIN_DIRS)
    drop = _as_postgres_user()
    base = Path(tempfile.mkdtemp(prefix="insights-pg-"))
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    if drop:
        for path in (base, sockets):
            os.chown(path, *drop)
    subprocess.run(
        [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        user=drop[0] if drop else None,
        group=drop[1] if drop else None,
    )
    port = free_port()
    process = subprocess.Popen(
        [
            postgres,
            "-D",
            str(data),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(sockets),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        user=drop[0] if drop else None,
        group=drop[1] if drop else None,
    )
    try:
        wait_for_port(port, process=process)
        _wait_for_postgres(PostgresServer(port=port).url())
        yield PostgresServer(port=port)
    finally:
        _stop(process)
        shutil.rmtree(base, ignore_errors=True)


def _wait_for_postgres(url: str, timeout: float = 30.0) -> None:
    """The port opens before recovery ends ("the database system is starting up"): wait for a real session."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


REDIS_DATABASES = 256


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    _next_db: int = 1

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def database_url(self) -> str:
        """A database of its own (1, 2, ...): services sharing this server must not see each other's messages
        (a worker would run another service's query id in its own metadata database)."""
        if self._next_db >= REDIS_DATABASES:
            raise RuntimeError("this Redis server has no free database left")
        self._next_db += 1
        return f"redis://127.0.0.1:{self.port}/{self._next_db - 1}"


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    binary = require_binary("redis-server", "install-servers")
    base = Path(tempfile.mkdtemp(prefix="insights-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--databases",
            str(REDIS_DATABASES),
            "--dir",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        yield RedisServer(port=port, process=process)
    finally:
        _stop(process)
        shutil.rmtree(base, ignore_errors=True)


SPARK_VERSION = "4.2.0"  # the server's pyspark: the same version as requirements.txt's pyspark-client
SPARK_HOME = Path(__file__).resolve().parent.parent / "var" / "spark-server" / "pyspark"
SPARK_CONNECT_SERVER = "org.apache.spark.sql.connect.service.SparkConnectServer"


@dataclass
class SparkServer:
    port: int
    work: Path  # a scratch directory the server can write: lakes for tests go under it

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"


def _spark_submit() -> str:
    """The full pyspark's spark-submit (`make spark-server`), and java (`make jdk`): fail naming the target."""
    submit = SPARK_HOME / "bin" / "spark-submit"
    if not submit.exists():
        pytest.fail("the Spark server is not installed: run `make spark-server` first", pytrace=False)
    require_binary("java", "jdk")
    return str(submit)


@contextlib.contextmanager
def spark_server(extra_confs: dict[str, str] | None = None) -> Iterator[SparkServer]:
    """A Spark Connect server (local[2]) on a free loopback port, its scratch files in a temporary directory;
    `extra_confs` add to or override the Spark settings below (the benchmark gives the driver more memory)."""
    submit = _spark_submit()
    base = Path(tempfile.mkdtemp(prefix="insights-spark-"))
    port = free_port()
    confs = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.ui.enabled": "false",
        "spark.local.dir": str(base / "local"),
        "spark.sql.warehouse.dir": str(base / "warehouse"),
        "spark.driver.memory": "1g",
        "spark.sql.shuffle.partitions": "2",  # tests read a few rows: two tasks, not 200
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={base}",
        **(extra_confs or {}),
    }
    command = [submit, "--class", SPARK_CONNECT_SERVER, "--master", "local[2]", "--name", "insights-tests"]
    for key, value in confs.items():
        command += ["--conf", f"{key}={value}"]
    env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOG_DIR": str(base)}
    with open(base / "server.log", "wb") as log:
        process = subprocess.Popen(
            [*command, "spark-internal"], cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, timeout=120, process=process)
        (base / "lakes").mkdir()
        yield SparkServer(port=port, work=base / "lakes")
    finally:
        _stop(process)
        shutil.rmtree(base, ignore_errors=True)
