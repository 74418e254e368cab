"""One export into one publication: record batches are written as gzipped CSV parts, each part staged at the
destination as soon as it is finished (while the next is written), then everything committed at once.

This is the toolkit's half of a query run (queries.runner is the other: the claim, the lease, the journal and
the status). It knows nothing of queries: what it needs from its caller is one ExportControl.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from exports.delivery import DeliveryControl, DeliveryTries, PartUploader
from exports.results import ResultNames
from exports.schema import Column
from exports.storage.base import CommitCheck, Publication
from exports.writers import PartFile
from exports.writers.formats import OutputFormat, write_parts


class ExportControl(DeliveryControl, Protocol):
    """What an export asks of whoever runs it: whether to stop, where progress goes, each delivery try (the
    stop event, see DeliveryControl, stops the uploads too)."""

    def should_stop(self) -> bool:
        """Checked before each batch: True stops the export."""

    def progress(self, rows: int, bytes_written: int) -> None:
        """Running totals, as batches are written."""


@dataclass(frozen=True, slots=True)
class ExportOptions:
    part_bytes: int  # a new part after this many uncompressed bytes
    compression_level: int  # ISA-L level, 0-3
    max_bytes: int | None  # the result's size cap (uncompressed)
    parts_in_flight: int  # finished parts that may wait on disk for their upload
    retries: int  # of a transient delivery failure, per operation
    backoff_seconds: float  # the first retry's wait; doubles each retry


class StagedExport:
    """Writes, stages and commits one result. Use `write()` once, then `commit()`; DeliveryFailed,
    WriteError (its kinds) and the batch source's own errors pass through."""

    def __init__(
        self,
        publication: Publication,
        *,
        names: ResultNames,
        directory: Path,
        options: ExportOptions,
        control: ExportControl,
        label: str,
        on_upload_thread_exit: Callable[[], None] = lambda: None,
    ) -> None:
        self._publication = publication
        self._names = names
        self._directory = directory
        self._options = options
        self._control = control
        self._on_upload_thread_exit = on_upload_thread_exit
        self.tries = DeliveryTries(
            retries=options.retries, backoff_seconds=options.backoff_seconds, control=control, label=label
        )

    def write(
        self,
        batches: Iterable[pa.RecordBatch],
        columns: Sequence[Column],
        *,
        output: OutputFormat | None = None,
        header: Sequence[str] | None = None,
    ) -> list[PartFile]:
        """Every batch written in `output`'s format (the original CSV by default; `header`: the column titles)
        and every part staged (a part without rows is not uploaded)."""
        uploader = PartUploader(
            self._publication,
            key_for=self._names.key,
            in_flight=self._options.parts_in_flight,
            tries=self.tries,
            on_thread_exit=self._on_upload_thread_exit,
        )
        try:
            parts = write_parts(
                batches,
                output=output or OutputFormat(),
                columns=columns,
                header=header,
                directory=self._directory,
                name_for_part=self._names.part,
                part_bytes=self._options.part_bytes,
                compression_level=self._options.compression_level,
                max_bytes=self._options.max_bytes,
                control=_Uploading(self._control, uploader),
            )
            uploader.finish()
            return parts
        finally:
            uploader.close()

    def commit(self, manifest: bytes, *, commit_check: CommitCheck) -> None:
        """Place the staged parts and the manifest under their final keys (manifest last), retried like a
        part's upload; `commit_check` is asked just before the first final key appears."""
        key = self._names.key(self._names.manifest)
        self.tries.run(lambda: self._publication.commit((manifest, key), commit_check=commit_check))


class _Uploading:
    """The writer's control: the caller's, with each finished part handed to the uploader."""

    def __init__(self, control: ExportControl, uploader: PartUploader) -> None:
        self._control = control
        self.part_finished = uploader.put

    def should_stop(self) -> bool:
        return self._control.should_stop()

    def progress(self, rows: int, bytes_written: int) -> None:
        self._control.progress(rows, bytes_written)
