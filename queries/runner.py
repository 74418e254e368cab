"""Run one query, top to bottom: claim -> engine -> writer -> delivery -> complete.

- claim: take the query's lease (queries.lifecycle); the attempt number fences every later write.
- engine: the warehouse runs the plan compiled at POST (queries.plan), never the body again.
- writer and delivery: exports.pipeline writes gzipped CSV parts and stages each at the customer's
  destination while the next is written; a supervisor thread renews the lease every HEARTBEAT seconds and
  stops everything (the warehouse statement included) on a cancel, a lost lease or the time limit.
- complete: journal the publication (queries.journal), place every file under its final name (manifest last),
  record Completed. Every failure ends the query with a message in the customer's terms; the server's own
  words go to the log.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django import db
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from exports.delivery import DeliveryFailed
from exports.engines.base import Statement, WarehouseEngine
from exports.errors import (
    QueryCanceled,
    StorageError,
    WarehouseError,
    WriteCanceled,
    WriteError,
    WriteLimitExceeded,
)
from exports.pipeline import ExportOptions, StagedExport
from exports.results import ResultNames
from exports.summary import ExportSummary
from exports.writers import PartFile, manifest_build, manifest_bytes, manifest_schema
from exports.writers.formats import OutputFormat
from insights.destinations import destination_storage
from insights.failpoints import failpoint
from insights.logs import log_context_set
from insights.models import Customer
from queries.delivery import query_destination
from queries.dispatch import query_enqueue, slice_enqueue
from queries.errors import QueryFailed
from queries.journal import journal_build
from queries.lifecycle import (
    INTERNAL_ERROR,
    Claim,
    cap_exceeded_message,
    lease_duration,
    query_claim,
    query_complete,
    query_completed_with,
    query_delivery_attempted,
    query_fail,
    query_heartbeat,
    query_lease_renew,
    query_publication_record,
    query_release,
    query_stopped,
)
from queries.metrics import delivery_retried, export_completed, lease_heartbeat
from queries.plan import PlanError, plan_output, plan_slices, plan_statement
from queries.slice_lifecycle import slices_create
from queries.slicing import slice_ranges
from queries.warm_engines import worker_engines

logger = logging.getLogger(__name__)

HEARTBEAT = 1.0
EMPTY_RESULT = "The query returned empty values"
NOT_RUNNABLE = (
    "This query was submitted to an earlier version of the service and cannot run; submit it again."
)
WAREHOUSE_CHANGED = "The warehouse changed since this query was submitted; submit it again."
WAREHOUSE_FAILED = "The warehouse could not run the query; the error has been logged."
WRITE_FAILED = (
    "The result could not be written because of a problem on our side; it has been logged. Try again later."
)
# A retryable failure is run again after this many seconds times the attempt number.
RETRY_BACKOFF_SECONDS = 2.0


def warehouse_unavailable_message(attempts: int) -> str:
    return f"The warehouse was unavailable; the query was tried {attempts} times. Try again later."


def delivery_failed_message(failure: DeliveryFailed) -> str:
    if failure.refused:
        return f"The result could not be delivered: {failure}. Check the destination's settings in the admin."
    return f"The result could not be delivered after {failure.tries} tries: {failure}"


class RetryLater(Exception):
    """The run failed in a way another attempt may not: `message` is what the customer reads if none is left."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RunControl:
    """What the export asks of this run (exports.pipeline.ExportControl), and what the export thread, the
    upload thread and the supervisor share: the stop event, the time limit, the progress figures."""

    def __init__(self, claim: Claim, *, deadline: float) -> None:
        self.claim = claim
        self.deadline = deadline  # time.monotonic() past which the query is stopped
        self.rows = 0
        self.bytes = 0
        self.timed_out = False
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.storage_kind = "local"  # the destination's, once it is open (for the metrics)
        self.delivery_tries = 0

    def should_stop(self) -> bool:
        """Checked by the writer before each batch."""
        if time.monotonic() >= self.deadline:
            self.timed_out = True
            self.stop.set()
        return self.stop.is_set()

    def progress(self, rows: int, bytes_written: int) -> None:
        self.rows, self.bytes = rows, bytes_written

    def delivery_tried(self) -> None:
        query_delivery_attempted(claim=self.claim)
        self.delivery_tries += 1
        if self.delivery_tries > 1:  # called for the first try of all, then once per retry
            delivery_retried(storage=self.storage_kind)

    @property
    def out_of_time(self) -> bool:
        return self.timed_out or time.monotonic() >= self.deadline


