"""query_run in-process on a real DuckDB warehouse and real local storage (the Celery path is tested end to end)."""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from exports.engines import engine_from_url
from exports.errors import StorageError, WarehouseError
from exports.storage.base import Publication
from exports.storage.local import LocalStorage
from queries import runner
from queries.catalog import catalog
from queries.lifecycle import CANCELED_BY_CUSTOMER
from queries.models import QueryRequest, QueryStatus

# The runner's supervisor and upload threads use their own database connections: they must see the rows.
pytestmark = pytest.mark.django_db(transaction=True)

BODY = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["SessionId", "Ani", "Duration"]}},
}


@pytest.fixture()
def warehouse(demo_warehouse, settings, local_exports):
    settings.EXPORT_PART_BYTES = 4096
    return demo_warehouse


@pytest.fixture()
def enqueue_nothing(sent_tasks):
    return sent_tasks


def _submit(customer, body=BODY) -> QueryRequest:
    from queries.services import query_create

    return query_create(customer=customer, body=body)


def _expected_rows(warehouse: Path, customer: str) -> list[tuple]:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            'SELECT "SessionId", "Ani", "Duration" FROM events WHERE "EventName" = \'CallEvent\' AND "CustomerId" = ?'
            " AND \"TimeStamp\" BETWEEN '2019-11-25' AND '2019-11-26' ORDER BY \"TimeStamp\", _row_id",
            [customer],
        ).fetchall()


