"""One slice of a big export, run by whichever worker takes it; and the query's publication once its last
slice is done (docs/DESIGN.md §8: one query, many workers).

- A slice runs like a whole query (queries.runner): the plan's slice statement with the slice's TimeStamp
  bounds, parts written and staged while the next is written, a supervisor renewing the slice's lease and the
  query's (a cancel, the time limit or a lost lease stops it). Its parts are then committed at the customer's
  destination under hidden names of its own (`.<guid>-a<attempt>-s<slice>_QueryExport_<run>__<n>...`), so a
  retried slice never meets the files of the run it replaces, and recorded on the slice with its summary.
- The slice that finds every slice of its run done takes the publication (one conditional UPDATE: only one
  can), numbers the parts in time order (slice by slice, each slice's parts in order), journals the
  publication, moves each part to its final name on the server (no byte travels again), writes the manifest
  last and records Completed: what a single worker would have published, all or nothing, with the same
  journal for the reaper if it dies half way.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import pickle
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from django import db
from django.conf import settings
from django.utils import timezone

from exports.delivery import DeliveryControl, DeliveryFailed, DeliveryTries
from exports.engines.base import Statement, WarehouseEngine
from exports.errors import PublishFenced, WriteCanceled
from exports.pipeline import StagedExport
from exports.results import ResultNames
from exports.storage.base import Storage
from exports.summary import ExportSummary, SummaryCollector
from exports.writers import PartFile, manifest_build, manifest_bytes, manifest_schema
from insights.destinations import destination_storage
from insights.failpoints import failpoint
from insights.logs import log_context_set
from insights.models import Customer
from queries.delivery import query_destination
from queries.dispatch import slice_enqueue
from queries.errors import QueryFailed
from queries.journal import journal_build
from queries.lifecycle import (
    INTERNAL_ERROR,
    Claim,
    cap_exceeded_message,
    query_complete,
    query_completed_with,
    query_fail,
    query_publication_take,
    query_stopped,
)
from queries.models import QuerySlice
from queries.plan import PlanError, plan_slices
from queries.runner import (
    EMPTY_RESULT,
    NOT_RUNNABLE,
    RETRY_BACKOFF_SECONDS,
    WAREHOUSE_CHANGED,
    RetryLater,
    RunControl,
    delivery_failed_message,
    export_options,
    holds,
    output_of,
    supervised,
    write_parts_of,
)
from queries.slice_lifecycle import (
    SliceClaim,
    slice_claim,
    slice_done,
    slice_heartbeat,
    slice_lease_renew,
    slice_release,
    slices_all_done,
)
from queries.slicing import slice_statement
from queries.warehouse import warehouse_engine

logger = logging.getLogger(__name__)


def slice_run(*, slice_id: int) -> None:
    """Run a queued slice if its query still runs the attempt that cut it; safe to call twice."""
    claim = slice_claim(slice_id=slice_id)
    if claim is None:
        logger.info("slice %s: nothing to run (done, its query ended, or held by another worker)", slice_id)
        return
    query = claim.query.query
    log_context_set(guid=query.guid, customer=query.customer.key, attempt=claim.query.attempt)
    logger.info("query %s slice %s run %s started", query.guid, claim.slice.index, claim.run)
    workdir = (
        Path(settings.VAR_DIR)
        / "work"
        / f"{query.guid}-{claim.query.attempt}-s{claim.slice.index}-r{claim.run}"
    )
    try:
        slices = _slice_export(claim, workdir)
        if slices is not None:
            _publish(claim.query, slices)
    except QueryFailed as failure:
        query_fail(claim=claim.query, message=failure.message)
    except RetryLater as retry:
        if slice_release(claim=claim, message=retry.message):
            slice_enqueue(slice_id=slice_id, countdown=RETRY_BACKOFF_SECONDS * claim.run)
    except Exception:
        logger.exception("query %s slice %s failed unexpectedly", query.guid, claim.slice.index)
        query_fail(claim=claim.query, message=INTERNAL_ERROR)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def slice_names(
    query_guid: str, *, attempt: int, index: int, run: int, customer_key: str, extension: str
) -> ResultNames:
    """Where a slice's parts wait for the publication: hidden names beside the result's, one set per run."""
    return ResultNames.report(
        customer_key=customer_key,
        guid=f".{query_guid}-a{attempt}-s{index:04d}",
        epoch_ms=run,
        extension=extension,
    )


def _slice_export(claim: SliceClaim, workdir: Path) -> list[QuerySlice] | None:
    """Write and stage the slice's parts and record them; every slice of the run when this was the last one
    done, else None (others are still running, or this run was stopped: the query is marked so)."""
    query = claim.query.query
    try:
        plan = plan_slices(query.plan)
    except PlanError:
        plan = None
    if plan is None:
        logger.error("query %s has slices but a plan without them", query.guid)
        raise QueryFailed(NOT_RUNNABLE)
    statement = slice_statement(plan, claim.range)
    with contextlib.closing(warehouse_engine()) as engine:
        return _slice_write(claim, workdir, statement, engine)


def _slice_write(
    claim: SliceClaim, workdir: Path, statement: Statement, engine: WarehouseEngine
) -> list[QuerySlice] | None:
    query, query_claim = claim.query.query, claim.query
    if statement.dialect != engine.dialect.name:
        raise QueryFailed(WAREHOUSE_CHANGED)
    workdir.mkdir(parents=True, exist_ok=True)
    # The time limit is the query's: counted from when its run started, whichever slice this is.
    ends = (query.started_at or timezone.now()) + timedelta(seconds=settings.QUERY_TIME_LIMIT_SECONDS)
    control = RunControl(query_claim, deadline=time.monotonic() + (ends - timezone.now()).total_seconds())
    output, titles = output_of(query_claim)
    customer = query.customer
    names = slice_names(
        query.guid,
        attempt=query_claim.attempt,
        index=claim.slice.index,
        run=claim.run,
        customer_key=customer.key,
        extension=output.extension,
    )
    with (
        supervised(
            query_claim,
            engine,
            control,
            lambda rows, size: slice_heartbeat(claim=claim, rows=rows, bytes_written=size),
        ),
        destination_storage(query_destination(query)) as storage,
        storage.publication() as publication,
    ):
        control.storage_kind = storage.kind
        export = StagedExport(
            publication,
            names=names,
            directory=workdir,
            options=export_options(customer),
            control=control,
            label=f"query {query.guid} slice {claim.slice.index}",
            on_upload_thread_exit=lambda: db.connection.close(),
        )
        summary = ExportSummary(statement)
        parts = write_parts_of(query_claim, export, engine, summary, control, output=output, titles=titles)
        if parts is None:
            return None
        parts = [part for part in parts if part.rows]  # a slice without rows stages nothing
        failpoint("slice.written")  # a test's cancel lands here, between the writing and the commit
        if not _commit(claim, export, names, parts, control):
            return None
        entries = [_entry(names, part) for part in parts]
        state = None if summary.collector is None else pickle.dumps(summary.collector)
        rows, size = sum(p.rows for p in parts), sum(p.bytes for p in parts)
        if not slice_done(claim=claim, parts=entries, rows=rows, bytes_written=size, summary_state=state):
            _discard(storage, [*(e["path"] for e in entries), names.key(names.manifest)])
            return None
    return slices_all_done(claim=query_claim)


def _commit(
    claim: SliceClaim, export: StagedExport, names: ResultNames, parts: list[PartFile], control: RunControl
) -> bool:
    """Commit the slice's staged parts under their hidden names, with a small manifest of its own; False when
    the run was stopped or lost the slice meanwhile."""
    listing = {"slice": claim.slice.index, "run": claim.run, "parts": [part.name for part in parts]}
    manifest = json.dumps(listing).encode() + b"\n"
    try:
        export.commit(manifest, commit_check=lambda: slice_lease_renew(claim=claim))
    except WriteCanceled:
        query_stopped(claim=claim.query, timed_out=control.out_of_time)
        return False
    except DeliveryFailed as failure:
        if isinstance(failure.cause, PublishFenced):
            query_stopped(claim=claim.query, timed_out=False)  # a cancel, if that is why; else nothing to say
            return False
        raise QueryFailed(delivery_failed_message(failure)) from None
    return True


def _entry(names: ResultNames, part: PartFile) -> dict[str, Any]:
    return {
        "path": names.key(part.name),
        "size": part.compressed_bytes,
        "rows": part.rows,
        "bytes": part.bytes,
        "sha256": part.sha256,
    }


# -- the publication, by the last slice done --------------------------------------------------------------------


class _Moving(DeliveryControl):
    """The publication's delivery control: nothing stops it but its own failures (the fence is the journal)."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def delivery_tried(self) -> None:
        pass


