"""The command line itself, in process: usage mistakes are exit 1 (click's own code is 2), every error is one
line on stderr, and --format is the body's output format."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from insights_cli import commands
from insights_cli.commands import body_with_format, run
from insights_cli.errors import EXIT_AUTH, EXIT_OK, EXIT_USAGE, CliError

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
    [("{", "body.json is not JSON: Expecting property name"), (None, "cannot read body.json")],
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
