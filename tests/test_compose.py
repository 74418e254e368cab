"""docker-compose.yml runs as written, without Docker.

No Docker engine runs here, so the test does what compose would: it reads docker-compose.yml, interpolates
its `${...}` variables from an operator's .env, and runs every app service's `command` with exactly that
service's `environment` (plus the image's ENV and PATH, nothing from this shell), in compose's start order:
the one-shot `migrate` to completion first, because web, worker and beat wait for it. The other services are
stand-ins on free ports, their host names mapped: a PostgreSQL (`postgres`, initialised with the compose
file's init script), a Redis (`redis`), an OpenSSH sshd (`sftp`) and moto_server (`minio`). The web service's
healthcheck is run as written. Then an operator's first steps (seed, customers, destinations) and the seed
document's Requests 1 and 2 through the web service, to completed downloads on the volume, on S3 and on SFTP.

The Dockerfile and .dockerignore are read too: what the image would hold, and where its static files go.
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from queries.ingest import DEMO_CUSTOMER_KEYS
from tests.moto import MotoServer, moto_server
from tests.seed_requests import REQUEST_1, REQUEST_2
from tests.servers import PostgresServer, _stop, free_port, postgres_server, redis_server
from tests.service import BIN, ROOT, Service, Shape
from tests.sshd import SshdServer, sshd_server

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = sorted(name for name, service in SERVICES.items() if "build" in service)  # built from here
DOCKERFILE = (ROOT / "Dockerfile").read_text()
VOLUME_MOUNT = "/var/lib/insights"
# What README's Deploy section has an operator set in .env after `cp .env.example .env`.
OPERATOR_SETS = {
    "DJANGO_SECRET_KEY": "compose-test-secret-key-" + "x" * 40,
    "INSIGHTS_SECRETS_KEY": "Y29tcG9zZS10ZXN0LWtleS0zMi1ieXRlcy1sb25nISE=",
    "DJANGO_ALLOWED_HOSTS": "insights.example.com",
}
# What the TLS proxy in front of web does: keeps the Host the client asked for and says it was HTTPS.
TLS_PROXY = {"X-Forwarded-Proto": "https", "Host": "insights.example.com"}


def dotenv_read(text: str) -> dict[str, str]:
    """A .env file as compose reads it (NAME=value lines; .env.example keeps to the plain form)."""
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


# The operator's .env: the example with their settings, as compose finds it beside docker-compose.yml.
_EXAMPLE = (ROOT / ".env.example").read_text()
DOTENV = {**dotenv_read(_EXAMPLE), **OPERATOR_SETS}


# -- what compose does with the file ------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:\?|:-|\?|-)(?P<arg>[^}]*))?\}")


class ComposeError(Exception):
    pass


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}` and `${VAR?error}`."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        current = variables.get(name)
        if op in (":?", "?") and (current is None or (op == ":?" and current == "")):
            raise ComposeError(f"required variable {name} is missing a value: {arg}")
        if op == ":-" and not current:
            return arg
        if op == "-" and current is None:
            return arg
        return current or ""

    return _VARIABLE.sub(value, text)


def start_order() -> list[str]:
    """Every service after the ones it depends on (compose's order)."""
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        if name in ordered:
            return
        for dependency in _depends_on(name):
            visit(dependency, (*path, name))
        ordered.append(name)

    for name in SERVICES:
        visit(name, ())
    return ordered


def _depends_on(name: str) -> dict[str, str]:
    depends = SERVICES[name].get("depends_on", {})
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {dependency: spec.get("condition", "service_started") for dependency, spec in depends.items()}


def image_env() -> dict[str, str]:
    """The ENV lines of the Dockerfile (`ENV A=1 B=2`)."""
    env: dict[str, str] = {}
    for line in DOCKERFILE.splitlines():
        if line.startswith("ENV "):
            for assignment in shlex.split(line[4:]):
                name, _, value = assignment.partition("=")
                env[name] = value
    return env


@dataclass
class Mapping:
    """Compose's network and volume, as this machine has them: host:port pairs and the volume's directory."""

    hosts: dict[str, str]
    volume: Path

    def apply(self, text: str) -> str:
        for inside, outside in self.hosts.items():
            text = text.replace(inside, outside)
        return text.replace(VOLUME_MOUNT, str(self.volume))


def service_env(name: str, mapping: Mapping) -> dict[str, str]:
    """Exactly what the container of `name` would see: the image's ENV, then its env_file (.env), then its
    `environment`."""
    service = SERVICES[name]
    environment = service.get("environment", {})
    env = {**image_env(), "PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(mapping.volume)}
    if service.get("env_file"):
        assert service["env_file"] in (".env", [".env"]), service["env_file"]
        env.update(DOTENV)
    for variable, value in environment.items():
        env[variable] = mapping.apply(interpolate(str(value), DOTENV))
    return {variable: mapping.apply(value) for variable, value in env.items()}


def service_argv(name: str, mapping: Mapping) -> list[str]:
    return [mapping.apply(arg) for arg in shlex.split(interpolate(SERVICES[name]["command"], DOTENV))]


# -- the deployment -----------------------------------------------------------------------------------------


@dataclass
class Deployment:
    mapping: Mapping
    port: int
    logs: Path
    s3: MotoServer
    sshd: SshdServer
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, name: str, argv: list[str] | None = None) -> str:
        """`docker compose run --rm <name> [argv]`: a one-off command in that service's container."""
        done = subprocess.run(
            argv or service_argv(name, self.mapping),
            cwd=ROOT,
            env=service_env(name, self.mapping),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{name}: {argv}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def start(self, name: str) -> None:
        log = open(self.logs / f"{name}.log", "wb")
        env = service_env(name, self.mapping)
        if name == "web":
            env["PORT"] = str(self.port)  # the `ports:` mapping
        self.processes[name] = subprocess.Popen(
            service_argv(name, self.mapping), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def healthy_wait(self, name: str, timeout: float = 60) -> None:
        """Run the service's healthcheck as written (CMD form) until it passes."""
        test = SERVICES[name]["healthcheck"]["test"]
        assert test[0] == "CMD", test
        argv = [arg.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}") for arg in test[1:]]
        env = service_env(name, self.mapping)
        deadline = time.monotonic() + timeout
        while subprocess.run(argv, cwd=ROOT, env=env, capture_output=True).returncode != 0:
            process = self.processes[name]
            assert process.poll() is None, f"{name} exited: {(self.logs / f'{name}.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{name} not healthy after {timeout}s"
            time.sleep(0.5)

    def service(self) -> Service:
        """The running deployment as the HTTP helpers of tests.service see it."""
        env = service_env("web", self.mapping)
        shape = Shape("compose", env["DATABASE_URL"], env["CELERY_BROKER_URL"], env["WAREHOUSE_URL"], "")
        return Service(env=env, base_url=self.base_url, var_dir=self.mapping.volume, shape=shape)


def _postgres_prepare(server: PostgresServer) -> None:
    """What the postgres image does on first start: the user and database of its environment, then the init
    scripts mounted into /docker-entrypoint-initdb.d (the warehouse database)."""
    environment = {k: interpolate(str(v), DOTENV) for k, v in SERVICES["postgres"]["environment"].items()}
    user, database = environment["POSTGRES_USER"], environment["POSTGRES_DB"]
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{user}" LOGIN SUPERUSER')
        conn.execute(f'CREATE DATABASE "{database}" OWNER "{user}"')
    for volume in SERVICES["postgres"]["volumes"]:
        source, _, target = volume.partition(":")
        if "docker-entrypoint-initdb.d" in target:
            script = (ROOT / source).read_text()
            with psycopg.connect(server.url(), autocommit=True, user=user) as conn:
                conn.execute(script)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    base = tmp_path_factory.mktemp("compose")
    volume, logs = base / "insights-var", base / "logs"
    volume.mkdir()
    logs.mkdir()
    with postgres_server() as postgres, redis_server() as redis, moto_server() as s3, sshd_server() as sshd:
        _postgres_prepare(postgres)
        mapping = Mapping(
            hosts={
                "postgres:5432": f"127.0.0.1:{postgres.port}",
                "redis:6379": f"127.0.0.1:{redis.port}",
                "minio:9000": f"127.0.0.1:{s3.port}",
                "sftp:22": f"127.0.0.1:{sshd.port}",
            },
            volume=volume,
        )
        deployment = Deployment(mapping=mapping, port=free_port(), logs=logs, s3=s3, sshd=sshd)
        # The image's build step: static files collected where the running image serves them.
        (build_step,) = [line for line in DOCKERFILE.splitlines() if "collectstatic" in line]
        subprocess.run(
            ["sh", "-c", build_step.removeprefix("RUN ")],
            cwd=ROOT,
            env={**image_env(), "PATH": f"{BIN}:/usr/bin:/bin"},
            check=True,
            capture_output=True,
        )
        try:
            for name in start_order():
                if name not in APP_SERVICES:
                    continue  # a stand-in above is running already
                for dependency, condition in _depends_on(name).items():
                    if condition == "service_completed_successfully":
                        assert dependency not in deployment.processes, f"{dependency} must be a one-shot"
                if name == "migrate":
                    deployment.run(name)  # to completion: the others wait for it
                else:
                    deployment.start(name)
            deployment.healthy_wait("web")
            yield deployment
        finally:
            for process in deployment.processes.values():
                _stop(process)


# -- the file itself ----------------------------------------------------------------------------------------


def test_compose_has_every_service_of_the_design() -> None:
    assert set(SERVICES) >= {"web", "worker", "beat", "migrate", "redis", "postgres", "sftp", "minio"}
    assert set(APP_SERVICES) == {"web", "worker", "beat", "migrate"}


def test_migrate_runs_once_before_web_worker_and_beat() -> None:
    order = start_order()
    for name in ("web", "worker", "beat"):
        assert _depends_on(name)["migrate"] == "service_completed_successfully", name
        assert order.index("migrate") < order.index(name)
    assert _depends_on("migrate")["postgres"] == "service_healthy"
    assert "healthcheck" in SERVICES["web"] and "healthcheck" in SERVICES["redis"]


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "INSIGHTS_SECRETS_KEY"])
def test_compose_refuses_to_start_without_a_secret(missing: str) -> None:
    """Both secrets come from the operator's .env; compose stops with a message naming the one missing (the
    example leaves them empty), rather than starting containers that cannot run."""
    variables = {**DOTENV, missing: dotenv_read(_EXAMPLE)[missing]}
    assert variables[missing] == ""
    with pytest.raises(ComposeError, match=missing):
        for name in APP_SERVICES:
            for value in SERVICES[name]["environment"].values():
                interpolate(str(value), variables)


def test_the_app_services_take_every_setting_of_the_env_file_and_run_in_production_mode() -> None:
    for name in APP_SERVICES:
        assert SERVICES[name]["env_file"] == ".env", name
        # The example leaves INSIGHTS_PRODUCTION empty (0 for make run): under compose it means production.
        assert interpolate(str(SERVICES[name]["environment"]["INSIGHTS_PRODUCTION"]), DOTENV) == "1"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_variable_an_app_service_sets_is_read_by_the_code(name: str) -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "insights").glob("*.py"))
    for variable in SERVICES[name]["environment"]:
        if variable == "PORT":
            continue  # read by gunicorn: its bind address is 0.0.0.0:$PORT
        assert f'"{variable}"' in source, f"{variable} is not read by the settings"