def test_run_publishes_every_part_and_a_matching_manifest(
    customer_factory, warehouse, local_exports, enqueue_nothing
):
    query = _submit(customer_factory("acme"))
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert query.status == QueryStatus.COMPLETED, query.messages
    assert len(query.files) > 1  # 4 kB parts
    lines: list[str] = []
    for entry in query.files:
        data = (local_exports / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"]
        part = gzip.decompress(data).decode().splitlines()
        assert part[0] == "SessionId,Ani,Duration"
        assert len(part) - 1 == entry["rows"]
        lines += part[1:]
    expected = _expected_rows(warehouse, "acme")
    assert [line.split(",")[:2] for line in lines] == [[s, a] for s, a, _ in expected]
    manifest = json.loads((local_exports / query.manifest_path).read_text())
    assert [p["sha256"] for p in manifest["parts"]] == [f["sha256"] for f in query.files]
    assert manifest["fingerprint"] == query.fingerprint
    assert query.row_count == len(expected) and query.attempts == 1 and query.delivery_attempts == 1
    assert not list((Path(warehouse).parent / "work").glob("*"))  # scratch space removed


def test_a_second_delivery_of_the_task_does_nothing(customer_factory, warehouse, enqueue_nothing):
    query = _submit(customer_factory("acme"))
    runner.query_run(query_id=query.pk)
    finished = QueryRequest.objects.get(pk=query.pk)
    runner.query_run(query_id=query.pk)
    again = QueryRequest.objects.get(pk=query.pk)
    assert (again.attempts, again.files, again.finished_at) == (
        finished.attempts,
        finished.files,
        finished.finished_at,
    )


def test_zero_rows_fail_and_publish_nothing(customer_factory, warehouse, local_exports, enqueue_nothing):
    body = {**BODY, "filters": {"CallEvent": {"Ani": {"$eq": "nobody"}}}}
    query = _submit(customer_factory("acme"), body)
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert (query.status, query.messages) == (QueryStatus.FAILED, ["The query returned empty values"])
    assert not list(local_exports.rglob("*.gz"))


def test_the_data_cap_fails_the_query_with_nothing_published(
    customer_factory, warehouse, local_exports, enqueue_nothing
):
    query = _submit(customer_factory("acme", max_bytes_per_query=2000))
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert query.status == QueryStatus.FAILED and "cap of 2000 bytes" in query.messages[0]
    assert not list(local_exports.rglob("*.gz"))


def test_the_time_limit_cancels_the_query(
    customer_factory, warehouse, local_exports, settings, enqueue_nothing
):
    settings.QUERY_TIME_LIMIT_SECONDS = 0
    query = _submit(customer_factory("acme"))
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert query.status == QueryStatus.CANCELED and "time limit" in query.messages[0]
    assert not list(local_exports.rglob("*.gz"))


class _ScriptedPublication(Publication):
    """A local publication whose stage and commit fail as scripted, and which records what it saw."""

    def __init__(
        self,
        inner: Publication,
        work_root: Path,
        *,
        stage_failures=0,
        commit_failures=0,
        error=None,
        stage_delay=0.0,
    ):
        self.inner = inner
        self.work_root = work_root  # the runner's work directories (one per attempt) are under it
        self.stage_failures, self.commit_failures = stage_failures, commit_failures
        self.error = error or StorageError("connection reset by peer", retryable=True)
        self.files_on_disk: list[int] = []  # part files in the work dir at each stage
        self.staged: list[str] = []
        self.commits = 0
        self.stage_delay = stage_delay  # a slow destination: parts pile up unless the writer waits

    def stage(self, source, key):
        self.files_on_disk.append(len(list(self.work_root.glob("*/.*.tmp"))))
        if self.stage_failures:
            self.stage_failures -= 1
            raise self.error
        time.sleep(self.stage_delay)
        self.inner.stage(source, key)
        self.staged.append(key)

    def commit(self, manifest, *, commit_check=None):
        self.commits += 1
        if self.commit_failures:
            self.commit_failures -= 1
            raise self.error
        self.inner.commit(manifest, commit_check=commit_check)

    def abort(self):
        self.inner.abort()


@pytest.fixture()
def scripted(local_exports, settings, monkeypatch):
    """scripted(**failures): every publication of the run goes through a _ScriptedPublication."""
    made: list[_ScriptedPublication] = []

    def install(**script):
        class Storage(LocalStorage):
            def publication(self):
                work_root = Path(settings.VAR_DIR) / "work"
                made.append(_ScriptedPublication(super().publication(), work_root, **script))
                return made[-1]

        monkeypatch.setattr(runner, "destination_storage", lambda destination: Storage(local_exports))
        return made

    return install


@pytest.mark.parametrize(
    ("failures", "status", "attempts"), [(2, QueryStatus.COMPLETED, 3), (9, QueryStatus.FAILED, 3)]
)
def test_transient_delivery_failures_are_retried_then_given_up(
    customer_factory,
    warehouse,
    local_exports,
    settings,
    scripted,
    enqueue_nothing,
    failures,
    status,
    attempts,
):
    settings.DELIVERY_RETRIES, settings.DELIVERY_BACKOFF_SECONDS = 2, 0
    scripted(stage_failures=failures)
    query = _submit(customer_factory("acme"))
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert (query.status, query.delivery_attempts) == (status, attempts)
    if status == QueryStatus.FAILED:
        assert "after 3 tries" in query.messages[0]


def test_permanent_delivery_failure_fails_at_once_saying_what_to_fix(
    customer_factory, warehouse, local_exports, scripted, enqueue_nothing
):
    made = scripted(
        stage_failures=1, error=StorageError("permission denied on reports/acme", retryable=False)
    )
    query = _submit(customer_factory("acme"))
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert query.status == QueryStatus.FAILED and query.delivery_attempts == 1
    assert "permission denied" in query.messages[0] and "destination" in query.messages[0]
    assert not list(local_exports.rglob("*.gz")) and not list(local_exports.rglob("*.partial"))
    assert len(made[0].files_on_disk) == 1  # the export stopped at the first refused part


@pytest.mark.parametrize("in_flight", [1, 3])
def test_parts_upload_while_the_export_runs_with_a_bounded_number_on_disk(
    customer_factory, warehouse, local_exports, settings, scripted, enqueue_nothing, in_flight
):
    settings.EXPORT_PARTS_IN_FLIGHT, settings.EXPORT_PART_BYTES = in_flight, 600
    made = scripted(stage_delay=0.05)
    query = _submit(customer_factory("acme"))
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert query.status == QueryStatus.COMPLETED, query.messages
    (publication,) = made
    assert publication.staged == [entry["path"] for entry in query.files]
    assert len(query.files) > in_flight + 4
    # Handed over (in_flight), one finished part waiting for a slot, the one being written: never all parts.
    assert max(publication.files_on_disk) <= in_flight + 2
    assert not list((Path(settings.VAR_DIR) / "work").glob("*/.*.tmp"))


def test_a_commit_that_fails_transiently_is_retried(
    customer_factory, warehouse, local_exports, settings, scripted, enqueue_nothing
):
    settings.DELIVERY_RETRIES, settings.DELIVERY_BACKOFF_SECONDS = 2, 0
    made = scripted(commit_failures=1)
    query = _submit(customer_factory("acme"))
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert (query.status, query.delivery_attempts, made[0].commits) == (QueryStatus.COMPLETED, 2, 2)
    assert (local_exports / query.manifest_path).is_file()
    assert all((local_exports / entry["path"]).is_file() for entry in query.files)


def test_a_cancel_during_the_upload_publishes_nothing(
    customer_factory, warehouse, local_exports, settings, scripted, monkeypatch, enqueue_nothing
):
    from queries.services import query_cancel

    monkeypatch.setattr(runner, "HEARTBEAT", 0.01)
    made = scripted()
    query = _submit(customer_factory("acme"))
    original_stage = _ScriptedPublication.stage

    def stage_then_cancel(self, source, key):
        original_stage(self, source, key)
        if len(self.staged) == 2:
            query_cancel(query=QueryRequest.objects.get(pk=query.pk))
            time.sleep(0.3)  # several heartbeats: the supervisor sees the cancel

    monkeypatch.setattr(_ScriptedPublication, "stage", stage_then_cancel)
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert (query.status, query.messages) == (QueryStatus.CANCELED, [CANCELED_BY_CUSTOMER])
    assert len(made[0].staged) == 2
    assert not list(local_exports.rglob("*.gz")) and not list(local_exports.rglob("*.partial"))


class _RecordingEngine:
    canceled = False

    def cancel(self) -> None:
        self.canceled = True


@pytest.mark.django_db(transaction=True)  # the supervisor thread has its own connection: it must see the rows
def test_supervisor_stops_the_engine_when_the_customer_cancels(customer_factory, monkeypatch):
    from queries.lifecycle import query_cancel, query_claim

    monkeypatch.setattr(runner, "HEARTBEAT", 0.01)
    query = QueryRequest.objects.create(customer=customer_factory("acme"), body="{}", fingerprint="f" * 64)
    claim = query_claim(query_id=query.pk)
    assert claim is not None
    engine, progress = _RecordingEngine(), runner.RunControl(claim, deadline=float("inf"))
    thread = threading.Thread(target=runner._supervise, args=(claim, engine, progress, _beat(claim)))
    thread.start()
    time.sleep(0.05)
    assert not engine.canceled  # heartbeats alone do not stop anything
    query_cancel(query=QueryRequest.objects.get(pk=query.pk))
    thread.join(timeout=10)
    assert engine.canceled and progress.stop.is_set() and not progress.timed_out
    assert QueryRequest.objects.get(pk=query.pk).lease_expires_at is not None


def _beat(claim):
    from queries.lifecycle import query_heartbeat

    return lambda rows, size: query_heartbeat(claim=claim, rows=rows, bytes_written=size)


@pytest.mark.django_db(transaction=True)
def test_supervisor_stops_the_engine_at_the_time_limit(customer_factory, monkeypatch):
    from queries.lifecycle import query_claim

    monkeypatch.setattr(runner, "HEARTBEAT", 0.01)
    query = QueryRequest.objects.create(customer=customer_factory("acme"), body="{}", fingerprint="f" * 64)
    claim = query_claim(query_id=query.pk)
    assert claim is not None
    engine, progress = _RecordingEngine(), runner.RunControl(claim, deadline=time.monotonic() + 0.05)
    thread = threading.Thread(target=runner._supervise, args=(claim, engine, progress, _beat(claim)))
    thread.start()
    thread.join(timeout=10)
    assert engine.canceled and progress.timed_out


def test_a_database_hiccup_at_the_publish_fence_is_retried(
    customer_factory, warehouse, local_exports, settings, monkeypatch, enqueue_nothing
):
    from django.db import OperationalError

    settings.DELIVERY_RETRIES, settings.DELIVERY_BACKOFF_SECONDS = 2, 0
    renew, calls = runner.query_lease_renew, []

    def flaky_renew(*, claim):
        calls.append(claim.attempt)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return renew(claim=claim)

    monkeypatch.setattr(runner, "query_lease_renew", flaky_renew)
    query = _submit(customer_factory("acme"))
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert (query.status, query.delivery_attempts, len(calls)) == (QueryStatus.COMPLETED, 2, 2)


def test_the_run_executes_the_plan_compiled_at_post_not_the_stored_body(
    customer_factory, warehouse, local_exports, enqueue_nothing
):
    """What was validated and compiled at POST is what runs: a body that changed since (here by hand; on
    PostgreSQL, jsonb reorders its keys) changes nothing about the columns or their order."""
    body = {
        "timestamp": BODY["timestamp"],
        "data": {"MsgEvent": {"fields": ["To"]}, "CallEvent": {"fields": ["Ani", "SessionId"]}},
    }
    query = _submit(customer_factory("acme"), body)
    reordered = {"data": {"CallEvent": {"fields": ["SessionId"]}, "MsgEvent": {"fields": ["To"]}}}
    QueryRequest.objects.filter(pk=query.pk).update(body=json.dumps({**body, **reordered}))
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert query.status == QueryStatus.COMPLETED, query.messages
    header = gzip.decompress((local_exports / query.files[0]["path"]).read_bytes()).decode().splitlines()[0]
    assert header == "EventName,To,Ani,SessionId"


def test_a_plan_for_another_warehouse_fails_with_a_clear_message(
    customer_factory, warehouse, settings, enqueue_nothing
):
    query = _submit(customer_factory("acme"))
    settings.WAREHOUSE_URL = "postgresql://insights@127.0.0.1:1/warehouse"  # the deployment changed engines
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert (query.status, query.messages) == (QueryStatus.FAILED, [runner.WAREHOUSE_CHANGED])


class _UnavailableWarehouse:
    """An engine whose server keeps dropping the session (a retryable WarehouseError, like SQLSTATE 57P01)."""

    dialect = engine_from_url("duckdb://:memory:").dialect

    def execute(self, statement, **kwargs):
        raise WarehouseError("the warehouse is unavailable (SQLSTATE 57P01) at 10.0.0.5:5432", retryable=True)
        yield  # a generator, like a real engine

    def cancel(self):
        pass

    def close(self):
        pass

    def events_rows_at_most(self):
        return None


def test_a_retryable_warehouse_error_is_an_attempt_then_a_clear_failure(
    customer_factory, warehouse, settings, monkeypatch, enqueue_nothing
):
    settings.QUERY_MAX_ATTEMPTS = 3
    monkeypatch.setattr("queries.warm_engines.warehouse_engine", _UnavailableWarehouse)
    query = _submit(customer_factory("acme"))
    for attempt in (1, 2):
        runner.query_run(query_id=query.pk)
        query.refresh_from_db()
        assert (query.status, query.attempts, query.lease_expires_at) == (QueryStatus.PENDING, attempt, None)
        assert enqueue_nothing[-1] == ("queries.run", (query.pk,), runner.RETRY_BACKOFF_SECONDS * attempt)
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert (query.status, query.attempts) == (QueryStatus.FAILED, 3)
    assert query.messages == ["The warehouse was unavailable; the query was tried 3 times. Try again later."]
    assert "SQLSTATE" not in query.messages[0] and "10.0.0.5" not in query.messages[0]


def test_a_new_attempt_counts_its_progress_from_zero(customer_factory, db):
    from queries.lifecycle import query_claim

    query = QueryRequest.objects.create(
        customer=customer_factory("acme"),
        body="{}",
        fingerprint="f" * 64,
        attempts=1,
        progress_rows=500,
        progress_bytes=90_000,
    )
    claim = query_claim(query_id=query.pk)
    assert claim is not None and claim.attempt == 2
    query.refresh_from_db()
    assert (query.progress_rows, query.progress_bytes) == (0, 0)


def test_a_cancel_after_the_last_part_ends_the_query_at_once(
    customer_factory, warehouse, local_exports, monkeypatch, enqueue_nothing
):
    """The export finished, the publication is about to be journaled, the customer cancels: Canceled now,
    nothing published, not Pending until the lease runs out (the slot is the customer's again at once)."""
    from queries.lifecycle import query_cancel

    record = runner.query_publication_record

    def cancel_first(*, claim, journal):
        query_cancel(query=QueryRequest.objects.get(pk=claim.query.pk))
        return record(claim=claim, journal=journal)

    monkeypatch.setattr(runner, "query_publication_record", cancel_first)
    query = _submit(customer_factory("acme"))
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert (query.status, query.messages) == (QueryStatus.CANCELED, [CANCELED_BY_CUSTOMER])
    assert not list(local_exports.rglob("*.gz")) and not list(local_exports.rglob("*.partial"))


def test_a_run_that_lost_its_lease_leaves_the_query_to_its_new_attempt(
    customer_factory, warehouse, local_exports, monkeypatch, enqueue_nothing
):
    record = runner.query_publication_record

    def lose_the_lease_first(*, claim, journal):
        QueryRequest.objects.filter(pk=claim.query.pk).update(attempts=claim.attempt + 1)  # another worker
        return record(claim=claim, journal=journal)

    monkeypatch.setattr(runner, "query_publication_record", lose_the_lease_first)
    query = _submit(customer_factory("acme"))
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert (query.status, query.attempts, query.messages) == (QueryStatus.PENDING, 2, [])
    assert not list(local_exports.rglob("*.gz"))


@pytest.mark.parametrize(
    ("output", "extension"),
    [
        ({"format": "parquet"}, "parquet"),
        ({"format": "ndjson", "compression": "none"}, "ndjson"),
        ({"format": "xlsx", "header": "display"}, "xlsx"),
        ({"format": "csv", "compression": "none", "dialect": "excel"}, "csv"),
    ],
)
def test_the_chosen_output_is_what_the_parts_hold(
    customer_factory, warehouse, local_exports, enqueue_nothing, output, extension
):
    query = _submit(customer_factory("acme"), {**BODY, "output": output})
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert query.status == QueryStatus.COMPLETED, query.messages
    paths = [local_exports / entry["path"] for entry in query.files]
    assert all(path.name.split("__")[1].partition(".")[2] == extension for path in paths)
    expected = _expected_rows(warehouse, "acme")
    if extension == "parquet":
        import pyarrow.parquet as pq

        rows = [row for path in paths for row in pq.read_table(path).to_pylist()]
        assert [(r["SessionId"], r["Ani"]) for r in rows] == [(s, a) for s, a, _ in expected]
    elif extension == "ndjson":
        rows = [json.loads(line) for path in paths for line in path.read_text().splitlines()]
        assert list(rows[0]) == ["SessionId", "Ani", "Duration"]
        assert [(r["SessionId"], r["Ani"]) for r in rows] == [(s, a) for s, a, _ in expected]
    elif extension == "xlsx":
        import openpyxl

        sheet_rows = []
        for path in paths:
            rows_of_part = list(
                openpyxl.load_workbook(path, read_only=True).active.iter_rows(values_only=True)
            )
            fields = catalog().events["CallEvent"].fields
            assert rows_of_part[0] == tuple(
                fields[name].display_name for name in ("SessionId", "Ani", "Duration")
            )
            sheet_rows += rows_of_part[1:]
        assert [(r[0], r[1]) for r in sheet_rows] == [(s, a) for s, a, _ in expected]
    else:
        text = b"".join(path.read_bytes() for path in paths[:1])
        assert text.startswith(b"\xef\xbb\xbfSessionId,Ani,Duration\r\n")  # excel: BOM and CRLF
    manifest = json.loads((local_exports / query.manifest_path).read_text())
    assert manifest["output"] == query.output


def test_a_worker_process_keeps_its_engine_for_the_next_query_but_never_a_cancelled_one(
    customer_factory, warehouse, settings, monkeypatch, enqueue_nothing
):
    import queries.warm_engines as warm

    settings.WORKER_ENGINE_IDLE_SECONDS = 60
    opened = []

    def engine_open():
        opened.append(engine_from_url(settings.WAREHOUSE_URL))
        return opened[-1]

    monkeypatch.setattr(warm, "warehouse_engine", engine_open)
    acme = customer_factory("acme")
    for _ in range(2):
        query = _submit(acme)
        runner.query_run(query_id=query.pk)
        assert QueryRequest.objects.get(pk=query.pk).status == QueryStatus.COMPLETED
    assert len(opened) == 1  # the second query ran on the first one's engine
    kept = warm.worker_engines.take()
    assert kept is opened[0]
    kept.cancel()  # as the supervisor does on a cancel or at the time limit
    warm.worker_engines.give_back(kept)  # an interrupt could still be pending: closed, not kept
    query = _submit(acme)
    runner.query_run(query_id=query.pk)
    assert QueryRequest.objects.get(pk=query.pk).status == QueryStatus.COMPLETED
    assert len(opened) == 2 and opened[1] is not kept


@pytest.mark.parametrize("margin", [0, -1])
def test_a_warehouse_no_bigger_than_a_slice_is_not_counted_for_slicing(
    customer_factory, warehouse, settings, monkeypatch, enqueue_nothing, margin
):
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    settings.EXPORT_SPLIT_ROWS = rows + margin
    counted = []
    real = runner.slice_ranges

    def counting(*args, **kwargs):
        counted.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "slice_ranges", counting)
    query = _submit(customer_factory("acme"))
    runner.query_run(query_id=query.pk)
    assert QueryRequest.objects.get(pk=query.pk).status == QueryStatus.COMPLETED
    # The whole warehouse fits in one slice: no query on it can need two, so none is counted.
    assert counted == ([] if margin == 0 else [True])
