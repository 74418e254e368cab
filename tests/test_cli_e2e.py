"""The `insights` console script, installed in the virtualenv (`pip install -e .`), run as a user runs it against
the real service on both shapes: gunicorn and a real Celery worker, on the embedded default and on the
production shape. Whatever the CLI says is checked against what the HTTP API answers for the same question."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from queries.ingest import DEMO_CUSTOMER_KEYS
from tests.servers import free_port
from tests.service import BIN, ROOT, SHAPES, Service, service_of_shape

INSIGHTS = BIN / "insights"
EXAMPLE = ROOT / "examples" / "calls-and-exits.json"
NO_ROWS = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["Ani"]}},
    "filters": {"CallEvent": {"Ani": {"$eq": "no such number"}}},
}
BAD_FIELD = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["Flow Id"]}},
}


@pytest.fixture(scope="module", params=SHAPES)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with service_of_shape(
        request,
        tmp_path_factory,
        "cli",
        extra_env={"EXPORT_PART_BYTES": "4000"},  # the example's result comes in several parts
    ) as running:
        yield running


@pytest.fixture(scope="module")
def acme(service: Service) -> str:
    return service.customer_create(DEMO_CUSTOMER_KEYS[0])


@pytest.fixture()
def worker(service: Service) -> None:
    """A live worker (started once, kept for the module's next tests)."""
    if not any(process.poll() is None for process in service.workers):
        service.workers_stop()
        service.worker_start(concurrency=1)


@pytest.fixture()
def no_worker(service: Service) -> None:
    """No worker: a submitted query stays Pending."""
    service.workers_stop()


def user_env(*, url: str | None, key: str | None, home: Path) -> dict[str, str]:
    """Only what a user's shell would give the CLI (no config file unless `home` has one)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    for name, value in (("INSIGHTS_URL", url), ("INSIGHTS_TOKEN", key)):
        if value is not None:
            env[name] = value
    return env


def insights(
    *args: str, url: str | None, key: str | None, home: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The console script, run to its end."""
    if not INSIGHTS.exists():
        pytest.fail(f"{INSIGHTS} is missing: `make install` installs it (pip install -e .)")
    return subprocess.run(
        [str(INSIGHTS), *args],
        env=user_env(url=url, key=key, home=home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout


class Cli:
    """The console script aimed at one service with one customer's key."""

    def __init__(self, service: Service, key: str, home: Path) -> None:
        self.service, self.key, self.home = service, key, home

    def __call__(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        done = insights(*args, url=self.service.base_url, key=self.key, home=self.home)
        _no_traceback(done)
        assert done.returncode == expect, (args, done.returncode, done.stdout, done.stderr)
        return done

    def api(self, method: str, path: str, body: Any = None) -> Any:
        response = self.service.request(method, f"/_rest/v4{path}", key=self.key, body=body)
        assert response.status < 300, response.body
        return response.json()

    def body(self, name: str, body: Any) -> str:
        (self.home / name).write_text(json.dumps(body))
        return name


@pytest.fixture()
def cli(service: Service, acme: str, tmp_path: Path) -> Cli:
    return Cli(service, acme, tmp_path)


def _parts(cli: Cli, guid: str) -> list[dict[str, Any]]:
    """The manifest's entries, as the API gives them."""
    return list(cli.api("GET", f"/dwh/Q/{guid}")["files"])


def _downloaded(cli: Cli, guid: str, part: int) -> bytes:
    response = cli.service.request("GET", f"/_rest/v4/dwh/Q/{guid}/download/{part}", key=cli.key)
    assert response.status == 200
    return response.body


def _check_files(cli: Cli, guid: str, directory: Path, printed: list[str]) -> list[dict[str, Any]]:
    """The directory holds exactly the result's parts, each the API's bytes with the manifest's sha256, and
    the CLI printed their paths."""
    parts = _parts(cli, guid)
    names = [entry["path"].rsplit("/", 1)[-1] for entry in parts]
    assert sorted(path.name for path in directory.iterdir()) == sorted(names)  # no .partial left
    assert printed == [str(Path(directory.name) / name) for name in names]
    for index, (entry, name) in enumerate(zip(parts, names, strict=True)):
        content = (directory / name).read_bytes()
        assert content == _downloaded(cli, guid, index)
        assert hashlib.sha256(content).hexdigest() == entry["sha256"]
        assert len(content) == entry["size"]
    return parts


def test_catalog_as_the_api_gives_it(cli: Cli) -> None:
    assert json.loads(cli("catalog", "--json").stdout) == cli.api("GET", "/dwh/Q")
    assert json.loads(cli("catalog", "--verbose", "--json").stdout) == cli.api("GET", "/dwh/Q?verbose=true")
    table = cli("catalog").stdout
    assert re.search(r"^CallEvent\s+.*\bAni\b.*\bDisconnectReason\b", table, re.MULTILINE), table
    verbose = cli("catalog", "--verbose").stdout
    assert re.search(r"^TimeStamp\s+TIMESTAMP\s+Date & Time\s+yes\s", verbose, re.MULTILINE), verbose


def test_the_key_and_url_can_come_from_config_toml(cli: Cli) -> None:
    config = cli.home / ".config" / "insights" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'url = "{cli.service.base_url}"\ntoken = "{cli.key}"\n')
    done = insights("catalog", "--json", url=None, key=None, home=cli.home)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == cli.api("GET", "/dwh/Q")


def test_query_waits_then_downloads_every_part_checked(cli: Cli, worker: None) -> None:
    done = cli("query", str(EXAMPLE), "--wait", "--download", "out")
    guid, *printed = done.stdout.splitlines()
    assert re.fullmatch(r"[0-9a-f]{32}", guid)
    parts = _check_files(cli, guid, cli.home / "out", printed)
    assert len(parts) > 1, "the example should come in several parts here (EXPORT_PART_BYTES)"
    state = cli.api("GET", f"/dwh/Q/{guid}/status")
    assert state["status"] == "Completed"
    rows = state["progress"]["rows"]
    assert rows == sum(entry["rows"] for entry in parts)
    # the progress line's last state, and what was fetched
    assert re.search(rf"query {guid} Completed .* {rows:,} rows ", done.stderr), done.stderr
    assert f"{len(parts)} part(s), {rows:,} rows" in done.stderr
    assert done.stderr.count("sha256 ok") == len(parts)


def test_a_download_cut_short_is_resumed_for_the_rest_only(cli: Cli, worker: None) -> None:
    guid = cli("query", str(EXAMPLE), "--download", "out").stdout.splitlines()[0]  # --download implies --wait
    parts = _parts(cli, guid)
    first = cli.home / "out" / parts[0]["path"].rsplit("/", 1)[-1]
    size = first.stat().st_size
    half = size // 2
    with first.open("r+b") as cut:
        cut.truncate(half)

    done = cli("download", guid, "out")
    _check_files(cli, guid, cli.home / "out", done.stdout.splitlines())
    assert f"{first.name}: fetched {size - half:,} bytes (resumed at {half:,} of {size:,}), sha256 ok" in (
        done.stderr
    )
    assert done.stderr.count("already complete, sha256 ok") == len(parts) - 1


def test_format_asks_for_the_results_file_format(cli: Cli, worker: None) -> None:
    done = cli("query", str(EXAMPLE), "--format", "ndjson", "--download", "out")
    guid, *printed = done.stdout.splitlines()
    _check_files(cli, guid, cli.home / "out", printed)
    assert cli.api("GET", f"/dwh/exports/{guid}")["output"]["format"] == "ndjson"
    assert all(path.endswith(".ndjson.gz") for path in printed)
    first = json.loads(gzip.decompress((cli.home / printed[0]).read_bytes()).splitlines()[0])
    assert set(first) >= {"TimeStamp", "SessionId"}


def test_status_and_ls_say_what_the_api_says(cli: Cli, worker: None) -> None:
    completed = cli("query", str(EXAMPLE), "--wait").stdout.strip()
    failed_run = cli("query", cli.body("none.json", NO_ROWS), "--wait", expect=2)
    failed = failed_run.stdout.strip()

    assert json.loads(cli("status", completed, "--json").stdout) == cli.api(
        "GET", f"/dwh/Q/{completed}/status"
    )
    table = cli("status", completed).stdout
    assert re.search(r"^status\s+Completed\s*$", table, re.MULTILINE), table
    failed_table = cli("status", failed, expect=2).stdout
    assert re.search(r"^message\s+The query returned empty values\s*$", failed_table, re.MULTILINE)

    listed = json.loads(cli("ls", "--all", "--json").stdout)
    every: list[dict[str, Any]] = []
    page: Any = cli.api("GET", "/dwh/exports?limit=2")
    while True:  # the API's own pages, followed by hand
        every += page["exports"]
        if not page["next"]:
            break
        page = cli.api("GET", page["next"].split("/_rest/v4", 1)[1])
    assert [e["id"] for e in listed] == [e["id"] for e in every] and len(every) > 2
    assert listed[:2] == [cli.api("GET", f"/dwh/exports/{guid}") for guid in (failed, completed)]
    assert [e["id"] for e in json.loads(cli("ls", "--limit", "1", "--json").stdout)] == [failed]
    only_completed = cli("ls", "--status", "Completed").stdout
    assert completed in only_completed and failed not in only_completed
    assert re.search(rf"^{completed}\s+Completed\s", only_completed, re.MULTILINE), only_completed


def test_a_failed_query_is_exit_2_with_the_services_message(cli: Cli, worker: None) -> None:
    done = cli("query", cli.body("none.json", NO_ROWS), "--wait", "--download", "out", expect=2)
    guid = done.stdout.strip()
    assert f"insights: query {guid} Failed: The query returned empty values" in done.stderr
    assert not (cli.home / "out").exists()
    assert "The query returned empty values" in cli("download", guid, "out", expect=2).stderr


def test_cancel_a_pending_query_then_waiting_ends_canceled(cli: Cli, no_worker: None) -> None:
    guid = cli("query", str(EXAMPLE)).stdout.strip()
    assert re.search(r"^status\s+Pending\s*$", cli("status", guid).stdout, re.MULTILINE)
    assert cli("cancel", guid).stdout == f"query {guid}: Canceled\n"
    assert cli.api("GET", f"/dwh/Q/{guid}/status")["status"] == "Canceled"
    assert re.search(r"^status\s+Canceled\s*$", cli("status", guid, expect=3).stdout, re.MULTILINE)
    assert cli("cancel", guid).stdout == f"query {guid}: Canceled\n"  # idempotent, as the API is
    assert "Canceled" in cli("download", guid, "out", expect=3).stderr

    # A query being waited for, canceled meanwhile (by the API, as another user would): the wait ends, exit 3.
    waiting = subprocess.Popen(
        [str(INSIGHTS), "query", str(EXAMPLE), "--wait"],
        env=user_env(url=cli.service.base_url, key=cli.key, home=cli.home),
        cwd=cli.home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiting.stdout is not None
        second = waiting.stdout.readline().strip()
        time.sleep(1)  # a few polls
        assert waiting.poll() is None, "still waiting: nothing runs the query"
        cli.api("DELETE", f"/dwh/Q/{second}")
        _, error = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == 3, error
    assert f"insights: query {second} Canceled" in error and "Traceback" not in error


def test_a_finished_query_cannot_be_canceled(cli: Cli, worker: None) -> None:
    guid = cli("query", cli.body("none.json", NO_ROWS), "--wait", expect=2).stdout.strip()
    message = cli.service.request("DELETE", f"/_rest/v4/dwh/Q/{guid}", key=cli.key).json()["message"]
    assert f"insights: {message} (HTTP 409)" in cli("cancel", guid, expect=1).stderr


def test_preview_shows_the_first_rows_as_the_api_does(cli: Cli) -> None:
    body = json.loads(EXAMPLE.read_text())
    asked = {key: value for key, value in body.items() if key != "description"} | {"limit": 5}
    expected = cli.api("POST", "/dwh/Q/preview", asked)
    assert json.loads(cli("preview", str(EXAMPLE), "--limit", "5", "--json").stdout) == expected
    assert len(expected["data"]) == 5
    table = cli("preview", str(EXAMPLE), "--limit", "5")
    assert all(field["name"] in table.stdout for field in expected["fields"])
    assert expected["data"][0]["SessionId"] in table.stdout
    assert table.stderr.strip() == "5 row(s)"


def test_a_bad_body_is_exit_1_with_the_services_message(cli: Cli) -> None:
    message = cli.service.request("POST", "/_rest/v4/dwh/Q", key=cli.key, body=BAD_FIELD).json()["message"]
    assert message == "Flow Id is not a valid field."
    done = cli("query", cli.body("bad.json", BAD_FIELD), expect=1)
    assert done.stderr == f"insights: {message} (HTTP 400)\n" and done.stdout == ""
    (cli.home / "broken.json").write_text('{"timestamp": ')
    assert "broken.json is not JSON" in cli("query", "broken.json", expect=1).stderr
    assert "Usage: insights" in cli("query", "--wiat", "broken.json", expect=1).stderr


def test_a_bad_key_is_exit_4(service: Service, tmp_path: Path) -> None:
    done = insights("catalog", url=service.base_url, key="ik_not_a_key", home=tmp_path)
    _no_traceback(done)
    assert done.returncode == 4
    assert done.stderr.startswith("insights: Unauthorized (HTTP 401; check the API key")


def test_a_closed_port_is_exit_5_naming_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = insights("status", "0" * 32, url=url, key="any", home=tmp_path)
    _no_traceback(done)
    assert done.returncode == 5
    assert done.stderr.startswith(f"insights: cannot reach the Insights service at {url}: ")