# -- the running deployment ---------------------------------------------------------------------------------


def test_the_web_healthcheck_passes_and_says_why(deployment: Deployment) -> None:
    with urllib.request.urlopen(f"{deployment.base_url}/readyz", timeout=10) as response:
        assert response.status == 200
        assert b'"database": "ok"' in response.read()
    assert all(p.poll() is None for p in deployment.processes.values()), "every long-running service is up"


def test_the_image_serves_its_static_files(deployment: Deployment) -> None:
    service = deployment.service()
    for path in (
        "/static/admin/css/base.css",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
    ):
        response = service.request("GET", path, headers=TLS_PROXY)
        assert response.status == 200, (path, response.status)
        assert len(response.body) > 1000


def test_seed_requests_through_the_web_service(deployment: Deployment) -> None:
    """An operator's first steps, then Request 1 to the volume, Request 2 to S3 (minio) and Request 1 to SFTP."""
    deployment.run("migrate", ["python", "manage.py", "seed_demo", "--customers", "3", "--sessions", "300"])
    service = deployment.service()
    local, bucket_owner, sftp_owner = DEMO_CUSTOMER_KEYS[:3]
    keys = {
        customer: _customer_create(deployment, customer) for customer in (local, bucket_owner, sftp_owner)
    }
    bucket = deployment.s3.bucket_create("compose")
    _destination(deployment, bucket_owner, "s3", deployment.s3.storage_config(bucket))
    sftp = deployment.sshd.config(
        user=deployment.sshd.chroot_user, private_key=None, password=deployment.sshd.chroot_password
    )
    _destination(deployment, sftp_owner, "sftp", sftp)

    requests: list[tuple[str, dict[str, Any]]] = [
        (local, REQUEST_1),
        (bucket_owner, REQUEST_2),
        (sftp_owner, REQUEST_1),
    ]
    for customer, body in requests:
        created = service.request("POST", "/_rest/v4/dwh/Q", key=keys[customer], body=body, headers=TLS_PROXY)
        assert created.status == 201, created.body
        guid = created.json()["id"]
        status = _wait_terminal(service, guid, keys[customer])
        assert status["status"] == "Completed", (customer, status, _log_tail(deployment, "worker"))
        rows = _download(service, guid, keys[customer])
        header = ",".join(body["data"]["ApplicationExitEvent"]["fields"])
        assert rows[0] == header and len(rows) > 1, (customer, rows[:3])
    assert [p.name for p in (deployment.mapping.volume / "exports" / "reports").iterdir()] == [local]
    assert any(key.endswith("_manifest.json") for key in deployment.s3.keys(bucket))
    assert list((deployment.sshd.chroot_dir / "reports" / sftp_owner).glob("*_manifest.json"))


