"""`make run`: web (gunicorn) + Celery worker + Celery beat on the embedded defaults, demo data, a demo key.

Every process runs in this process's group; Ctrl-C (or any child dying) stops them all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "insights.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

from insights.celery import broker_folders_ensure  # noqa: E402
from insights.metrics import dead_processes_forget  # noqa: E402

PYTHON = sys.executable
BIN = Path(PYTHON).parent
HOST = os.environ.get("INSIGHTS_HOST", "127.0.0.1")
PORT = os.environ.get("INSIGHTS_PORT", "8000")
DEMO_CUSTOMER = os.environ.get("INSIGHTS_DEMO_CUSTOMER", "acme")


def _manage(*args: str) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], check=True, capture_output=True, text=True)
    return done.stdout


def demo_data_ensure() -> None:
    """Demo sessions in a warehouse that holds no events yet; one that does (a restart, or a real warehouse
    named by WAREHOUSE_URL) is left as it is."""
    print("demo warehouse: ", end="", flush=True)
    seeded = _manage(
        "seed_demo",
        "--customers",
        "3",
        "--sessions",
        "3000",
        "--seed",
        "1",
        "--create-customers",
        "--if-empty",
    )
    print(seeded.strip().splitlines()[-1], flush=True)


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
            "--threads",
            "4",  # threads: a slow client holds a thread, not a whole worker (which gunicorn would kill)
            "--access-logfile",
            "-",
        ],
        # --quiet: no banner in the log stream (LOG_LEVEL and LOG_FORMAT govern what they log).
        [
            str(BIN / "celery"),
            "-A",
            "insights",
            "--quiet",
            "worker",
            "--concurrency",
            "2",
            "--hostname",
            "worker@%h",
        ],
        [str(BIN / "celery"), "-A", "insights", "--quiet", "beat"],
    ]
    # Each in a process group of its own: a terminal's Ctrl-C reaches this launcher only, which stops each
    # child once. Had they shared the terminal's group, a gunicorn worker would get the terminal's SIGINT and
    # then its master's signal, and two signals during its thread pool's shutdown can deadlock it (found by
    # hand: a hung worker kept the port, and the next `make run` refused to start).
    return [subprocess.Popen(command, process_group=0) for command in commands]


def port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def main() -> int:
    if not port_free(HOST, int(PORT)):
        print(
            f"port {PORT} on {HOST} is in use: stop what holds it, or run on another port, e.g. "
            f"`INSIGHTS_PORT={int(PORT) + 1} make run`",
            file=sys.stderr,
        )
        return 1
    for sub in ("exports", "warehouse-tmp", "work"):
        (Path(settings.VAR_DIR) / sub).mkdir(parents=True, exist_ok=True)
    broker_folders_ensure()
    dead_processes_forget(totals=True)  # every process of the installation starts now: metrics from zero
    _manage("collectstatic", "--noinput")
    demo_data_ensure()
    key = demo_key_ensure()
    children = processes_start()
    if not _answers(children):
        return _stop_all(children, clean=False)
    base = f"http://{HOST}:{PORT}/_rest/v4"
    print(
        f"\nInsights is running on http://{HOST}:{PORT}/ (admin: /admin/, API docs: /_rest/v4/docs)\n"
        f"demo API key for customer '{DEMO_CUSTOMER}': {key}\n"
        "try:\n"
        f"  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
        f'    -d \'{{"timestamp": {{"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"}}, '
        f'"data": {{"ApplicationExitEvent": {{"fields": ["FlowId", "ExitReason"]}}}}}}\' {base}/dwh/Q\n'
        f"  curl -s -H 'Authorization: Bearer {key}' {base}/dwh/Q/<id>/status\n"
        "or with the CLI (waits, then downloads the result into out/):\n"
        f"  {cli_line(key)}\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )
    return _supervise(children)


CLI_EXAMPLE = "examples/calls-and-exits.json"


def cli_line(key: str) -> str:
    """The `insights` command (installed by `make install`) submitting the example body against this server."""
    command = BIN / "insights"
    with contextlib.suppress(ValueError):  # shorter from the checkout: .venv/bin/insights
        command = command.relative_to(Path.cwd())
    return (
        f"INSIGHTS_URL=http://{HOST}:{PORT} INSIGHTS_TOKEN={key} "
        f"{command} query {CLI_EXAMPLE} --wait --download out/"
    )


NAMES = ("web (gunicorn)", "worker (celery)", "beat (celery)")


def _answers(children: list[subprocess.Popen[bytes]], timeout: float = 60) -> bool:
    """Wait until the web port answers; False (saying which process died, or that nothing answered)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, child in zip(NAMES, children, strict=True):
            if child.poll() is not None:
                print(f"{name} exited with status {child.returncode}; see its output above", file=sys.stderr)
                return False
        with contextlib.suppress(OSError), socket.create_connection((HOST, int(PORT)), timeout=1):
            return True
        time.sleep(0.2)
    print(f"nothing answered on {HOST}:{PORT} within {timeout:.0f} s", file=sys.stderr)
    return False


def _supervise(children: list[subprocess.Popen[bytes]]) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.5)
    for name, child in zip(NAMES, children, strict=True):
        if child.poll() is not None and not stopping:
            print(f"{name} exited with status {child.returncode}: stopping everything", file=sys.stderr)
    return _stop_all(children, clean=stopping)


def _stop_all(children: list[subprocess.Popen[bytes]], *, clean: bool) -> int:
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
