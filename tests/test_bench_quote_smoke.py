"""The benchmark sections of issue 16 (`quote`, `wait`) run at a tiny size and print well-formed BENCH lines.

Speed is never judged here (`python -m bench quote|wait` measures it): what is checked is that each section runs
end to end against the real pieces (gunicorn, DuckDB, Celery, Redis, PostgreSQL) and reports its figures."""

from __future__ import annotations

import pytest

from bench import quote, wait
from tests.test_bench_smoke import _section


def test_quote_section(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for variable, value in {"BENCH_ROWS": "3000", "BENCH_QUOTE_RUNS": "2", "BENCH_QUOTE_WARMUP": "1"}.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("BENCH_EXPORT_WAREHOUSE", raising=False)
    figures = _section(quote.run, capsys)
    assert float(figures["quote_window_rows[3000_rows]"]["value"]) == 3000
    assert 0 < float(figures["quote_window_rows[one_day]"]["value"]) <= 3000
    for window in ("3000_rows", "one_day"):
        assert figures[f"quote_dry_run_median[{window}]"]["ratio"] is not None
        for anchor in ("open_connection", "fresh_connection"):
            assert figures[f"quote_exact_count_median[{window},{anchor}]"]["ratio"] is not None
    assert figures["quote_http_floor_median"]["ratio"] is not None


def test_wait_section(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for variable, value in {"BENCH_WAIT_RUNS": "2", "BENCH_LATENCY_WARMUP": "1"}.items():
        monkeypatch.setenv(variable, value)
    figures = _section(wait.run, capsys)
    assert "?wait=5" in figures["wait_post_to_completed_median"]["anchor"]
    assert figures["poll_post_to_completed_median"]["ratio"] is not None
    for phase in ("queued", "run", "observed"):
        assert f"wait_phase_median[{phase}]" in figures and f"poll_phase_median[{phase}]" in figures
