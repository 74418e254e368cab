"""requirements.txt alone runs the service: a fresh virtualenv made from it (no dev extras, as the Docker image
is) imports every runtime module and serves the seed's request end to end on the production shape, with
gunicorn and a Celery worker on a real Redis. The dev requirements once pulled in a package the Redis transport
needs (`packaging`), so a worker made from requirements.txt alone could not start, and no test noticed."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from queries.ingest import DEMO_CUSTOMER_KEYS
from tests.seed_requests import REQUEST_1
from tests.service import ROOT, Service, production_shape, service_running

RUNTIME_PACKAGES = ("insights", "queries", "exports", "webhooks", "schedules", "insights_cli")


@pytest.fixture(scope="module")
def runtime_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a new virtualenv holding requirements.txt and nothing else."""
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-r", "requirements.txt"],
        cwd=ROOT,
        check=True,
        timeout=1200,
    )
    return venv / "bin"


def test_the_runtime_venv_has_no_dev_packages(runtime_bin: Path) -> None:
    """The proof below means something only if the dev tools are really absent."""
    for dev_only in ("pytest", "hypothesis", "moto", "schemathesis"):
        found = subprocess.run(
            [str(runtime_bin / "python"), "-c", f"import {dev_only}"], cwd=ROOT, capture_output=True
        )
        assert found.returncode != 0, f"{dev_only} is importable in the runtime venv"


def test_every_runtime_module_imports_from_requirements_alone(runtime_bin: Path) -> None:
    """Every module of the three apps, the Redis transport and the PostgreSQL engine included."""
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in RUNTIME_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts and path.name != "__main__.py"  # that one runs the program
    )
    script = (
        "import importlib, django\n"
        "django.setup()\n"
        f"for name in ['kombu.transport.redis', *{modules!r}]:\n"
        "    importlib.import_module(name)\n"
        f"print('imported', {len(modules)})\n"
    )
    done = subprocess.run(
        [str(runtime_bin / "python"), "-c", script],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "insights.settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"imported {len(modules)}" in done.stdout


@pytest.fixture(scope="module")
def cli_installed(runtime_bin: Path) -> Path:
    """`pip install .` of the checkout into the runtime virtualenv: the `insights` command."""
    subprocess.run(
        [str(runtime_bin / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT)],
        check=True,
        timeout=600,
    )
    return runtime_bin / "insights"


def test_pip_install_of_the_project_installs_the_cli(cli_installed: Path, tmp_path: Path) -> None:
    """The command runs from anywhere (its package was installed, not found in the checkout) and its import
    brings in no Django and nothing of the service: it is an HTTP client."""
    outside = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(cli_installed), "--help"], cwd=tmp_path, env=outside, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: insights" in done.stdout and "Exit codes:" in done.stdout
    script = (
        "import sys, insights_cli.commands\n"
        "print(sorted({name.split('.')[0] for name in sys.modules}\n"
        "             & {'django', 'rest_framework', 'celery', 'insights', 'queries', 'exports'}))\n"
    )
    imported = subprocess.run(
        [str(cli_installed.parent / "python"), "-c", script],
        cwd=tmp_path,
        env=outside,
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def service(
    runtime_bin: Path, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    var_dir = tmp_path_factory.mktemp("runtime-service")
    shape = production_shape(request.getfixturevalue("postgres"), request.getfixturevalue("redis"), "runtime")
    with service_running(shape=shape, var_dir=var_dir, bin_dir=runtime_bin) as running:
        yield running


def test_a_query_runs_end_to_end_on_requirements_alone(service: Service) -> None:
    key = service.customer_create(DEMO_CUSTOMER_KEYS[0])
    worker = service.worker_start(concurrency=1)
    created = service.request("POST", "/_rest/v4/dwh/Q", key=key, body=REQUEST_1)
    assert created.status == 201, created.body
    guid = created.json()["id"]
    status = service.wait_terminal(guid, key, timeout=120)
    assert status["status"] == "Completed", (status, (service.var_dir / "worker-0.log").read_text()[-3000:])
    assert worker.poll() is None, "the worker must still be running"
    rows = service.download_rows(guid, key)
    assert rows[0] == "FlowId" and len(rows) > 1


def test_the_installed_cli_runs_a_query_end_to_end(
    service: Service, cli_installed: Path, tmp_path: Path
) -> None:
    """The same request through the command `pip install .` installed: the same rows, downloaded and checked."""
    key = service.customer_create(DEMO_CUSTOMER_KEYS[1])
    if not service.workers:
        service.worker_start(concurrency=1)
    (tmp_path / "request.json").write_text(json.dumps(REQUEST_1))
    done = subprocess.run(
        [str(cli_installed), "query", "request.json", "--wait", "--download", "out"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "INSIGHTS_URL": service.base_url,
            "INSIGHTS_TOKEN": key,
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    guid, path = done.stdout.splitlines()
    assert gzip.decompress((tmp_path / path).read_bytes()).decode().splitlines() == service.download_rows(
        guid, key
    )