def _publish(claim: Claim, slices: list[QuerySlice]) -> None:
    """Number every slice's parts in time order, journal them, move them to their final names, write the
    manifest and record Completed (or leave it to the slice that took the publication first)."""
    query = claim.query
    customer = query.customer
    entries = [entry for piece in slices for entry in piece.parts]
    if not entries:
        raise QueryFailed(EMPTY_RESULT)
    if (
        customer.max_bytes_per_query is not None
        and sum(e["bytes"] for e in entries) > customer.max_bytes_per_query
    ):
        raise QueryFailed(cap_exceeded_message(customer))
    output, _ = output_of(claim)
    names = ResultNames.report(
        customer_key=customer.key,
        guid=query.guid,
        epoch_ms=int((query.started_at or timezone.now()).timestamp() * 1000),
        extension=output.extension,
    )
    files = [{**entry, "path": names.key(names.part(n))} for n, entry in enumerate(entries)]
    figures = _summary(slices)
    summary_text = "" if figures is None else json.dumps(figures, separators=(",", ":"))
    destination = query_destination(query)
    destination_id = getattr(destination, "pk", None)
    journal = journal_build(
        destination_id=destination_id,
        files=files,
        manifest_path=names.key(names.manifest),
        summary=summary_text,
    )
    if not query_publication_take(claim=claim, journal=journal):
        logger.info("query %s: its publication is another slice's (or the run was stopped)", query.guid)
        return
    plan = plan_slices(query.plan)
    assert plan is not None  # a run with slices has a plan with them
    columns = ExportSummary(plan.statement).columns
    manifest = manifest_build(
        parts=[_part_file(names.part(n), entry) for n, entry in enumerate(entries)],
        query=query.body_json,
        fingerprint=query.fingerprint,
        output=query.output,
        schema=manifest_schema(columns),
        created_at=timezone.now(),
        guid=query.guid,
        summary=figures,
    )
    tries = DeliveryTries(
        retries=int(settings.DELIVERY_RETRIES),
        backoff_seconds=float(settings.DELIVERY_BACKOFF_SECONDS),
        control=_Moving(),
        label=f"query {query.guid}",
    )
    manifest_key = names.key(names.manifest)
    with destination_storage(destination) as storage:
        try:
            for entry, final in zip(entries, files, strict=True):
                tries.run(functools.partial(storage.move, entry["path"], final["path"]))
            manifest_key = names.key(names.manifest)
            tries.run(
                lambda: storage.publish(
                    [], (manifest_bytes(manifest), manifest_key), commit_check=lambda: holds(claim)
                )
            )
        except DeliveryFailed as failure:
            # Nothing half-published is left: the parts moved so far go (the manifest never appeared).
            _discard(storage, [f["path"] for f in files])
            raise QueryFailed(delivery_failed_message(failure)) from None
        completed = query_complete(
            claim=claim,
            files=files,
            manifest_path=manifest_key,
            rows=sum(f["rows"] for f in files),
            bytes_written=sum(f["bytes"] for f in files),
            destination_id=destination_id,
            summary=summary_text,
        )
        if not completed and not query_completed_with(query_id=query.pk, files=files):
            logger.error("query %s attempt %s lost its lease after publishing", query.guid, claim.attempt)
            storage.delete([f["path"] for f in files])
            return
        _discard(
            storage, [_slice_manifest(query.guid, piece, customer, output.extension) for piece in slices]
        )
    QuerySlice.objects.filter(query_id=query.pk, attempt=claim.attempt).delete()
    logger.info("query %s: published %d parts from %d slices", query.guid, len(files), len(slices))


