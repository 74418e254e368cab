"""Run one query: its plan (compiled at POST) -> warehouse engine -> CSV/gzip parts -> storage, under a lease.

A supervisor thread extends the lease every HEARTBEAT seconds and watches for a cancel; on a cancel (or a lost
lease) it interrupts the warehouse statement and the writer stops before the next batch. Nothing is published
unless every part was written; the publication is journaled before its first final name appears, and every
transition is fenced by the attempt number (queries.lifecycle).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django import db
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from exports.engines.base import Statement, WarehouseEngine
from exports.errors import (
    QueryCanceled,
    StorageError,
    WarehouseError,
    WriteCanceled,
    WriteError,
    WriteLimitExceeded,
)
from exports.storage.base import Publication, Storage
from exports.writers import (
    PartFile,
    manifest_build,
    manifest_bytes,
    manifest_file_name,
    manifest_schema,
    part_file_name,
    write_csv_gzip_parts,
)
from insights.destinations import destination_default, destination_storage
from insights.failpoints import failpoint
from insights.models import Destination
from queries.delivery import report_key
from queries.dispatch import query_enqueue
from queries.errors import QueryFailed
from queries.journal import journal_build
from queries.lifecycle import (
    INTERNAL_ERROR,
    Claim,
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
from queries.part_upload import DeliveryTries, PartUploader
from queries.plan import PlanError, plan_statement
from queries.warehouse import warehouse_engine

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


class _RetryLater(Exception):
    """The run failed in a way another attempt may not: `message` is what the customer reads if none is left."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class _Progress:
    """Written by the export thread, read by the supervisor; the stop event crosses between them."""

    deadline: float  # time.monotonic() past which the query is stopped
    rows: int = 0
    bytes: int = 0
    timed_out: bool = False
    stop: threading.Event = field(default_factory=threading.Event)

    def should_stop(self) -> bool:
        """Checked by the writer before each batch."""
        if time.monotonic() >= self.deadline:
            self.timed_out = True
            self.stop.set()
        return self.stop.is_set()

    def update(self, rows: int, bytes_written: int) -> None:
        self.rows, self.bytes = rows, bytes_written


def query_run(*, query_id: int) -> None:
    """Run a pending query if no live worker holds it; safe to call twice for the same id."""
    claim = query_claim(query_id=query_id)
    if claim is None:
        logger.info("query %s: nothing to run (finished, canceled or held by another worker)", query_id)
        return
    workdir = Path(settings.VAR_DIR) / "work" / f"{claim.request.guid}-{claim.attempt}"
    try:
        _run(claim, workdir)
    except QueryFailed as failure:
        query_fail(claim=claim, message=failure.message)
    except _RetryLater as retry:
        if query_release(claim=claim, message=retry.message):
            query_enqueue(query_id=query_id, countdown=RETRY_BACKOFF_SECONDS * claim.attempt)
    except Exception:
        logger.exception("query %s attempt %s failed unexpectedly", claim.request.guid, claim.attempt)
        query_fail(claim=claim, message=INTERNAL_ERROR)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(claim: Claim, workdir: Path) -> None:
    """Execute the plan compiled at POST (never the body again: see queries.plan)."""
    try:
        statement = plan_statement(claim.request.plan)
    except PlanError:
        logger.exception("query %s has a plan this worker cannot run", claim.request.guid)
        raise QueryFailed(NOT_RUNNABLE) from None
    engine = warehouse_engine()
    if statement.dialect != engine.dialect.name:
        raise QueryFailed(WAREHOUSE_CHANGED)
    workdir.mkdir(parents=True, exist_ok=True)
    progress = _Progress(deadline=time.monotonic() + settings.QUERY_TIME_LIMIT_SECONDS)
    # The lease is renewed for the whole run, delivery included: an upload longer than the lease must not
    # look like a dead worker to the reaper.
    supervisor = threading.Thread(target=_supervise, args=(claim, engine, progress), daemon=True)
    supervisor.start()
    try:
        _export_and_publish(claim, engine, statement, workdir, progress)
    finally:
        progress.stop.set()
        supervisor.join()


