"""The benchmark sections of issues 3, 6 and 15 run at a tiny size and print well-formed BENCH lines.

Speed is never judged here (`make bench` measures it); what is checked is that every section runs end to end
against the real pieces (DuckDB, gunicorn, wrk, Redis, Celery) and reports the figures it promises, with the
row counts it was asked for and no failed requests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import bundle, export, formats, latency, polling, pruning
from bench.memory_probe import probe_run, rss_mb
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
    monkeypatch.setenv("BENCH_EXPORT_REPEATS", "1")
    monkeypatch.delenv("BENCH_EXPORT_WAREHOUSE", raising=False)
    figures = _section(export.run, capsys)
    assert float(figures["export_rows"]["value"]) == 3000
    assert float(figures["worker_rows[1000_rows]"]["value"]) == 1000
    assert float(figures["worker_rows[3000_rows]"]["value"]) == 3000
    for name in (
        "export_seconds[worker_path]",
        "export_seconds[worker_path_sorted]",
        "export_seconds[duckdb_copy_gzip]",
        "export_cpu_seconds[worker_path]",
        "export_cpu_seconds[worker_path_sorted]",
        "worker_peak_rss[3000_rows]",
    ):
        assert figures[name]["ratio"] is not None, name
    # Each worker path is held against the COPY doing its work: unsorted for the in-order scan.
    assert "without ORDER BY" in figures["export_seconds[worker_path]"]["anchor"]
    assert "as compiled" in figures["export_seconds[worker_path_sorted]"]["anchor"]
    runs = ("worker_path", "worker_path_sorted", "duckdb_copy_csv", "duckdb_copy_csv_unsorted")
    for name in [f"export_peak_rss[{run}]" for run in runs] + [
        "export_seconds[duckdb_copy_csv]",
        "export_seconds[duckdb_copy_csv_unsorted]",
        "export_cpu_seconds[duckdb_copy_csv_unsorted]",
    ]:
        assert float(figures[name]["value"]) > 0, name


def test_unsorted_copy_anchor_writes_the_sorted_copy_bytes(tmp_path: Path) -> None:
    """The anchor without ORDER BY does the same query's work: on this in-order warehouse its CSV is the
    sorted COPY's, byte for byte (same rows, columns and order), and the worker's row count."""
    warehouse = tmp_path / "warehouse.duckdb"
    export.warehouse_build(warehouse, event_rows=2000)
    body = export.export_query_body(export.window_end(warehouse, 1500))
    written: dict[str, bytes] = {}
    for mode in ("copy_csv", "copy_csv_unsorted", "worker"):
        out = tmp_path / mode
        out.mkdir()
        measurement = probe_run(
            mode=mode,
            warehouse=warehouse,
            body=body,
            customer=export.CUSTOMER,
            out=out,
            memory_limit="256MB",
            part_bytes=1 << 20,
        )
        assert measurement.rows == 1500, mode
        if mode != "worker":  # the worker writes gzip parts; its row count is what it is held to here
            written[mode] = (out / "copy.csv").read_bytes()
    assert written["copy_csv_unsorted"] == written["copy_csv"]
    assert written["copy_csv"].count(b"\n") == 1 + 1500  # the header and the rows


def test_pruning_section(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BENCH_WAREHOUSE_ROWS", "50000")
    monkeypatch.setenv("BENCH_PRUNING_ROUNDS", "3")
    monkeypatch.setenv("BENCH_PRUNING_BATCH", "2")
    figures = _section(pruning.run, capsys)
    alone, shared = (float(figures[f"warehouse_rows[{side}]"]["value"]) for side in pruning.SIDES)
    assert 0 < alone * 20 < shared  # one customer of fifty
    assert float(figures["one_day_query_rows"]["value"]) > 0  # the same count from both, or the run fails
    for side in pruning.SIDES:
        scanned = float(figures[f"row_groups_scanned[{side}]"]["value"])
        assert 1 <= scanned <= float(figures[f"row_groups_total[{side}]"]["value"])
    assert "3 paired rounds of 2" in figures["one_day_query[50_customers]"]["anchor"]
    assert figures["one_day_query_best[50_customers]"]["ratio"] is not None
    assert float(figures["one_day_query_ratio[q1]"]["value"]) <= float(
        figures["one_day_query_ratio[q3]"]["value"]
    )


def test_paired_rounds_ratio_is_the_median_of_each_rounds_ratio() -> None:
    paired = pruning.Paired(alone=[1.0, 2.0, 4.0, 1.0, 1.0], shared=[1.0, 2.2, 4.8, 1.3, 2.0])
    assert paired.ratios == pytest.approx([1.0, 1.1, 1.2, 1.3, 2.0])
    assert paired.ratio_quartiles() == pytest.approx((1.1, 1.2, 1.3))


def test_pruning_sizes_need_two_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_PRUNING_ROUNDS", "1")
    with pytest.raises(ValueError, match="at least 2"):
        pruning.run(Report())


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