def query_run(*, query_id: int) -> None:
    """Run a pending query if no live worker holds it; safe to call twice for the same id."""
    claim = query_claim(query_id=query_id)
    if claim is None:
        logger.info("query %s: nothing to run (finished, canceled or held by another worker)", query_id)
        return
    # Every line of this run, Celery's "succeeded" included, says which run it is about (cleared when the task
    # ends: insights.celery).
    log_context_set(guid=claim.query.guid, customer=claim.query.customer.key, attempt=claim.attempt)
    logger.info("query %s attempt %s started", claim.query.guid, claim.attempt)
    workdir = Path(settings.VAR_DIR) / "work" / f"{claim.query.guid}-{claim.attempt}"
    try:
        _run(claim, workdir)
    except QueryFailed as failure:
        query_fail(claim=claim, message=failure.message)
    except RetryLater as retry:
        if query_release(claim=claim, message=retry.message):
            query_enqueue(query_id=query_id, countdown=RETRY_BACKOFF_SECONDS * claim.attempt)
    except Exception:
        logger.exception("query %s attempt %s failed unexpectedly", claim.query.guid, claim.attempt)
        query_fail(claim=claim, message=INTERNAL_ERROR)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(claim: Claim, workdir: Path) -> None:
    statement = _statement(claim)
    # The engine stays open for this process's next query unless the run raised or cancelled it (the supervisor
    # has stopped by the end of the block, so no cancel can reach it once it is given back).
    with worker_engines.lent() as engine:
        _run_on(claim, workdir, statement, engine)


def _run_on(claim: Claim, workdir: Path, statement: Statement, engine: WarehouseEngine) -> None:
    if statement.dialect != engine.dialect.name:
        raise QueryFailed(WAREHOUSE_CHANGED)
    workdir.mkdir(parents=True, exist_ok=True)
    control = RunControl(claim, deadline=time.monotonic() + settings.QUERY_TIME_LIMIT_SECONDS)
    output, titles = output_of(claim)
    if _sliced(claim, engine, control):
        return
    customer = claim.query.customer
    destination = query_destination(claim.query)  # None: this server's local export directory
    names = ResultNames.report(
        customer_key=customer.key,
        guid=claim.query.guid,
        epoch_ms=int(time.time() * 1000),
        extension=output.extension,
    )
    with (
        supervised(claim, engine, control),
        destination_storage(destination) as storage,
        storage.publication() as publication,  # leaving the block unpublished removes what was staged
    ):
        control.storage_kind = storage.kind
        export = StagedExport(
            publication,
            names=names,
            directory=workdir,
            options=export_options(customer),
            control=control,
            label=f"query {claim.query.guid}",
            # Looked up in the upload thread: each thread has its own connection (a bound method would be ours).
            on_upload_thread_exit=lambda: db.connection.close(),
        )
        summary = ExportSummary(statement)
        parts = write_parts_of(claim, export, engine, summary, control, output=output, titles=titles)
        if parts is None:
            return
        if sum(p.rows for p in parts) == 0:
            raise QueryFailed(EMPTY_RESULT)
        files = _publish(
            claim, export, names, parts, summary, destination_id=getattr(destination, "pk", None)
        )
        if not files:
            return
        if not _complete(claim, files, names, summary, destination_id=getattr(destination, "pk", None)):
            storage.delete([entry["path"] for entry in files])
            return
        export_completed(
            engine=engine.dialect.name,
            storage=storage.kind,
            rows=sum(f["rows"] for f in files),
            size=sum(f["size"] for f in files),
            seconds=time.monotonic() - control.started,
        )


