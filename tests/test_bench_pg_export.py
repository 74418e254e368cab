"""The `pg_export` benchmark section (issue 15) at a tiny size: it runs end to end against a real PostgreSQL and
prints the figures it promises, each read returning every row loaded. Speed is never judged here."""

from __future__ import annotations

import re

import pytest

from bench import pg_export
from bench.report import Report

LINE = re.compile(
    r"^BENCH (?P<name>\S+) (?P<value>\S+) (?P<unit>\S+)(?: ratio=(?P<ratio>\S+) vs (?P<anchor>.+))?$"
)


def test_pg_export_section(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BENCH_ROWS", "3000")
    monkeypatch.setenv("BENCH_PG_REPEATS", "2")
    pg_export.run(Report())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("BENCH")]
    figures = {}
    for line in lines:
        match = LINE.match(line)
        assert match, f"malformed: {line!r}"
        figures[match["name"]] = match
    assert len(figures) == len(lines), "a figure name was reported twice"
    assert float(figures["pg_export_rows"]["value"]) == 3000  # and every read returned them, or run() raises
    assert float(figures["pg_export_columns"]["value"]) == 42  # every field of every event
    for name in ("engine_adbc", "engine_before_psycopg_rows"):
        figure = figures[f"pg_export_seconds[{name}]"]
        assert float(figure["ratio"]) > 0 and "COPY (same query) TO STDOUT (FORMAT csv)" in figure["anchor"]
    assert "goal <= 1.3" in figures["pg_export_seconds[engine_adbc]"]["anchor"]


def test_the_query_asks_for_every_field_of_every_event() -> None:
    body = pg_export.query_body()
    assert set(body["data"]) == {"ApplicationExitEvent", "DtmfEvent", "CallEvent", "MsgEvent"}
    assert all(
        "TimeStamp" in event["fields"] and "SessionId" in event["fields"] for event in body["data"].values()
    )


def test_sizes_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_PG_REPEATS", "0")
    with pytest.raises(ValueError, match="positive"):
        pg_export.run(Report())
