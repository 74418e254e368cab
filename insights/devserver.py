"""`make run`: web (gunicorn) + Celery worker + Celery beat on the embedded defaults, demo data, a demo key.

Every process runs in this process's group; Ctrl-C (or any child dying) stops them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "insights.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

from insights.celery import broker_folders_ensure  # noqa: E402

PYTHON = sys.executable
BIN = Path(PYTHON).parent
HOST = os.environ.get("INSIGHTS_HOST", "127.0.0.1")
PORT = os.environ.get("INSIGHTS_PORT", "8000")
DEMO_CUSTOMER = os.environ.get("INSIGHTS_DEMO_CUSTOMER", "acme")


def _manage(*args: str) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], check=True, capture_output=True, text=True)
    return done.stdout


def demo_data_ensure() -> None:
    url = settings.WAREHOUSE_URL
    if url.startswith("duckdb:///") and Path(url.removeprefix("duckdb://")).exists():
        return
    print("seeding the demo warehouse ...", flush=True)
    _manage("seed_demo", "--customers", "3", "--sessions", "3000", "--seed", "1", "--create-customers")


def demo_key_ensure() -> str:
    """The demo customer's API key, created once and kept in var/ (development only) so restarts reuse it."""
    key_file = Path(settings.VAR_DIR) / "demo-api-key"
    if key_file.exists():
        return key_file.read_text().strip()
    raw = (
        _manage("create_customer", "Acme Demo", "--key", DEMO_CUSTOMER, "--api-key").strip().splitlines()[-1]
    )
    key_file.write_text(raw + "\n")
    key_file.chmod(0o600)
    return raw


def processes_start() -> list[subprocess.Popen[bytes]]:
    commands = [
        [
            str(BIN / "gunicorn"),
            "insights.wsgi",
            "--bind",
            f"{HOST}:{PORT}",
            "--workers",
            "2",
            "--access-logfile",
            "-",
        ],
        [
            str(BIN / "celery"),
            "-A",
            "insights",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
            "--hostname",
            "worker@%h",
        ],
        [str(BIN / "celery"), "-A", "insights", "beat", "--loglevel", "INFO"],
    ]
    return [subprocess.Popen(command) for command in commands]


def main() -> int:
    for sub in ("exports", "warehouse-tmp", "work"):
        (Path(settings.VAR_DIR) / sub).mkdir(parents=True, exist_ok=True)
    broker_folders_ensure()
    _manage("collectstatic", "--noinput")
    demo_data_ensure()
    key = demo_key_ensure()
    children = processes_start()
    base = f"http://{HOST}:{PORT}/_rest/v4"
    print(
        f"\nInsights is starting on http://{HOST}:{PORT}/ (admin: /admin/)\n"
        f"demo API key for customer '{DEMO_CUSTOMER}': {key}\n"
        "try:\n"
        f"  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
        f'    -d \'{{"timestamp": {{"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"}}, '
        f'"data": {{"ApplicationExitEvent": {{"fields": ["FlowId", "ExitReason"]}}}}}}\' {base}/dwh/Q\n'
        f"  curl -s -H 'Authorization: Bearer {key}' {base}/dwh/Q/<id>/status\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )
    return _supervise(children)


def _supervise(children: list[subprocess.Popen[bytes]]) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.5)
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