@dataclass(frozen=True)
class _Delivery:
    """Where this run's result goes: the customer's default destination (None: this server's local
    directory), its storage, the open publication and the retry policy."""

    destination: Destination | None
    storage: Storage
    publication: Publication
    tries: DeliveryTries


def _export_and_publish(
    claim: Claim, engine: WarehouseEngine, statement: Statement, workdir: Path, progress: _Progress
) -> None:
    """Export into a publication at the customer's destination (parts upload while later parts are being
    written), then commit it: all or nothing, manifest last."""
    destination = destination_default(claim.request.customer)
    tries = DeliveryTries(
        retries=int(settings.DELIVERY_RETRIES),
        backoff_seconds=float(settings.DELIVERY_BACKOFF_SECONDS),
        stop=progress.stop,
        record_try=lambda: query_delivery_attempted(claim=claim),
        label=f"query {claim.request.guid}",
    )
    with destination_storage(destination) as storage, storage.publication() as publication:
        delivery = _Delivery(destination, storage, publication, tries)
        parts = _export_uploading(claim, engine, statement, workdir, progress, delivery)
        if parts is None:
            return  # canceled; leaving the block removes what was staged
        if sum(p.rows for p in parts) == 0:
            raise QueryFailed(EMPTY_RESULT)
        _commit(claim, delivery, parts, schema=manifest_schema(statement.columns))


def _export_uploading(
    claim: Claim,
    engine: WarehouseEngine,
    statement: Statement,
    workdir: Path,
    progress: _Progress,
    delivery: _Delivery,
) -> list[PartFile] | None:
    """The parts written (and staged), or None when the export was canceled (the query is marked so)."""
    customer = claim.request.customer
    uploader = PartUploader(
        delivery.publication,
        key_for=lambda name: report_key(customer, name),
        in_flight=settings.EXPORT_PARTS_IN_FLIGHT,
        tries=delivery.tries,
        stop=progress.stop,
        on_thread_exit=lambda: db.connection.close(),  # the upload thread's own connection
    )
    try:
        parts = _export(claim, engine, statement, workdir, progress, on_part=uploader.put)
        uploader.finish()
        return parts
    except (QueryCanceled, WriteCanceled, SoftTimeLimitExceeded):
        query_stopped(claim=claim, timed_out=progress.timed_out or time.monotonic() >= progress.deadline)
        return None
    except WriteLimitExceeded:
        raise QueryFailed(
            f"The result is larger than this account's per-query cap of {customer.max_bytes_per_query} bytes; "
            "narrow the timestamp window, the fields or the filters."
        ) from None
    except WarehouseError as error:
        # The customer reads what happened in its terms; the server's own words go to the log.
        logger.warning("query %s: warehouse error: %s", claim.request.guid, error)
        if error.retryable:
            raise _RetryLater(warehouse_unavailable_message(claim.attempt)) from None
        raise QueryFailed(WAREHOUSE_FAILED) from None
    except WriteError as error:
        logger.error("query %s: the result could not be written: %s", claim.request.guid, error)
        raise QueryFailed(WRITE_FAILED) from None
    finally:
        uploader.close()


def _export(
    claim: Claim,
    engine: WarehouseEngine,
    statement: Statement,
    workdir: Path,
    progress: _Progress,
    *,
    on_part: Callable[[PartFile], None],
) -> list[PartFile]:
    epoch_ms = int(time.time() * 1000)
    guid = claim.request.guid
    try:
        return write_csv_gzip_parts(
            engine.execute(statement),
            columns=statement.columns,
            directory=workdir,
            name_for_part=lambda index: part_file_name(guid=guid, epoch_ms=epoch_ms, index=index),
            part_bytes=settings.EXPORT_PART_BYTES,
            compression_level=settings.EXPORT_GZIP_LEVEL,
            max_bytes=claim.request.customer.max_bytes_per_query,
            should_stop=progress.should_stop,
            progress=progress.update,
            on_part=on_part,
        )
    finally:
        engine.close()


