"""Faults of the servers around the workers: the broker losing its messages, the warehouse dropping the
query's connection, the scratch disk filling up. Each test checks the invariants I1-I4 (see invariants.py).

A killed SFTP session mid-upload is covered by tests/exports/test_sftp_faults.py (storage level).
"""

from __future__ import annotations

import contextlib
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from tests.faults.invariants import SlotWatch, queries_read, query_read
from tests.servers import _stop, free_port

if TYPE_CHECKING:
    from tests.faults.conftest import Harness

pytestmark = pytest.mark.slow


def test_redis_restarted_empty_mid_run_loses_no_query(harness: Harness) -> None:
    """`SHUTDOWN NOSAVE` while one query exports and three wait in the queue, then Redis again on the same
    port, empty. The running query finishes; the queued ones, whose messages are gone, are sent again by the
    reaper's next tick: it sees its mark in the broker gone, so it does not wait QUERY_REQUEUE_AFTER_SECONDS
    (left at its default, 300 s, here)."""
    key = harness.customer(max_concurrent=4)
    # The running query pauses 5 s once its files are placed (a failpoint), so it still holds the only worker
    # process while the three are queued and Redis goes, however fast its export is.
    harness.service.worker_start(
        concurrency=1, extra_env={"INSIGHTS_FAILPOINTS": "publish.committed=pause:5"}
    )
    with SlotWatch(harness.database_url) as slots:
        running = harness.submit(key)
        harness.wait_mid_export(running, key)
        queued = [harness.submit(key, harness.small_query) for _ in range(3)]
        assert all(query_read(harness.database_url, guid).attempts == 0 for guid in queued)
        lost_at = time.monotonic()
        harness.broker.shutdown_nosave()
        time.sleep(1)  # the worker and beat see the broker gone, and reconnect once it is back
        harness.broker.start()
        verdict = harness.verdict([running, *queued], since=lost_at)
    slots.check()
    assert [verdict.of(guid).status for guid in [running, *queued]] == ["Completed"] * 4
    assert verdict.of(running).attempts == 1, "the running query must finish on its first attempt"
    assert verdict.seconds < 60, "recovered by noticing the lost messages, not by waiting 300 s"
    harness.report(
        "Redis SHUTDOWN NOSAVE mid-run, restarted empty on the same port",
        f"running query finished on attempt 1; the {len(queued)} queued queries (messages lost) were sent "
        "again at the reaper's next tick (broker mark gone); all Completed",
        verdict,
    )


def test_post_while_the_broker_is_down_is_accepted(harness: Harness) -> None:
    """With Redis down, a POST is stored and answered 201 (the reaper enqueues it once the broker is back),
    or refused cleanly with nothing stored: never a 500 that leaves an unknown query holding a slot."""
    key = harness.customer(max_concurrent=1)
    harness.service.worker_start(concurrency=1)
    down_at = time.monotonic()
    harness.broker.shutdown_nosave()
    response = harness.service.request("POST", "/_rest/v4/dwh/Q", key=key, body=harness.small_query)
    stored = list(queries_read(harness.database_url))
    harness.broker.start()
    assert response.status in (201, 503), (response.status, response.body[:300])
    if response.status == 503:
        assert response.json()["code"] == 503
        assert not stored, "a refused POST must not leave a query behind"
        return
    verdict = harness.verdict([response.json()["id"]], since=down_at)
    assert verdict.of(response.json()["id"]).status == "Completed"
    harness.report(
        "POST while Redis is down",
        "201; enqueued by the reaper once Redis was back; Completed",
        verdict,
    )


def test_post_when_the_broker_cannot_be_used_still_answers_201(harness: Harness, tmp_path: Path) -> None:
    """A web process whose broker transport cannot even load (the Redis transport's `packaging` dependency
    missing: what a venv of an incomplete requirements.txt did). The query is committed, so the POST answers
    201 with its guid; the reaper of a healthy deployment sends it (it was never handed over), and it
    completes. The slot it holds is a real query's, not a leak."""
    broken = tmp_path / "broken-site"
    (broken / "packaging").mkdir(parents=True)
    (broken / "packaging" / "__init__.py").write_text(
        'raise ImportError("packaging is broken for this test")\n'
    )
    port = free_port()
    web = harness.service.web_start(port, extra_env={"PYTHONPATH": str(broken)})
    key = harness.customer(max_concurrent=2)
    try:
        posted_at = time.monotonic()
        response = harness.service.request(
            "POST", "/_rest/v4/dwh/Q", key=key, body=harness.small_query, base_url=f"http://127.0.0.1:{port}"
        )
    finally:
        _stop(web)
    assert response.status == 201, (response.status, response.body[:300])
    guid = response.json()["id"]
    assert query_read(harness.database_url, guid).status == "Pending"
    harness.service.worker_start(concurrency=1)
    verdict = harness.verdict([guid], since=posted_at)
    assert verdict.of(guid).status == "Completed"
    harness.report(
        "POST on a web process whose broker transport cannot load",
        "201 with the guid (the query was committed); sent by the reaper's next tick; Completed",
        verdict,
    )


def test_cache_down_failed_logins_stay_401(harness: Harness) -> None:
    """The throttle's cache (the Redis the broker uses) is down: a refused credential is still a 401 (never a
    500), a failed login still a 401, and a good key still works."""
    key = harness.customer()
    harness.broker.shutdown_nosave()
    try:
        for _ in range(3):
            bad = harness.service.request("GET", "/_rest/v4/dwh/Q", key="ik_00000000_wrong")
            assert (bad.status, bad.json()) == (401, {"code": 401, "error": "Unauthorized"})
        login = harness.service.request(
            "POST", "/_rest/v4/authenticate", body={"username": "nobody", "password": "wrong"}
        )
        assert login.status == 401, login.body[:300]
        assert harness.service.request("GET", "/_rest/v4/dwh/Q", key=key).status == 200
    finally:
        harness.broker.start()


