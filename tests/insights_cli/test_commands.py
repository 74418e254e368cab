"""The command line itself, in process: usage mistakes are exit 1 (click's own code is 2), every error is one
line on stderr, and --format is the body's output format."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from insights_cli import commands
from insights_cli.commands import body_with_format, run
from insights_cli.errors import EXIT_AUTH, EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError
from tests.insights_cli.test_client import client_for

GUID = "e" * 32


@pytest.fixture(autouse=True)
def nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No configuration from the machine running the tests: no variables, an empty config directory, and a
    service URL where nothing listens (a request would be exit 5, which these tests never expect)."""
    monkeypatch.delenv("INSIGHTS_TOKEN", raising=False)
    monkeypatch.setenv("INSIGHTS_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["status"],
        ["status", "not-a-guid"],
        ["status", GUID.upper()],
        ["ls", "--limit", "0"],
        ["preview", "body.json", "--limit", "10001"],
        ["query", "--no-such-option", "body.json"],
        ["catalog", "extra"],
    ],
)
def test_usage_mistakes_are_exit_1(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(args) == EXIT_USAGE
    error = capsys.readouterr().err
    assert "Usage: insights" in error and "Error:" in error and "Traceback" not in error


def test_help_is_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Exit codes:" in out and "INSIGHTS_TOKEN" in out
    assert run(["query", "--help"]) == EXIT_OK
    assert "output.format" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "body.json is not JSON: Expecting property name"),
        ('{"a": 1, "a": 2}', "body.json is not JSON: a key appears twice in one object: ['a', 'a']"),
        (None, "cannot read body.json"),
    ],
)
def test_a_body_that_is_not_json_is_exit_1_before_any_request(
    text: str | None,
    words: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    if text is not None:
        (tmp_path / "body.json").write_text(text)
    assert run(["--token", "k", "query", "body.json"]) == EXIT_USAGE
    error = capsys.readouterr().err
    assert error.startswith("insights: ") and words in error and error.count("\n") == 1


def test_no_api_key_is_exit_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["catalog"]) == EXIT_AUTH
    assert "insights: no API key: set INSIGHTS_TOKEN" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(self: commands.Options) -> None:
        raise KeyError("files")

    monkeypatch.setattr(commands.Options, "client", broken)
    assert run(["--token", "k", "status", GUID]) == EXIT_USAGE
    assert capsys.readouterr().err == "insights: unexpected error: KeyError: 'files'\n"


def test_format_sets_the_bodys_output_format_and_keeps_its_other_output_keys() -> None:
    body = {"timestamp": {}, "output": {"format": "csv", "compression": "none"}}
    assert body_with_format(body, "ndjson") == {
        "timestamp": {},
        "output": {"format": "ndjson", "compression": "none"},
    }
    assert body_with_format({"data": {}}, "xlsx") == {"data": {}, "output": {"format": "xlsx"}}
    assert body == {
        "timestamp": {},
        "output": {"format": "csv", "compression": "none"},
    }  # not changed in place
    for unusable in ([1, 2], {"output": "csv"}):
        with pytest.raises(CliError):
            body_with_format(unusable, "csv")


def test_the_body_can_come_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"a": 1})))
    assert commands.body_read("-") == {"a": 1}


class WaitingService:
    """POST /dwh/Q?wait=N answers with the status the query has then; GET .../status answers `later` in turn."""

    def __init__(self, posted: str, *later: str) -> None:
        self.posted, self.later = posted, list(later)
        self.requests: list[str] = []

    def state(self, status: str) -> dict[str, object]:
        failed = {"messages": ["The query returned empty values"]} if status == "Failed" else {}
        return {"guid": GUID, "status": status, "progress": {"rows": 7, "bytes": 70}, **failed}

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}?{request.url.query.decode()}")
        if request.method == "POST":
            return httpx.Response(201, json={"id": GUID, "status": self.state(self.posted)})
        return httpx.Response(200, json=self.state(self.later.pop(0)))


@pytest.fixture()
def waiting_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., WaitingService]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "body.json").write_text(json.dumps({"data": {"CallEvent": {"fields": ["Ani"]}}}))

    def serve(posted: str, *later: str) -> WaitingService:
        service = WaitingService(posted, *later)
        monkeypatch.setattr(commands.Options, "client", lambda options: client_for(service.handler))
        return service

    return serve


def test_query_wait_takes_the_servers_wait_and_polls_no_more(
    waiting_service: Callable[..., WaitingService], capsys: pytest.CaptureFixture[str]
) -> None:
    service = waiting_service("Completed")
    assert run(["--token", "k", "query", "body.json", "--wait"]) == EXIT_OK
    assert capsys.readouterr().out == f"{GUID}\n"
    assert service.requests == ["POST /_rest/v4/dwh/Q?wait=5"]


def test_query_wait_polls_a_query_still_pending_and_exits_with_its_end(
    waiting_service: Callable[..., WaitingService], capsys: pytest.CaptureFixture[str]
) -> None:
    service = waiting_service("Pending", "Failed")
    assert run(["--token", "k", "query", "body.json", "--wait"]) == EXIT_FAILED
    captured = capsys.readouterr()
    assert captured.out == f"{GUID}\n"
    assert f"insights: query {GUID} Failed: The query returned empty values" in captured.err
    assert service.requests == ["POST /_rest/v4/dwh/Q?wait=5", f"GET /_rest/v4/dwh/Q/{GUID}/status?"]


def test_query_without_wait_does_not_wait(
    waiting_service: Callable[..., WaitingService], capsys: pytest.CaptureFixture[str]
) -> None:
    service = waiting_service("Pending")
    assert run(["--token", "k", "query", "body.json"]) == EXIT_OK
    assert capsys.readouterr().out == f"{GUID}\n" and service.requests == ["POST /_rest/v4/dwh/Q?"]
