"""Workers dying or freezing mid-export: real Celery workers, real signals, the reaper run by a real beat.

Each test injects one fault while a query is writing its parts, then waits for the invariants (see
`invariants.py`): the query ends (I1), no slot leaks (I2), what is published is complete (I3) and is the
result of one attempt only (I4).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from tests.faults.invariants import SlotWatch, query_read
from tests.service import SHAPES, process_children

if TYPE_CHECKING:
    from tests.faults.conftest import Harness

pytestmark = pytest.mark.slow

GAVE_UP = "The query did not finish after 3 attempts; it has been logged for review."


@pytest.mark.parametrize("harness", SHAPES, indirect=True)
def test_pool_child_killed_mid_export_is_run_again(harness: Harness) -> None:
    """SIGKILL of the pool process running the query: Celery replaces the process and hands the message
    back (acks_late, reject_on_worker_lost); the lease still held makes that delivery a no-op, and once it
    expires the reaper enqueues the query again, which a new attempt completes."""
    key = harness.customer()
    worker = harness.service.worker_start(concurrency=1)
    with SlotWatch(harness.database_url) as slots:
        guid = harness.submit(key)
        harness.wait_mid_export(guid, key)
        (child,) = process_children(worker.pid)
        os.kill(child, signal.SIGKILL)
        killed_at = time.monotonic()
        verdict = harness.verdict([guid], since=killed_at)
    slots.check()
    row = verdict.of(guid)
    assert worker.poll() is None, "the worker's main process must survive the loss of a pool process"
    assert (row.status, row.messages) in [("Completed", []), ("Failed", [GAVE_UP])], row
    assert row.attempts >= 2, row
    harness.report(
        f"pool child SIGKILLed mid-export ({harness.service.shape.name})",
        f"lease expired, reaper requeued; {row.status} on attempt {row.attempts}",
        verdict,
    )


@pytest.mark.parametrize("harness", SHAPES, indirect=True)
def test_whole_worker_killed_mid_export_is_run_by_a_new_worker(harness: Harness) -> None:
    """SIGKILL of the worker's main process and its pool: nobody hands the message back (it stays unacked
    in Redis until the visibility timeout), so the reaper enqueues the query again once its lease expires,
    and the worker started afterwards completes it."""
    key = harness.customer()
    first = harness.service.worker_start(concurrency=1)
    with SlotWatch(harness.database_url) as slots:
        guid = harness.submit(key)
        harness.wait_mid_export(guid, key)
        harness.signal_worker(first.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        first.wait(timeout=10)
        harness.service.worker_start(concurrency=1)
        verdict = harness.verdict([guid], since=killed_at)
    slots.check()
    row = verdict.of(guid)
    assert (row.status, row.messages) in [("Completed", []), ("Failed", [GAVE_UP])], row
    assert row.attempts >= 2, row
    harness.report(
        f"whole worker SIGKILLed mid-export, new worker started ({harness.service.shape.name})",
        f"lease expired, reaper requeued; {row.status} on attempt {row.attempts}",
        verdict,
    )


def test_worker_frozen_past_its_lease_does_not_publish(harness: Harness) -> None:
    """SIGSTOP of the worker holding the query, past its lease: the reaper enqueues it again and the other
    worker takes it with attempt 2. Continued while attempt 2 runs, the stale holder finds its lease gone at
    its next heartbeat, stops and publishes nothing: one manifest, the parts of attempt 2 only."""
    key = harness.customer()
    workers = [harness.service.worker_start(concurrency=1) for _ in range(2)]
    with SlotWatch(harness.database_url) as slots:
        guid = harness.submit(key)
        harness.wait_mid_export(guid, key)
        frozen = harness.holder(guid, 1, workers)
        harness.signal_worker(frozen, signal.SIGSTOP)
        frozen_at = time.monotonic()
        _wait_for(lambda: query_read(harness.database_url, guid).attempts >= 2, timeout=60)
        harness.signal_worker(frozen, signal.SIGCONT)
        # The stale attempt is over once its runner has removed its scratch directory.
        _wait_for(lambda: not harness.work_dir(guid, 1).exists(), timeout=60)
        verdict = harness.verdict([guid], since=frozen_at)
    slots.check()
    row = verdict.of(guid)
    assert (row.status, row.attempts) == ("Completed", 2), row
    assert verdict.exports.manifests == 1
    harness.report(
        "worker SIGSTOPped past its lease, SIGCONTed during attempt 2",
        "other worker took over (attempt 2); stale holder lost its lease at the next heartbeat, "
        "published nothing; Completed once",
        verdict,
    )


def test_delivery_retry_longer_than_the_lease_keeps_the_query(harness: Harness) -> None:
    """The destination refuses the first delivery try (a file stands where the customer's directory goes);
    the worker backs off longer than the lease, then delivers. A live worker keeps its lease however long
    it takes to deliver: the query completes once, on attempt 1, with nobody else running it."""
    key = harness.customer()
    blocker = harness.export_dir / "reports" / harness.big_customer
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"not a directory")
    # Well past QUERY_LEASE_SECONDS + REAPER_INTERVAL_SECONDS, so the reaper gets there first even under load.
    slow_retry = {"DELIVERY_BACKOFF_SECONDS": "8"}
    for _ in range(2):
        harness.service.worker_start(concurrency=1, extra_env=slow_retry)
    with SlotWatch(harness.database_url) as slots:
        guid = harness.submit(key)
        # The worker counts a try before making it: its log says when the first one has failed.
        _wait_for(lambda: harness.worker_log_has(f"query {guid}: delivery try 1 failed"), timeout=60)
        blocker.unlink()
        fixed_at = time.monotonic()
        verdict = harness.verdict([guid], since=fixed_at)
    slots.check()
    row = verdict.of(guid)
    assert (row.status, row.attempts) == ("Completed", 1), row
    harness.report(
        "first delivery try refused, retried after a backoff longer than the lease",
        f"{row.status} on attempt {row.attempts}",
        verdict,
    )


def test_worker_frozen_mid_publish_does_not_clobber_the_result(harness: Harness) -> None:
    """SIGSTOP of the worker while it publishes (many small parts: the publish takes seconds). Attempt 2
    completes on the other worker; when the frozen one is continued it must not touch the published result:
    the manifest and parts of attempt 2 stay, nothing of attempt 1 remains under a final name."""
    key = harness.customer()
    many_parts = {"EXPORT_PART_BYTES": "60000"}
    workers = [harness.service.worker_start(concurrency=1, extra_env=many_parts) for _ in range(2)]
    with SlotWatch(harness.database_url) as slots:
        guid = harness.submit(key)
        harness.wait_mid_export(guid, key)
        frozen = harness.holder(guid, 1, workers)
        _wait_for(lambda: query_read(harness.database_url, guid).delivery_attempts >= 1, timeout=60)
        harness.signal_worker(frozen, signal.SIGSTOP)
        frozen_at = time.monotonic()
        _wait_for(lambda: query_read(harness.database_url, guid).status != "Pending", timeout=90)
        harness.signal_worker(frozen, signal.SIGCONT)
        _wait_for(lambda: not harness.work_dir(guid, 1).exists(), timeout=60)
        verdict = harness.verdict([guid], since=frozen_at)
    slots.check()
    row = verdict.of(guid)
    assert (row.status, row.attempts) == ("Completed", 2), row
    harness.report(
        "worker SIGSTOPped mid-publish, SIGCONTed after attempt 2 completed",
        f"{row.status} on attempt {row.attempts}; stale attempt published nothing",
        verdict,
    )


def _wait_for(condition: Callable[[], bool], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        time.sleep(0.05)


@pytest.mark.parametrize("harness", SHAPES, indirect=True)
def test_worker_killed_between_publishing_and_completed_leaves_one_result(harness: Harness) -> None:
    """SIGKILL once every file has its final name but before `Completed` is recorded (a failpoint holds the
    worker exactly there). The publication journal tells the reaper what was placed: it finds it complete and
    completes the query with those files. One result, nothing orphaned, the query not run a second time."""
    key = harness.customer()
    held = {"INSIGHTS_FAILPOINTS": "publish.committed=pause:120"}
    worker = harness.service.worker_start(concurrency=1, extra_env=held)
    with SlotWatch(harness.database_url) as slots:
        guid = harness.submit(key)
        _wait_for(lambda: harness.worker_log_has("failpoint publish.committed reached"), timeout=90)
        assert (harness.export_dir / f"reports/{harness.big_customer}/{guid}_manifest.json").is_file()
        harness.signal_worker(worker.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        worker.wait(timeout=10)
        harness.service.worker_start(concurrency=1)
        verdict = harness.verdict([guid], since=killed_at)
    slots.check()
    row = verdict.of(guid)
    assert (row.status, row.attempts) == ("Completed", 1), row
    assert verdict.exports.manifests == 1
    published = list((harness.export_dir / "reports" / harness.big_customer).glob(f"{guid}_QueryExport_*"))
    assert sorted(p.name for p in published) == sorted(f["path"].rsplit("/", 1)[-1] for f in row.files)
    harness.report(
        f"worker SIGKILLed after its renames, before Completed ({harness.service.shape.name})",
        "the reaper found the journaled publication complete: Completed with attempt 1's files, "
        "nothing published twice, not run again",
        verdict,
    )
