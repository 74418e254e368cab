"""The benchmark sections of issues 3 and 6 run at a tiny size and print well-formed BENCH lines.

Speed is never judged here (`make bench` measures it); what is checked is that every section runs end to end
against the real pieces (DuckDB, gunicorn, wrk, Redis, Celery) and reports the figures it promises, with the
row counts it was asked for and no failed requests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest

from bench import bundle, export, formats, latency, polling
from bench.memory_probe import rss_mb
from bench.report import Report

LINE = re.compile(
    r"^BENCH (?P<name>\S+) (?P<value>\S+) (?P<unit>\S+)(?: ratio=(?P<ratio>\S+) vs (?P<anchor>.+))?$"
)

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:8000/_bench/bare/1
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.83ms    1.49ms  22.11ms   87.79%
    Req/Sec     1.17k    95.23     1.37k    72.00%
  Latency Distribution
     50%  650.00us
     75%    7.21ms
     90%    8.01ms
     99%    1.20s
  2334 requests in 1.00s, 4.21MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   2331.28
Transfer/sec:    430.40KB
"""


def _section(run: Callable[[Report], None], capsys: pytest.CaptureFixture[str]) -> dict[str, re.Match[str]]:
    """Run a section; every line it prints that starts with BENCH must be well formed. Figures by name."""
    run(Report())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("BENCH")]
    figures = {}
    for line in lines:
        match = LINE.match(line)
        assert match, f"malformed: {line!r}"
        assert math.isfinite(float(match["value"])), line
        if match["ratio"] is not None:
            assert float(match["ratio"]) > 0, line
        figures[match["name"]] = match
    assert len(figures) == len(lines), "a figure name was reported twice"
    return figures


def test_wrk_output_is_parsed_with_units_and_errors() -> None:
    result = polling.wrk_parse(WRK_OUTPUT)
    assert result.requests_per_second == 2331.28
    assert result.p50_ms == pytest.approx(0.65)
    assert result.p99_ms == pytest.approx(1200.0)
    assert result.requests == 2334
    assert result.errors == 3 + 1 + 5


def test_wrk_output_without_a_rate_is_an_error() -> None:
    with pytest.raises(ValueError, match="unexpected wrk output"):
        polling.wrk_parse("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 21)]
    assert latency.percentile(values, 0.95) == 19.0
    assert latency.percentile(values, 1.0) == 20.0
    assert latency.percentile([7.0], 0.95) == 7.0


def test_peak_rss_is_at_least_the_current_rss() -> None:
    assert rss_mb("VmHWM") >= rss_mb("VmRSS") > 0


def test_export_section(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BENCH_ROWS", "3000")
    monkeypatch.setenv("BENCH_MEMORY_ROWS", "1000,3000")
    monkeypatch.delenv("BENCH_EXPORT_WAREHOUSE", raising=False)
    figures = _section(export.run, capsys)
    assert float(figures["export_rows"]["value"]) == 3000
    assert float(figures["worker_rows[1000_rows]"]["value"]) == 1000
    assert float(figures["worker_rows[3000_rows]"]["value"]) == 3000
    for name in (
        "export_seconds[worker_path]",
        "export_seconds[duckdb_copy_gzip]",
        "worker_peak_rss[3000_rows]",
    ):
        assert figures[name]["ratio"] is not None, name
    for name in (
        "export_peak_rss[worker_path]",
        "export_peak_rss[duckdb_copy_csv]",
        "export_seconds[duckdb_copy_csv]",
    ):
        assert float(figures[name]["value"]) > 0, name


def test_formats_section(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    sizes = {
        "BENCH_ROWS": "3000",
        "BENCH_FORMATS_OPENPYXL_ROWS": "1000",
        "BENCH_FORMATS_MEMORY_ROWS": "1000,3000",
    }
    for variable, value in {**sizes, "BENCH_FORMATS_REPEATS": "1"}.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("BENCH_EXPORT_WAREHOUSE", raising=False)
    figures = _section(formats.run, capsys)
    assert float(figures["formats_rows"]["value"]) == 3000
    compared = [
        "parquet_seconds[worker_path]",
        "xlsx_seconds[openpyxl_write_only_1000_rows]",
        "xlsx_peak_rss[3000_rows]",
    ]
    assert [name for name in compared if figures[name]["ratio"] is None] == []
    sizes_written = [
        f"parquet_file_bytes[{run}]" for run in ("worker_path", "duckdb_copy", "duckdb_copy_sorted")
    ]
    assert all(
        float(figures[name]["value"]) > 0
        for name in [*sizes_written, "xlsx_file_bytes[worker_path_3000_rows]"]
    )


def test_bundle_section(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bundle, "PARTS", 3)
    monkeypatch.setattr(bundle, "PART_MB", 2)
    figures = _section(bundle.run, capsys)
    assert figures["bundle_zip_stream"]["ratio"] is not None
    assert float(figures["bundle_read_parts"]["value"]) > 0


def test_polling_section(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BENCH_POLL_SECONDS", "1")
    monkeypatch.setenv("BENCH_POLL_ROUNDS", "1")
    monkeypatch.setenv("BENCH_POLL_CPU_REQUESTS", "5")
    figures = _section(polling.run, capsys)
    assert figures["status_polling"]["unit"] == "req/s"
    assert figures["status_polling"]["ratio"] is not None
    assert float(figures["bare_pk_lookup"]["value"]) > 0
    # Every request answered 2xx: a 401 or 404 would be fast and measure nothing.
    assert float(figures["status_polling_errors"]["value"]) == 0
    assert float(figures["bare_pk_lookup_errors"]["value"]) == 0
    assert figures["status_polling_cpu"]["ratio"] is not None


def test_latency_section(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BENCH_LATENCY_RUNS", "2")
    monkeypatch.setenv("BENCH_LATENCY_WARMUP", "1")
    monkeypatch.setenv("BENCH_LATENCY_DB", "sqlite")
    figures = _section(latency.run, capsys)
    assert figures["post_to_completed_median"]["ratio"] is not None
    assert float(figures["post_to_completed_p95"]["value"]) >= float(
        figures["post_to_completed_median"]["value"]
    )
    for phase in latency.PHASES:
        assert f"post_to_completed_phase_median[{phase}]" in figures