def _sliced(claim: Claim, engine: WarehouseEngine, control: RunControl) -> bool:
    """Cut a big export into slices that workers write at once (queries.slice_runner), and send them; False
    when it is exported whole, here (small, splitting off, or a plan from before slices)."""
    try:
        plan = plan_slices(claim.query.plan)
    except PlanError:
        plan = None
    if plan is None or settings.EXPORT_SPLIT_ROWS <= 0:
        return False
    try:
        at_most = engine.events_rows_at_most()  # a warehouse smaller than a slice: nothing to count
    except WarehouseError as error:
        raise warehouse_failure(claim, error) from None
    if at_most is not None and at_most <= settings.EXPORT_SPLIT_ROWS:
        return False
    # A control of its own: the supervisor stops the control it watched when its block ends.
    counting = RunControl(claim, deadline=control.deadline)
    with supervised(claim, engine, counting):
        try:
            ranges = slice_ranges(
                engine, plan, split_rows=settings.EXPORT_SPLIT_ROWS, max_slices=settings.EXPORT_MAX_SLICES
            )
        except QueryCanceled:
            query_stopped(claim=claim, timed_out=counting.out_of_time)
            return True
        except WarehouseError as error:
            raise warehouse_failure(claim, error) from None
    if not ranges:
        return False
    engine.close()
    slice_ids = slices_create(claim=claim, ranges=ranges)
    logger.info("query %s: cut into %d slices", claim.query.guid, len(slice_ids))
    for slice_id in slice_ids:
        slice_enqueue(slice_id=slice_id)
    return True


def warehouse_failure(claim: Claim, error: WarehouseError) -> Exception:
    """What a warehouse error makes of the run: another attempt later, or the query failed."""
    logger.warning("query %s: warehouse error: %s", claim.query.guid, error)
    if error.retryable:
        return RetryLater(warehouse_unavailable_message(claim.attempt))
    return QueryFailed(WAREHOUSE_FAILED)


def output_of(claim: Claim) -> tuple[OutputFormat, list[str]]:
    """The output chosen at POST, and the column titles (names or display names) the files carry."""
    try:
        options, titles = plan_output(claim.query.plan)
        output = OutputFormat.parse(
            format=options.get("format"),
            compression=options.get("compression"),
            dialect=options.get("dialect"),
        )
    except (PlanError, ValueError):
        logger.exception("query %s has output options this worker cannot write", claim.query.guid)
        raise QueryFailed(NOT_RUNNABLE) from None
    return output, titles


def _statement(claim: Claim) -> Statement:
    """The plan compiled at POST."""
    try:
        return plan_statement(claim.query.plan)
    except PlanError:
        logger.exception("query %s has a plan this worker cannot run", claim.query.guid)
        raise QueryFailed(NOT_RUNNABLE) from None


def export_options(customer: Customer) -> ExportOptions:
    return ExportOptions(
        part_bytes=settings.EXPORT_PART_BYTES,
        compression_level=settings.EXPORT_GZIP_LEVEL,
        max_bytes=customer.max_bytes_per_query,
        parts_in_flight=settings.EXPORT_PARTS_IN_FLIGHT,
        retries=int(settings.DELIVERY_RETRIES),
        backoff_seconds=float(settings.DELIVERY_BACKOFF_SECONDS),
    )


def write_parts_of(
    claim: Claim,
    export: StagedExport,
    engine: WarehouseEngine,
    summary: ExportSummary,
    control: RunControl,
    *,
    output: OutputFormat,
    titles: list[str],
) -> list[PartFile] | None:
    """The parts written and staged, or None when the run was stopped (the query is marked so)."""
    guid = claim.query.guid
    try:
        return export.write(summary.batches(engine), summary.columns, output=output, header=titles)
    except (QueryCanceled, WriteCanceled, SoftTimeLimitExceeded):
        query_stopped(claim=claim, timed_out=control.out_of_time)
        return None
    except WriteLimitExceeded:
        raise QueryFailed(cap_exceeded_message(claim.query.customer)) from None
    except WarehouseError as error:
        raise warehouse_failure(claim, error) from None
    except DeliveryFailed as failure:
        raise QueryFailed(delivery_failed_message(failure)) from None
    except WriteError as error:
        logger.error("query %s: the result could not be written: %s", guid, error)
        raise QueryFailed(WRITE_FAILED) from None


