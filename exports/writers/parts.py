"""What every writer shares: the part files it hands back, the control it answers to, and the loop that feeds
it batches (stop checks, merging of small batches, the size cap, progress, cleanup on failure).

A writer is a PartWriter: it cuts a batch into chunks, writes each chunk somewhere among its parts, and at the
end hands back its parts in order. `parts_write` runs one over a stream of batches with the contract of
`write_parts` (exports.writers.formats): every file under a temporary name, everything removed on any error.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import pyarrow as pa

from exports.errors import WriteCanceled, WriteError, WriteLimitExceeded
from exports.schema import Column

# Smaller input batches are merged up to this many rows before formatting.
COALESCE_ROWS = 16_384
P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class PartFile:
    """One finished part, still under its temporary path; `name` is the final file name to publish it as.

    `bytes` counts the part's uncompressed content as its writer measures it (the CSV or NDJSON text, header
    included; the xlsx sheet's row XML; the Arrow size of a parquet part's rows), `compressed_bytes` the file
    on disk, and `sha256` is the hex digest of the file's bytes.
    """

    name: str
    path: Path
    rows: int
    bytes: int
    compressed_bytes: int
    sha256: str


class WriteControl(Protocol):
    """What a writer asks of, and reports to, whoever runs it: one object instead of three callbacks."""

    def should_stop(self) -> bool:
        """Checked before each batch: True stops the writer (WriteCanceled)."""

    def progress(self, rows: int, bytes_written: int) -> None:
        """The running totals, as batches are written."""

    def part_finished(self, part: PartFile) -> None:
        """A part's file is complete (called in order, on the writer's background thread)."""


class _Uncontrolled:
    """Never stops, reports nowhere; each part's file stays where it was written."""

    def should_stop(self) -> bool:
        return False

    def progress(self, rows: int, bytes_written: int) -> None:
        pass

    def part_finished(self, part: PartFile) -> None:
        pass


UNCONTROLLED: WriteControl = _Uncontrolled()


def temporary_path(directory: Path, name: str) -> Path:
    """Where a part named `name` is written until the storage layer publishes it."""
    return directory / f".{name}.tmp"


def remove_parts(parts: Iterable[PartFile]) -> None:
    """Delete the temporary files of parts that will not be published (e.g. after a failed upload)."""
    for part in parts:
        part.path.unlink(missing_ok=True)


def header_titles(
    columns: Sequence[Column], header: Sequence[str] | None, *, distinct: bool = False
) -> list[str]:
    """The column titles to write: `header`, or the column names. Raises ValueError on a count mismatch, and
    on a repeated title when `distinct` (keys and column names of formats that look columns up by title)."""
    titles = list(header) if header is not None else [column.name for column in columns]
    if len(titles) != len(columns) or not columns:
        raise ValueError("need one header name per column, and at least one column")
    if distinct and len(set(titles)) != len(titles):
        raise ValueError("the header titles must be distinct in this format (they are keys or column names)")
    return titles


@dataclass(frozen=True, slots=True)
class PartTarget:
    """Where a writer's parts go and when a new one starts: part i at temporary_path(directory,
    name_for_part(i)), a new part past part_bytes, each finished part handed to on_part."""

    directory: Path
    name_for_part: Callable[[int], str]
    part_bytes: int
    on_part: Callable[[PartFile], None]

    def __post_init__(self) -> None:
        if self.part_bytes < 1:
            raise ValueError("part_bytes must be positive")


