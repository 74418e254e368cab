"""The benchmark warehouse (bench.export) appends copies of its rows by SQL inside DuckDB, outside the engine's
`load`: its hourly event counts must still end exactly in step with the rows, and a warehouse kept from before
the counts existed (BENCH_EXPORT_WAREHOUSE) gets them on its next run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pytest

from bench import export
from bench.report import Report
from exports.engines import engine_from_url
from exports.engines.counts import COUNTS_TABLE, STATE_TABLE


def _counts(path: Path) -> tuple[Counter[tuple[object, ...]], Counter[tuple[object, ...]]]:
    """The stored counts, and the counts of the rows themselves (hours by Python's calendar)."""
    with duckdb.connect(str(path), read_only=True) as conn:
        stored = conn.execute(
            f'SELECT "CustomerId", "EventName", "Hour", "Rows" FROM "{COUNTS_TABLE}"'
        ).fetchall()
        rows = conn.execute('SELECT "CustomerId", "EventName", "TimeStamp" FROM "events"').fetchall()
    expected: Counter[tuple[object, ...]] = Counter(
        (customer, event, stamp.replace(minute=0, second=0, microsecond=0)) for customer, event, stamp in rows
    )
    return Counter({(customer, event, hour): n for customer, event, hour, n in stored}), expected


def test_the_bench_warehouse_ends_with_exact_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "BASE_SESSIONS", 300)  # three copies made by SQL after the loaded base
    path = tmp_path / "warehouse.duckdb"
    total = export.warehouse_build(path, event_rows=900)
    stored, expected = _counts(path)
    assert stored == expected and sum(stored.values()) == total
    assert len({hour for _, _, hour in stored}) > 24  # the copies' hours, days apart, are there too
    reader = engine_from_url(f"duckdb:///{path}")
    try:
        assert reader.event_counts_ready()
    finally:
        reader.close()


def test_a_kept_warehouse_without_counts_gets_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "BASE_SESSIONS", 300)
    path = tmp_path / "kept.duckdb"
    export.warehouse_build(path, event_rows=600)
    with duckdb.connect(str(path)) as conn:  # as built before the counts existed
        conn.execute(f'DROP TABLE "{COUNTS_TABLE}"')
        conn.execute(f'DROP TABLE "{STATE_TABLE}"')
    monkeypatch.setenv("BENCH_EXPORT_WAREHOUSE", str(path))
    assert export._warehouse(tmp_path, event_rows=600, report=Report()) == path
    stored, expected = _counts(path)
    assert stored == expected and stored