def _customer_create(deployment: Deployment, customer: str) -> str:
    argv = ["python", "manage.py", "create_customer", customer.title(), "--key", customer, "--api-key"]
    return deployment.run("migrate", argv).strip().splitlines()[-1]


def _destination(deployment: Deployment, customer: str, kind: str, config: dict[str, Any]) -> None:
    service = deployment.service()
    service.env = {**service.env, **service_env("migrate", deployment.mapping)}
    service.bin_dir = BIN
    service.destination_create(customer, kind, config, default=True, kind=kind)


def _wait_terminal(service: Service, guid: str, key: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/status", key=key, headers=TLS_PROXY).json()
        if status["status"] != "Pending" or time.monotonic() > deadline:
            return dict(status)
        time.sleep(0.2)


def _download(service: Service, guid: str, key: str) -> list[str]:
    """Every part of the result, followed through a 303 to S3 where the result is there."""
    files = service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=key, headers=TLS_PROXY).json()["files"]
    lines: list[str] = []
    for part in range(len(files)):
        response = service.request(
            "GET", f"/_rest/v4/dwh/Q/{guid}/download/{part}", key=key, headers=TLS_PROXY
        )
        if response.status == 303:
            with urllib.request.urlopen(response.headers["Location"], timeout=30) as redirected:
                body = redirected.read()
        else:
            assert response.status == 200, response.body[:300]
            body = response.body
        part_lines = gzip.decompress(body).decode().splitlines()
        lines += part_lines if part == 0 else part_lines[1:]
    return lines


