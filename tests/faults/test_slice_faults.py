"""Faults of one query written by many workers (queries.slice_runner): real Celery workers running the slices
of a big export, real signals, the reaper run by a real beat.

A dead slice worker costs its slice only (the query keeps its attempt, the other slices their parts); a cancel
stops every slice and leaves nothing of them behind; the invariants of every fault test hold (invariants.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.faults.invariants import SlotWatch, query_read
from tests.service import SHAPES, process_children

if TYPE_CHECKING:
    from tests.faults.conftest import Harness

pytestmark = pytest.mark.slow

# The wide query returns some 500,000 rows: four slices of about 125,000. INFO: the runs' lines are read.
SLICED = {"EXPORT_SPLIT_ROWS": "130000", "EXPORT_MAX_SLICES": "4", "LOG_LEVEL": "INFO"}


def _slice_holder(harness: Harness, guid: str, workers: list[int]) -> int:
    """A pool process with files open in a directory of one of the query's slices."""
    work = harness.service.var_dir / "work"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for parent in workers:
            for child in process_children(parent):
                if _writes_a_slice(child, str(work), guid):
                    return child
        time.sleep(0.02)
    raise AssertionError(f"no worker has a slice of {guid} open")


def _writes_a_slice(pid: int, work: str, guid: str) -> bool:
    with contextlib.suppress(OSError):
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(descriptor)
                if target.startswith(f"{work}/{guid}-1-s"):
                    return True
    return False


def _hidden_files(harness: Harness) -> list[str]:
    return sorted(
        p.name for p in harness.export_dir.rglob(".*") if p.is_file() and not p.name.endswith(".partial")
    )


@pytest.mark.parametrize("harness", SHAPES, indirect=True)
def test_a_slice_worker_killed_mid_slice_is_run_again_alone(harness: Harness) -> None:
    key = harness.customer()
    workers = [harness.service.worker_start(concurrency=1, extra_env=SLICED) for _ in range(2)]
    with SlotWatch(harness.database_url) as slots:
        guid = harness.submit(key)
        harness.wait_mid_export(guid, key)
        os.kill(_slice_holder(harness, guid, [w.pid for w in workers]), signal.SIGKILL)
        killed_at = time.monotonic()
        verdict = harness.verdict([guid], since=killed_at)
    slots.check()
    row = verdict.of(guid)
    assert (row.status, row.attempts) == ("Completed", 1), row  # the query was not run again: one slice was
    assert harness.worker_log_has("cut into 4 slices")
    assert harness.worker_log_has(" run 2 started"), "the killed slice must have been run again"
    reference = query_read(harness.database_url, guid)
    assert reference.progress_rows == sum(f["rows"] for f in reference.files) > 400_000
    harness.report(
        f"a slice's pool process SIGKILLed ({harness.service.shape.name})",
        "slice lease expired, the reaper sent that slice again; Completed on attempt 1",
        verdict,
    )


@pytest.mark.parametrize("harness", SHAPES, indirect=True)
def test_a_cancel_stops_every_slice_and_leaves_nothing_of_them(harness: Harness) -> None:
    key = harness.customer()
    # Each slice pauses once written (a failpoint), so the cancel lands mid-export however fast the slices are.
    paused = {**SLICED, "INSIGHTS_FAILPOINTS": "slice.written=pause:5"}
    for _ in range(2):
        harness.service.worker_start(concurrency=1, extra_env=paused)
    with SlotWatch(harness.database_url) as slots:
        guid = harness.submit(key)
        harness.wait_mid_export(guid, key)
        canceled = harness.service.request("DELETE", f"/_rest/v4/dwh/Q/{guid}", key=key)
        assert canceled.status in (200, 202), canceled.body
        verdict = harness.verdict([guid], since=time.monotonic())  # the usual bound: a loaded CI machine
    slots.check()
    assert verdict.of(guid).status == "Canceled"
    # Slices done before the cancel had committed their parts under hidden names: the reaper removes them.
    deadline = time.monotonic() + 60
    while _hidden_files(harness) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _hidden_files(harness) == []
    harness.scratch_removed_wait(guid)  # every slice's scratch directory too
