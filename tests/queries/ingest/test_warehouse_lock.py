"""A loader and a DuckDB warehouse file another process holds (a worker's or a web process's warm engine): the
loader waits for the file up to WAREHOUSE_LOCK_WAIT_SECONDS, then says it is locked."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from exports.errors import WarehouseLocked
from queries.ingest.warehouse import warehouse_has_events, warehouse_loader

HOLD = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1], read_only=True)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
conn.close()
print("released", flush=True)
"""


@contextmanager
def held_by_another_process(path: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the file read-only (as a warm engine does) for `seconds`."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def warehouse_file(tmp_path: Path, settings) -> Path:
    path = tmp_path / "warehouse.duckdb"
    warehouse_loader(f"duckdb:///{path}").close()  # the file and its events table exist
    return path


def test_a_loader_waits_for_the_file_another_process_holds(warehouse_file: Path, settings, caplog) -> None:
    settings.WAREHOUSE_LOCK_WAIT_SECONDS = 60
    caplog.set_level("INFO", logger="queries.ingest.warehouse")
    with held_by_another_process(warehouse_file, seconds=1.5) as holder:
        engine = warehouse_loader(f"duckdb:///{warehouse_file}")
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "released"  # it opened once the holder let go
            assert not warehouse_has_events(engine)
        finally:
            engine.close()
    # Said once, not at every retry.
    assert [r.getMessage() for r in caplog.records] == [
        "the warehouse file is held by another process: waiting up to 60 s for it"
    ]


def test_a_loader_says_the_file_is_locked_once_its_wait_is_over(warehouse_file: Path, settings) -> None:
    settings.WAREHOUSE_LOCK_WAIT_SECONDS = 0
    with held_by_another_process(warehouse_file, seconds=60), pytest.raises(WarehouseLocked) as raised:
        warehouse_loader(f"duckdb:///{warehouse_file}")
    assert str(raised.value) == "the warehouse file is locked by another process"