def _log_tail(deployment: Deployment, name: str) -> str:
    return (deployment.logs / f"{name}.log").read_text(errors="replace")[-3000:]


# -- the image ----------------------------------------------------------------------------------------------


def _ignored(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (last matching rule wins; a rule that
    matches a directory keeps everything under it out)."""
    parts = path.split("/")
    excluded = False
    for negated, pattern in patterns:
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch.fnmatchcase(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(parts[depth - 1], pattern[3:])
            ):
                excluded = not negated
                break
    return excluded


def _dockerignore() -> list[tuple[bool, str]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.removeprefix("!").rstrip("/")))
    return rules


def test_the_image_holds_the_code_and_none_of_the_local_state() -> None:
    """`COPY . .` sends the build context minus .dockerignore: never the virtualenv, var/ (the SQLite
    database, the demo key, the secrets key), .git or an .env; always what the services run."""
    rules = _dockerignore()
    context = [
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*")
        if path.is_file() and not _ignored(str(path.relative_to(ROOT)), rules)
    ]
    for forbidden in (".venv/", "var/", ".git/", "staticfiles/"):
        leaked = [p for p in context if p.startswith(forbidden)]
        assert not leaked, f"the image would hold {leaked[:3]}"
    assert ".env" not in context
    assert not [p for p in context if "__pycache__" in p]
    for needed in (
        "manage.py",
        "requirements.txt",
        "insights/settings.py",
        "queries/catalog.json",
        ".env.example",
    ):
        assert needed in context, needed
    for probe in (".venv/bin/python", "var/insights.sqlite3", "var/secrets.key", ".git/HEAD", ".env"):
        assert _ignored(probe, rules), probe


def test_the_image_runs_as_an_unprivileged_user_and_serves_static_files_from_its_own_tree() -> None:
    users = [line.split()[1] for line in DOCKERFILE.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    (workdir,) = [line.split()[1] for line in DOCKERFILE.splitlines() if line.startswith("WORKDIR ")]
    env = service_env("web", Mapping(hosts={}, volume=Path(VOLUME_MOUNT)))
    settings = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.STATIC_ROOT)"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "insights.settings"},
        capture_output=True,
        text=True,
    )
    assert settings.returncode == 0, settings.stderr[-2000:]
    static_root = Path(settings.stdout.strip())
    # Collected at build time into the image's tree (ROOT here is the image's WORKDIR), not into the volume.
    assert static_root.is_relative_to(ROOT) and not str(static_root).startswith(VOLUME_MOUNT)
    assert workdir == "/app" and os.path.relpath(static_root, ROOT) == "staticfiles"