def _supervise(claim: Claim, engine: WarehouseEngine, progress: _Progress) -> None:
    """Heartbeat the lease; stop the export (warehouse statement included) on a cancel, a lost lease or the
    time limit. It runs in its own thread because the export thread may sit inside the engine for minutes."""
    last_beat = time.monotonic()
    try:
        while not progress.stop.wait(HEARTBEAT):
            progress.timed_out = progress.timed_out or time.monotonic() >= progress.deadline
            try:
                held = query_heartbeat(claim=claim, rows=progress.rows, bytes_written=progress.bytes)
                last_beat = time.monotonic()
            except DatabaseError:
                # A database hiccup: try again next tick, but once a lease's worth of beats is lost another
                # worker may hold the query, so stop.
                logger.warning("query %s: heartbeat failed", claim.request.guid, exc_info=True)
                held = time.monotonic() - last_beat < lease_duration().total_seconds()
            if progress.timed_out or not held:
                progress.stop.set()
                engine.cancel()
                return
    finally:
        db.connection.close()  # this thread's own connection


def _holds(claim: Claim) -> bool:
    """The publish fence: whether this attempt still holds the query (a database hiccup is retried)."""
    try:
        return query_lease_renew(claim=claim)
    except DatabaseError as exc:
        raise StorageError(
            "the lease could not be confirmed: the metadata database is unavailable", retryable=True
        ) from exc


def _commit(
    claim: Claim, delivery: _Delivery, parts: list[PartFile], *, schema: list[dict[str, str]]
) -> None:
    """Journal the publication, place the staged parts and the manifest, then mark the query Completed; each
    step is fenced by the attempt."""
    request = claim.request
    manifest = manifest_build(
        parts=parts,
        query=request.body_json,
        fingerprint=request.fingerprint,
        schema=schema,
        created_at=timezone.now(),
        guid=request.guid,
    )
    manifest_key = report_key(request.customer, manifest_file_name(guid=request.guid))
    files: list[dict[str, Any]] = [
        {
            "path": report_key(request.customer, p.name),
            "size": p.compressed_bytes,
            "rows": p.rows,
            "bytes": p.bytes,
            "sha256": p.sha256,
        }
        for p in parts
    ]
    destination_id = delivery.destination.pk if delivery.destination else None
    # Journaled before the first final name appears: if this worker dies from here to `Completed`, the reaper
    # finds what it placed and finishes or removes it (queries.journal), and no other attempt runs meanwhile.
    journal = journal_build(destination_id=destination_id, files=files, manifest_path=manifest_key)
    if not query_publication_record(claim=claim, journal=journal):
        # A cancel that arrived after the last part (Canceled now, not when the lease runs out), or a lost lease.
        if not query_stopped(claim=claim, timed_out=False):
            logger.warning(
                "query %s attempt %s lost its lease before publishing", request.guid, claim.attempt
            )
        return  # leaving the publication block removes what was staged
    delivery.tries.run(
        lambda: delivery.publication.commit(
            (manifest_bytes(manifest), manifest_key), commit_check=lambda: _holds(claim)
        )
    )
    failpoint("publish.committed")
    if not query_complete(
        claim=claim,
        files=files,
        manifest_path=manifest_key,
        rows=sum(p.rows for p in parts),
        bytes_written=sum(p.bytes for p in parts),
        destination_id=destination_id,
    ):
        # The lease was lost after the fenced publish: the worker stalled for a whole lease between the check
        # and `Completed`. If the reaper found this publication complete, the query is Completed with these
        # very files; otherwise they go (the manifest key is shared by every attempt: it is left to the winner).
        logger.error("query %s attempt %s lost its lease after publishing", request.guid, claim.attempt)
        if not query_completed_with(query_id=request.pk, files=files):
            delivery.storage.delete([str(entry["path"]) for entry in files])