def _manifest_place(storage: Storage, content: bytes, key: str, claim: Claim) -> None:
    """The manifest, last, if the run still holds the query (the publish fence)."""
    storage.publish([], (content, key), commit_check=lambda: holds(claim))


def _summary(slices: list[QuerySlice]) -> dict[str, Any] | None:
    """The slices' summaries merged in time order (None: counted by none, as for plans without summaries)."""
    states = [piece.summary_state for piece in slices if piece.summary_state is not None]
    if not states:
        return None
    merged = SummaryCollector()
    for state in states:
        # Our own bytes, from our own database (written by slice_done), never a customer's.
        merged.merge(pickle.loads(bytes(state)))  # noqa: S301
    return merged.result()


def _part_file(name: str, entry: dict[str, Any]) -> PartFile:
    return PartFile(
        name=name,
        path=Path(),
        rows=entry["rows"],
        bytes=entry["bytes"],
        compressed_bytes=entry["size"],
        sha256=entry["sha256"],
    )


def _slice_manifest(guid: str, piece: QuerySlice, customer: Customer, extension: str) -> str:
    names = slice_names(
        guid,
        attempt=piece.attempt,
        index=piece.index,
        run=piece.runs,
        customer_key=customer.key,
        extension=extension,
    )
    return names.key(names.manifest)


def slice_leftovers(piece: QuerySlice) -> list[str]:
    """What a slice left at the destination (its parts, its manifest): for the sweep of slices no run will
    publish (queries.maintenance)."""
    query = piece.query
    try:
        output, _ = output_of(Claim(query=query, attempt=piece.attempt))
    except QueryFailed:
        return [entry["path"] for entry in piece.parts]
    return [entry["path"] for entry in piece.parts] + [
        _slice_manifest(query.guid, piece, query.customer, output.extension)
    ]


def _discard(storage: Storage, keys: list[str]) -> None:
    try:
        storage.delete(keys)
    except Exception:
        logger.warning("could not remove %d slice file(s) yet; the sweep will", len(keys), exc_info=True)