class PartWriter(Protocol):
    """One format's writer, driven by `parts_write`."""

    rows_written: int
    bytes_written: int  # uncompressed, as PartFile.bytes counts them, over all parts

    def chunks(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        """Slices of a batch small enough to format at once (the size cap is checked after each)."""

    def write(self, chunk: pa.RecordBatch) -> None: ...

    def finish(self) -> list[PartFile]:
        """Close the last part and return every part in order (zero rows still make one part)."""

    def discard(self) -> None:
        """Remove every file written so far; safe to call at any point, once."""


def parts_write(
    batches: Iterable[pa.RecordBatch],
    writer: PartWriter,
    *,
    control: WriteControl,
    max_bytes: int | None,
) -> list[PartFile]:
    """Feed the batches to `writer` (see write_parts for the contract); return its parts in order."""
    source = until_stopped(batches, control.should_stop)
    try:
        for batch in coalesced(source):
            for chunk in writer.chunks(batch):
                with as_write_error():
                    writer.write(chunk)
                if max_bytes is not None and writer.bytes_written > max_bytes:
                    raise WriteLimitExceeded(f"export exceeds the limit of {max_bytes} uncompressed bytes")
            control.progress(writer.rows_written, writer.bytes_written)
        with as_write_error():
            return writer.finish()
    except BaseException:
        writer.discard()
        raise
    finally:
        source.close()  # an abandoned engine cursor is released now, not whenever the traceback dies


def until_stopped(
    batches: Iterable[pa.RecordBatch], should_stop: Callable[[], bool] | None
) -> Generator[pa.RecordBatch, None, None]:
    """The batches, asking should_stop() before each one is pulled (so the warehouse stops early too)."""
    iterator = iter(batches)
    try:
        while True:
            if should_stop is not None and should_stop():
                raise WriteCanceled("export canceled")
            try:
                batch = next(iterator)
            except StopIteration:
                return
            yield batch
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def coalesced(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Small consecutive batches of one schema merged into batches of at least COALESCE_ROWS rows.

    Formatting costs a few dozen kernel calls per batch whatever its size, so tiny batches (an engine that
    fetches 1,000 rows at a time) would spend most of their time in call overhead.
    """
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        if pending and batch.schema != pending[0].schema:
            yield _concatenated(pending)
            pending, pending_rows = [], 0
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows >= COALESCE_ROWS:
            yield _concatenated(pending)
            pending, pending_rows = [], 0
    if pending:
        yield _concatenated(pending)


def _concatenated(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    return batches[0] if len(batches) == 1 else pa.concat_batches(batches)


def check_width(batch: pa.RecordBatch, columns: Sequence[Column]) -> None:
    if batch.num_columns != len(columns):
        raise WriteError(f"batch has {batch.num_columns} columns, expected {len(columns)}")


@contextlib.contextmanager
def as_write_error() -> Iterator[None]:
    """Our own failures as WriteError; the batch source's and the callbacks' errors are left alone."""
    try:
        yield
    except OSError as exc:  # a full or failing disk may recover
        raise WriteError(f"cannot write export file: {exc}", retryable=True) from exc
    except pa.ArrowException as exc:
        raise WriteError(f"cannot format export: {exc}") from exc


class Background:
    """Runs steps on one background thread, in submission order, at most `depth` steps behind the caller.

    Compressors, hashlib and file writes release the GIL, so compressing chunk n overlaps formatting chunk
    n + 1 (Arrow kernels release it too). `depth` bounds how many formatted chunks wait in memory.
    """

    def __init__(self, depth: int = 2, name: str = "export-writer") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: deque[Future[Any]] = deque()
        self._depth = depth

    def submit(self, step: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self._executor.submit(step, *args)
        self._pending.append(future)
        while len(self._pending) > self._depth:
            self._pending.popleft().result()  # re-raises a failed step's error here, in the caller
        return future

    def drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def stop(self) -> None:
        """Wait for the running step, drop the queued ones; safe to call after drain()."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()


class PartSequence(Generic[P]):
    """The life of a writer's parts: opened one after the other, each completed (its file closed and hashed)
    on one background thread in order and handed to `target.on_part` there, all removed by discard().

    A subclass says how a part starts (`_start`, on the caller's thread), how it is completed (`_complete`,
    in the background, after every write submitted before it) and how its file is removed (`_remove`).
    """

    def __init__(self, target: PartTarget, *, thread_name: str) -> None:
        self._target = target
        self._background = Background(name=thread_name)
        self._current: P | None = None
        self._closed: list[tuple[P, Future[PartFile]]] = []

    def finish(self) -> list[PartFile]:
        if self._current is None and not self._closed:
            self._open()  # zero rows still make one part
        if self._current is not None:
            self._close()
        self._background.drain()
        self._background.stop()
        return [completed.result() for _, completed in self._closed]

    def discard(self) -> None:
        """Remove every file written so far (the background thread is stopped first)."""
        self._background.stop()
        parts = [part for part, _ in self._closed]
        if self._current is not None:
            parts.append(self._current)
        for part in parts:
            self._remove(part)

    def _open(self) -> P:
        name = self._target.name_for_part(len(self._closed))
        self._current = self._start(name, temporary_path(self._target.directory, name))
        return self._current

    def _close(self) -> None:
        part = self._current
        assert part is not None
        completed = self._background.submit(self._complete, part)
        self._closed.append((part, completed))
        self._background.submit(self._hand_over, completed)
        self._current = None

    def _hand_over(self, completed: Future[PartFile]) -> None:
        self._target.on_part(completed.result())

    def _start(self, name: str, path: Path) -> P:
        raise NotImplementedError

    def _complete(self, part: P) -> PartFile:
        raise NotImplementedError

    def _remove(self, part: P) -> None:
        raise NotImplementedError