def _publish(
    claim: Claim,
    export: StagedExport,
    names: ResultNames,
    parts: list[PartFile],
    summary: ExportSummary,
    *,
    destination_id: int | None,
) -> list[dict[str, Any]]:
    """Journal the publication, then place every staged part and the manifest under its final name; the
    files placed, or [] when the run was stopped first (the query is marked so)."""
    query = claim.query
    files = [
        {
            "path": names.key(p.name),
            "size": p.compressed_bytes,
            "rows": p.rows,
            "bytes": p.bytes,
            "sha256": p.sha256,
        }
        for p in parts
    ]
    # Journaled before the first final name appears: if this worker dies from here to `Completed`, the reaper
    # finds what it placed and finishes or removes it, and no other attempt runs meanwhile.
    journal = journal_build(
        destination_id=destination_id,
        files=files,
        manifest_path=names.key(names.manifest),
        summary=summary.text(),
    )
    if not query_publication_record(claim=claim, journal=journal):
        # A cancel that arrived after the last part (Canceled now, not when the lease runs out), or a lost lease.
        if not query_stopped(claim=claim, timed_out=False):
            logger.warning("query %s attempt %s lost its lease before publishing", query.guid, claim.attempt)
        return []
    manifest = manifest_build(
        parts=parts,
        query=query.body_json,
        fingerprint=query.fingerprint,
        output=query.output,
        schema=manifest_schema(summary.columns),
        created_at=timezone.now(),
        guid=query.guid,
        summary=summary.figures,
    )
    try:
        export.commit(manifest_bytes(manifest), commit_check=lambda: holds(claim))
    except WriteCanceled:  # the time limit, between the journal and the commit
        query_stopped(claim=claim, timed_out=True)
        return []
    except DeliveryFailed as failure:
        raise QueryFailed(delivery_failed_message(failure)) from None
    failpoint("publish.committed")
    return files


def _complete(
    claim: Claim,
    files: list[dict[str, Any]],
    names: ResultNames,
    summary: ExportSummary,
    *,
    destination_id: int | None,
) -> bool:
    """Record Completed; False when this attempt lost the query after placing its files (they must go)."""
    if query_complete(
        claim=claim,
        files=files,
        manifest_path=names.key(names.manifest),
        rows=sum(f["rows"] for f in files),
        bytes_written=sum(f["bytes"] for f in files),
        destination_id=destination_id,
        summary=summary.text(),
    ):
        return True
    # The worker stalled for a whole lease between the publish fence and `Completed`. If the reaper found
    # this publication complete, the query is Completed with these very files; otherwise they go (the
    # manifest key is shared by every attempt: it is left to the winner).
    logger.error("query %s attempt %s lost its lease after publishing", claim.query.guid, claim.attempt)
    return query_completed_with(query_id=claim.query.pk, files=files)


Heartbeat = Callable[[int, int], bool]  # (rows, bytes written) -> whether the run still holds its lease


@contextlib.contextmanager
def supervised(
    claim: Claim, engine: WarehouseEngine, control: RunControl, heartbeat: Heartbeat | None = None
) -> Iterator[None]:
    """The lease is renewed for the whole run, delivery included: an upload longer than the lease must not
    look like a dead worker to the reaper. `heartbeat` renews it (default: the query's own lease)."""
    beat = heartbeat or (lambda rows, size: query_heartbeat(claim=claim, rows=rows, bytes_written=size))
    # Run in a copy of this context, so its lines carry the run's guid, customer and attempt too.
    supervisor = threading.Thread(
        target=contextvars.copy_context().run, args=(_supervise, claim, engine, control, beat), daemon=True
    )
    supervisor.start()
    try:
        yield
    finally:
        control.stop.set()
        supervisor.join()


def _supervise(claim: Claim, engine: WarehouseEngine, control: RunControl, heartbeat: Heartbeat) -> None:
    """Heartbeat the lease; stop the export (warehouse statement included) on a cancel, a lost lease or the
    time limit. It runs in its own thread because the export thread may sit inside the engine for minutes."""
    last_beat = time.monotonic()
    try:
        while not control.stop.wait(HEARTBEAT):
            control.timed_out = control.out_of_time
            try:
                held = heartbeat(control.rows, control.bytes)
                lease_heartbeat(outcome="renewed" if held else "lost")
                last_beat = time.monotonic()
            except DatabaseError:
                # A database hiccup: try again next tick, but once a lease's worth of beats is lost another
                # worker may hold the query, so stop.
                logger.warning("query %s: heartbeat failed", claim.query.guid, exc_info=True)
                lease_heartbeat(outcome="failed")
                held = time.monotonic() - last_beat < lease_duration().total_seconds()
            if control.timed_out or not held:
                control.stop.set()
                engine.cancel()
                return
    finally:
        db.connection.close()  # this thread's own connection


def holds(claim: Claim) -> bool:
    """The publish fence: whether this attempt still holds the query (a database hiccup is retried)."""
    try:
        return query_lease_renew(claim=claim)
    except DatabaseError as exc:
        raise StorageError(
            "the lease could not be confirmed: the metadata database is unavailable", retryable=True
        ) from exc