def test_warehouse_connection_killed_mid_query_fails_cleanly(
    harness: Harness, postgres_warehouse: str
) -> None:
    """PostgreSQL as the warehouse; `pg_terminate_backend` on the worker's session while it streams rows.
    The query ends Failed with a message the customer can act on (or is retried), its slot is freed, its
    scratch files are removed and nothing is published."""
    key = harness.customer(max_concurrent=1)
    on_postgres = {"WAREHOUSE_URL": postgres_warehouse}
    # A web process of its own: a query is compiled at POST, for the warehouse the web process is set up for.
    port = free_port()
    web = harness.service.web_start(port, extra_env=on_postgres)
    harness.service.worker_start(concurrency=1, extra_env=on_postgres)
    with SlotWatch(harness.database_url) as slots:
        guid = harness.submit(key, base_url=f"http://127.0.0.1:{port}")
        harness.wait_mid_export(guid, key)
        backends = _warehouse_backends_terminate(postgres_warehouse)
        killed_at = time.monotonic()
        verdict = harness.verdict([guid], since=killed_at)
    slots.check()
    assert backends, "the worker had no session on the warehouse to terminate"
    row = verdict.of(guid)
    # A dropped session is worth another attempt: the query runs again (and completes), or ends Failed
    # once its attempts are spent, in the customer's terms.
    assert row.status in ("Failed", "Completed"), row
    if row.status == "Completed":
        assert row.attempts >= 2, row
    else:
        (message,) = row.messages
        assert message.startswith("The warehouse was unavailable; the query was tried"), message
    assert not any(text in m for m in row.messages for text in ("SQLSTATE", "SELECT", "postgresql://"))
    harness.scratch_removed_wait(guid)
    _stop(web)
    # The slot is free again: the customer's one slot takes a new query at once.
    assert harness.service.request("POST", "/_rest/v4/dwh/Q", key=key, body=harness.small_query).status == 201
    harness.report(
        "PostgreSQL warehouse backend terminated mid-query",
        f"{row.status} on attempt {row.attempts}"
        + (f": {'; '.join(row.messages)}" if row.messages else " (retried: a dropped session is retryable)"),
        verdict,
    )


def _warehouse_backends_terminate(warehouse_url: str) -> list[int]:
    """Terminate every client session on the warehouse database (only workers connect to it)."""
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        ).fetchall()
    return [pid for pid, terminated in rows if terminated]


SCRATCH_BYTES = 2 * 1024 * 1024


def test_scratch_disk_full_fails_the_query_and_cleans_up(harness: Harness) -> None:
    """The worker's scratch directory fills up mid-export (a 2 MB tmpfs on <var>/work; where mounting is
    not allowed, RLIMIT_FSIZE makes writes past 2 MB fail with EFBIG instead): the query ends Failed with a
    clear message, nothing is published, the scratch directory is emptied and the slot freed."""
    key = harness.customer(max_concurrent=1)
    work = harness.service.var_dir / "work"
    with _scratch_limited(work) as limit_worker:
        # One big part: RLIMIT_FSIZE limits each file, not the directory, so no part may stay below it.
        one_part = {"EXPORT_PART_BYTES": str(10**9)}
        harness.service.worker_start(concurrency=1, extra_env=one_part, preexec_fn=limit_worker)
        with SlotWatch(harness.database_url) as slots:
            guid = harness.submit(key)
            started_at = time.monotonic()
            verdict = harness.verdict([guid], since=started_at)
        harness.scratch_removed_wait(guid)
        harness.service.workers_stop()
    slots.check()
    row = verdict.of(guid)
    assert row.status == "Failed", row
    (message,) = row.messages
    # The customer reads what happened in its terms; the server's own words (and paths) go to the log.
    assert message.startswith("The result could not be written because of a problem on our side"), message
    assert "/" not in message and "No space" not in message and "too large" not in message, message
    assert harness.worker_log_has("No space left on device") or harness.worker_log_has("File too large")
    assert verdict.exports.manifests == 0 and verdict.exports.parts == 0
    assert not [p for p in harness.export_dir.rglob("*") if p.is_file()], "nothing may be published"
    assert harness.service.request("POST", "/_rest/v4/dwh/Q", key=key, body=harness.small_query).status == 201
    harness.report(
        "scratch (work) directory full mid-export",
        f"{row.status} on attempt {row.attempts}: {message}",
        verdict,
    )


@contextlib.contextmanager
def _scratch_limited(work: Path) -> Iterator[Callable[[], None] | None]:
    """Make `work` a 2 MB file system for the test; yields the preexec_fn to give the worker (None when the
    tmpfs is mounted, or one lowering RLIMIT_FSIZE when mounting is not permitted)."""
    work.mkdir(parents=True, exist_ok=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SCRATCH_BYTES}", "tmpfs", str(work)],
            capture_output=True,
        ).returncode
        == 0
    )
    try:
        yield None if mounted else _file_size_limited
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(work)], check=True)


def _file_size_limited() -> None:
    """In the worker, before exec: writes past SCRATCH_BYTES fail with EFBIG rather than killing it."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (SCRATCH_BYTES, SCRATCH_BYTES))
