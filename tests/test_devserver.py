"""`make run`'s program on the embedded defaults: SQLite, DuckDB, the filesystem broker, real worker processes."""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
QUERY = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"ApplicationExitEvent": {"fields": ["FlowId", "ExitReason"]}},
}


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in map(int, children):
            found |= {child} | _descendants(child)
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _call(method: str, url: str, key: str, body: object = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()


def _read_key(process: subprocess.Popen[str], deadline: float) -> tuple[str, list[str]]:
    seen: list[str] = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("Ctrl-C stops everything"):
            match = re.search(r"demo API key for customer '\w+': (\S+)", "".join(seen))
            assert match, "".join(seen)
            return match.group(1), seen
    raise AssertionError("no demo key printed:\n" + "".join(seen))


def _env(var_dir: Path, port: int) -> dict[str, str]:
    return {
        **{
            k: v
            for k, v in os.environ.items()
            # PROMETHEUS_MULTIPROC_DIR: set by this process's settings, for its own var dir, not the server's
            if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "WAREHOUSE_URL", "PROMETHEUS_MULTIPROC_DIR")
        },
        "INSIGHTS_VAR_DIR": str(var_dir),
        "INSIGHTS_PORT": str(port),
    }


def _devserver(env: dict[str, str], stderr: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
    """The launcher in a process group of its own, as a shell runs a foreground job: a terminal's Ctrl-C is a
    SIGINT to that whole group (`os.killpg`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "insights.devserver"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        process_group=0,
    )


def _cli_line_works(printed: list[str], key: str, port: int, cwd: Path) -> None:
    """The banner's CLI line, run as printed (from the checkout's paths, into a directory of the test's own):
    it submits the example, waits for it and downloads its result."""
    lines = [line.strip() for line in printed if " query examples/" in line]
    assert len(lines) == 1, "".join(printed)
    words = shlex.split(lines[0])
    env = dict(word.split("=", 1) for word in words[:2])
    assert env == {"INSIGHTS_URL": f"http://127.0.0.1:{port}", "INSIGHTS_TOKEN": key}
    command, verb, body, *options = words[2:]
    assert ROOT / command == Path(sys.executable).parent / "insights"  # .venv/bin/insights from the checkout
    assert (verb, options) == ("query", ["--wait", "--download", "out/"])
    cwd.mkdir()
    done = subprocess.run(
        [str(ROOT / command), verb, str(ROOT / body), *options],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    guid, *paths = done.stdout.splitlines()
    assert paths and all(path.startswith(f"out/{guid}_QueryExport_") for path in paths)
    assert all((cwd / path).stat().st_size > 0 for path in paths)


def test_make_run_serves_the_whole_flow_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path, port)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    process = _devserver(env)
    try:
        key, printed = _read_key(process, time.monotonic() + 120)
        curl_lines = [line for line in printed if "curl" in line]
        assert curl_lines and key in "".join(printed)
        base = f"http://127.0.0.1:{port}/_rest/v4"
        deadline = time.monotonic() + 60
        while True:  # the web server starts after the key is printed
            try:
                status, body = _call("POST", f"{base}/dwh/Q", key, QUERY)
                break
            except OSError:
                assert time.monotonic() < deadline, "web server never answered"
                time.sleep(0.2)
        assert status == 201
        guid = json.loads(body)["id"]
        while (
            state := json.loads(_call("GET", f"{base}/dwh/Q/{guid}/status", key)[1])["status"]
        ) == "Pending":
            assert time.monotonic() < deadline, "the query never finished"
            time.sleep(0.2)
        assert state == "Completed"
        _, data = _call("GET", f"{base}/dwh/Q/{guid}/download", key)
        assert gzip.decompress(data).decode().splitlines()[0] == "FlowId,ExitReason"
        _cli_line_works(printed, key, port, tmp_path / "cli")
        children = _descendants(process.pid)
        assert len(children) >= 3  # web, worker, beat (and their forks)
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole foreground group
        process.wait(timeout=60)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)]
    with (
        socket.socket() as probe
    ):  # nothing listens on the port: the next `make run` can start (as it checks)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))

    # A restart on the same var dir reuses the key and the demo data: nothing is seeded twice.
    again = _devserver(env)
    try:
        second_key, printed = _read_key(again, time.monotonic() + 120)
        assert second_key == key
        assert "demo warehouse: the warehouse already holds events: nothing loaded\n" in printed
    finally:
        again.send_signal(signal.SIGINT)
        again.wait(timeout=60)


def test_make_run_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _devserver(_env(tmp_path, port), stderr=subprocess.PIPE)
        _, error = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in error and "INSIGHTS_PORT=" in error
