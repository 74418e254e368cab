"""Faults of one query written by many workers (queries.slice_runner): real Celery workers running the slices
of a big export, real signals, the reaper run by a real beat.

A dead slice worker costs its slice only (the query keeps its attempt, the other slices their parts); a cancel
stops every slice and leaves nothing of them behind; the invariants of every fault test hold (invariants.py).
"""

from __future__ import annotations

import os
import re
import signal
import time
from typing import TYPE_CHECKING

import pytest

from tests.faults.invariants import SlotWatch, query_read
from tests.service import SHAPES

if TYPE_CHECKING:
    from tests.faults.conftest import Harness

pytestmark = pytest.mark.slow

# The wide query returns some 500,000 rows: four slices of about 125,000. INFO: the runs' lines are read.
SLICED = {"EXPORT_SPLIT_ROWS": "130000", "EXPORT_MAX_SLICES": "4", "LOG_LEVEL": "INFO"}


def _paused_slice(harness: Harness, timeout: float = 90) -> int:
    """The pid of the first pool process held at the failpoint `slice.written` (its slice written, not committed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for log in harness.service.var_dir.glob("worker-*.log"):
            found = re.search(
                r"failpoint slice\.written reached in process (\d+)", log.read_text(errors="replace")
            )
            if found:
                return int(found.group(1))
        time.sleep(0.05)
    raise AssertionError(f"no slice reached the failpoint slice.written within {timeout}s")


def _hidden_files(harness: Harness) -> list[str]:
    return sorted(
        p.name for p in harness.export_dir.rglob(".*") if p.is_file() and not p.name.endswith(".partial")
    )


@pytest.mark.parametrize("harness", SHAPES, indirect=True)
def test_a_slice_worker_killed_mid_slice_is_run_again_alone(harness: Harness) -> None:
    key = harness.customer()
    # Each slice pauses once written (a failpoint): the first paused one is killed however fast the slices are.
    paused = {**SLICED, "INSIGHTS_FAILPOINTS": "slice.written=pause:3"}
    for _ in range(2):
        harness.service.worker_start(concurrency=1, extra_env=paused)
    with SlotWatch(harness.database_url) as slots:
        guid = harness.submit(key)
        os.kill(_paused_slice(harness), signal.SIGKILL)
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
