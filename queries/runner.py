"""Run one query: compile -> warehouse engine -> CSV/gzip parts -> storage, under a heartbeat lease.

A supervisor thread extends the lease every HEARTBEAT seconds and watches for a cancel; on a cancel (or a lost
lease) it interrupts the warehouse statement and the writer stops before the next batch. Nothing is published
unless every part was written, and the final transition is fenced by the attempt number.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django import db
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from exports.engines.base import QueryCanceled, Statement, WarehouseEngine, WarehouseError
from exports.storage.base import Publication, Storage, StorageError
from exports.writers import (
    PartFile,
    WriteCanceled,
    WriteError,
    WriteLimitExceeded,
    manifest_build,
    manifest_bytes,
    manifest_file_name,
    manifest_schema,
    part_file_name,
    write_csv_gzip_parts,
)
from insights.destinations import destination_default, destination_storage
from insights.models import Destination
from queries.compiler import query_compile
from queries.delivery import report_key
from queries.errors import QueryFailed
from queries.models import QueryStatus
from queries.part_upload import DeliveryTries, PartUploader
from queries.services import (
    Claim,
    lease_duration,
    query_claim,
    query_complete,
    query_delivery_attempted,
    query_fail,
    query_heartbeat,
    query_lease_renew,
)
from queries.validation import QueryValidationError, query_validate
from queries.warehouse import warehouse_engine

logger = logging.getLogger(__name__)

HEARTBEAT = 1.0
EMPTY_RESULT = "The query returned empty values"
CANCELED = "Canceled at the customer's request."
TIMED_OUT = (
    "The query ran longer than the time limit and was canceled; narrow the timestamp window or the filters."
)


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
    except Exception:
        logger.exception("query %s attempt %s failed unexpectedly", claim.request.guid, claim.attempt)
        query_fail(claim=claim, message="The query failed because of an internal error; it has been logged.")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(claim: Claim, workdir: Path) -> None:
    customer = claim.request.customer
    try:
        query = query_validate(claim.request.body, max_window=timedelta(days=customer.max_window_days))
    except QueryValidationError as error:
        raise QueryFailed(f"The query is no longer valid: {error.message}") from None
    engine = warehouse_engine()
    statement = query_compile(query, customer_id=customer.key, dialect=engine.dialect)
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


def _export_and_publish(
    claim: Claim, engine: WarehouseEngine, statement: Statement, workdir: Path, progress: _Progress
) -> None:
    """Export into a publication at the customer's destination (parts upload while later parts are being
    written), then commit it: all or nothing, manifest last."""
    destination = destination_default(claim.request.customer)  # None: this server's local directory
    storage = destination_storage(destination)
    tries = DeliveryTries(
        retries=int(settings.DELIVERY_RETRIES),
        backoff_seconds=float(settings.DELIVERY_BACKOFF_SECONDS),
        stop=progress.stop,
        record_try=lambda: query_delivery_attempted(claim=claim),
        label=f"query {claim.request.guid}",
    )
    try:
        with storage.publication() as publication:
            parts = _export_uploading(claim, engine, statement, workdir, progress, publication, tries)
            if parts is None:
                return  # canceled; leaving the block removes what was staged
            if sum(p.rows for p in parts) == 0:
                raise QueryFailed(EMPTY_RESULT)
            _commit(
                claim,
                (storage, publication, destination),
                tries,
                parts,
                schema=manifest_schema(statement.columns),
            )
    finally:
        storage.close()


def _export_uploading(
    claim: Claim,
    engine: WarehouseEngine,
    statement: Statement,
    workdir: Path,
    progress: _Progress,
    publication: Publication,
    tries: DeliveryTries,
) -> list[PartFile] | None:
    """The parts written (and staged), or None when the export was canceled (the query is marked so)."""
    customer = claim.request.customer
    uploader = PartUploader(
        publication,
        key_for=lambda name: report_key(customer, name),
        in_flight=settings.EXPORT_PARTS_IN_FLIGHT,
        tries=tries,
        stop=progress.stop,
        on_thread_exit=lambda: db.connection.close(),  # the upload thread's own connection
    )
    try:
        parts = _export(claim, engine, statement, workdir, progress, on_part=uploader.put)
        uploader.finish()
        return parts
    except (QueryCanceled, WriteCanceled, SoftTimeLimitExceeded):
        timed_out = progress.timed_out or time.monotonic() >= progress.deadline
        query_fail(claim=claim, status=QueryStatus.CANCELED, message=TIMED_OUT if timed_out else CANCELED)
        return None
    except WriteLimitExceeded:
        raise QueryFailed(
            f"The result is larger than this account's per-query cap of {customer.max_bytes_per_query} bytes; "
            "narrow the timestamp window, the fields or the filters."
        ) from None
    except WarehouseError as error:
        raise QueryFailed(f"The warehouse could not run the query: {error}") from None
    except WriteError as error:
        raise QueryFailed(f"The result could not be written: {error}") from None
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
    claim: Claim,
    target: tuple[Storage, Publication, Destination | None],
    tries: DeliveryTries,
    parts: list[PartFile],
    *,
    schema: list[dict[str, str]],
) -> None:
    """Place the staged parts and the manifest, then mark the query Completed (fenced by the attempt)."""
    storage, publication, destination = target
    request = claim.request
    manifest = manifest_build(
        parts=parts,
        query=request.body,
        fingerprint=request.fingerprint,
        schema=schema,
        created_at=timezone.now(),
        guid=request.guid,
    )
    manifest_key = report_key(request.customer, manifest_file_name(guid=request.guid))
    keys = [report_key(request.customer, p.name) for p in parts]
    # The fencing check runs once everything is staged, just before the first file becomes visible.
    tries.run(
        lambda: publication.commit(
            (manifest_bytes(manifest), manifest_key), commit_check=lambda: _holds(claim)
        )
    )
    files = [
        {"path": key, "size": p.compressed_bytes, "rows": p.rows, "bytes": p.bytes, "sha256": p.sha256}
        for p, key in zip(parts, keys, strict=True)
    ]
    if not query_complete(
        claim=claim,
        files=files,
        manifest_path=manifest_key,
        rows=sum(p.rows for p in parts),
        bytes_written=sum(p.bytes for p in parts),
        destination=destination,
    ):
        # The lease was lost after the fenced publish (the worker stalled for a whole lease between the
        # check and the renames). This attempt's parts go; the manifest key is shared by every attempt,
        # so it is left to the winner.
        logger.error("query %s attempt %s lost its lease after publishing", request.guid, claim.attempt)
        storage.delete(keys)
