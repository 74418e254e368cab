"""Arrow record batches -> gzipped CSV part files, formatted in bulk with Arrow compute kernels.

The CSV dialect (docs/DESIGN.md §3), byte for byte:

- UTF-8, no BOM. The first line is the header (the column names, or `header`). Every line, the last one
  included, ends with LF (`\\n`), never CRLF.
- Fields are separated by `,`. A field is quoted (RFC 4180) only when it contains a comma, a double quote, CR
  or LF; inner double quotes are doubled. Leading and trailing spaces are data: they are kept and do not cause
  quoting.
- NULL is the empty field. An empty STRING is the empty field too: CSV cannot tell NULL from "". The one
  exception is a one-column file, where an empty field is written as `""` so that its line is not blank
  (many readers skip blank lines, which would lose rows); it still reads back as "".
- STRING as is; INTEGER in plain decimal (`-42`); BOOLEAN `true` / `false`.
- TIMESTAMP (UTC) as `YYYY-MM-DDTHH:MM:SS.mmmZ`, truncated (floored) to the millisecond, never rounded:
  `1969-12-31T23:59:59.999Z` for one microsecond before the epoch. Years 0001 to 9999 only.
- FLOAT: the shortest digits that read back to the same double (the digits of Python's `repr`), laid out as
  plain decimal when the decimal exponent is between -6 and 9 (`1.5`, `-0.25`, `0.000001`, `1234567890.5`)
  and as `<d>[.<ddd>]e<sign><exponent>` otherwise (`1e-7`, `1e+10`, `1.2345678901234568e+20`). Whole
  values carry no fraction (`3`, not `3.0`); also `-0`, `inf`, `-inf`, `nan`. This is Arrow's own
  float-to-string cast, so the fast path needs no per-value work.

Speed: every column is turned into a UTF-8 string array by vectorised kernels, the columns are joined into one
string per row, and the row strings' contiguous data buffer goes straight to the ISA-L gzip compressor (zlib
when ISA-L is missing). No Python code runs per row or per value. `pyarrow.csv.CSVWriter` is not used: it
quotes every string and writes `""` for an empty string, which is not the dialect above.

One module for one thing done thoroughly (it is long on purpose): the dialect's formatting kernels, the part
rolling and the background compression share one hot loop and its invariants.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import re
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from exports.errors import WriteCanceled, WriteError, WriteLimitExceeded
from exports.schema import Column, ColumnType

try:  # ISA-L compresses several times faster than zlib at the same ratio; optional so a bare install works
    from isal import isal_zlib as _deflate
except ImportError:  # pragma: no cover - isal is pinned in requirements.txt
    _deflate = zlib  # type: ignore[misc]

LINE_TERMINATOR = "\n"
# Characters that force quoting (RFC 4180). A space does not: it is data, and quoting it is not required.
NEEDS_QUOTING = re.compile(r'[,"\r\n]')
# zlib's window bits for a gzip container (header and CRC32 trailer) with a 32 KiB window.
_GZIP_WBITS = 16 + 15
# Input is formatted in chunks of about this many bytes, which bounds memory per step and keeps the row
# strings far below Arrow's 2 GiB limit for one string array.
_CHUNK_TARGET_BYTES = 32 * 1024 * 1024
# Smaller input batches are merged up to this many rows before formatting.
_COALESCE_ROWS = 16_384
# Upper bound of the text width of one non-string value, used only to size chunks.
_FIXED_WIDTH = {
    ColumnType.INTEGER: 20,
    ColumnType.FLOAT: 24,
    ColumnType.BOOLEAN: 5,
    ColumnType.TIMESTAMP: 24,
}
_TIMESTAMP_MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
_TIMESTAMP_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


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


_UNCONTROLLED = _Uncontrolled()


@dataclass(frozen=True, slots=True)
class PartFile:
    """One finished part, still under its temporary path; `name` is the final file name to publish it as.

    `bytes` counts the uncompressed CSV (header included), `compressed_bytes` the gzip file, and `sha256` is
    the hex digest of the gzip file's bytes.
    """

    name: str
    path: Path
    rows: int
    bytes: int
    compressed_bytes: int
    sha256: str


class _Compressor(Protocol):
    def compress(self, data: bytes | memoryview, /) -> bytes: ...

    def flush(self, mode: int = ..., /) -> bytes: ...


def temporary_path(directory: Path, name: str) -> Path:
    """Where a part named `name` is written until the storage layer publishes it."""
    return directory / f".{name}.tmp"


def csv_field(text: str) -> str:
    """One field in the dialect above (used for the header; rows go through the vectorised path)."""
    if NEEDS_QUOTING.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_header(names: Sequence[str]) -> bytes:
    """The header line, terminator included."""
    return (",".join(csv_field(name) for name in names) + LINE_TERMINATOR).encode("utf-8")


def csv_rows(batch: pa.RecordBatch, columns: Sequence[Column]) -> pa.StringArray:
    """Format a batch as one string per row, each ending with the line terminator, nulls as empty fields.

    The batch's columns are taken by position and cast to each Column's type when they differ (an engine may
    hand back int32 or a zoned timestamp). Raises WriteError when the batch does not fit the columns.
    """
    if batch.num_columns != len(columns):
        raise WriteError(f"batch has {batch.num_columns} columns, expected {len(columns)}")
    fields = [_format_column(batch.column(i), column) for i, column in enumerate(columns)]
    if len(fields) == 1:
        # A lone empty field would make a blank line, which readers skip: write it as "" (see module doc).
        fields[0] = pc.if_else(pc.equal(fields[0], ""), '""', fields[0])
    # Appending the terminator to the last field costs one pass over one column instead of over whole rows.
    fields[-1] = pc.binary_join_element_wise(fields[-1], LINE_TERMINATOR, "")
    if len(fields) == 1:
        return fields[0]
    return pc.binary_join_element_wise(*fields, ",")


def _format_column(values: pa.Array, column: Column) -> pa.Array:
    try:
        if column.type is ColumnType.STRING:
            text = _format_strings(values)
        elif column.type is ColumnType.TIMESTAMP:
            text = _format_timestamps(values, column.name)
        elif column.type is ColumnType.FLOAT:
            text = values.cast(pa.float64()).cast(pa.string())
        elif column.type is ColumnType.INTEGER:
            text = values.cast(pa.int64()).cast(pa.string())
        else:
            text = values.cast(pa.bool_()).cast(pa.string())  # Arrow spells booleans true/false
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise WriteError(f"column {column.name}: cannot write {values.type} as {column.type}: {exc}") from exc
    return pc.fill_null(text, "")


def _format_strings(values: pa.Array) -> pa.Array:
    text = values.cast(pa.string())
    if not _any_byte_needs_quoting(text):  # the common case: one fast scan of the data buffer, no copy
        return text
    needs_quotes = pc.match_substring_regex(text, NEEDS_QUOTING.pattern)
    # Quote only the values that need it, then put them back in place.
    chosen = pc.filter(text, needs_quotes)
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(chosen, '"', '""'), '"', "")
    return pc.replace_with_mask(text, needs_quotes, quoted)


def _any_byte_needs_quoting(text: pa.Array) -> bool:
    """Whether any value may need quoting: four byte searches over the array's slice of the data buffer.

    One pass per special byte (memchr speed, ~2 GB/s) instead of a regex scan (~0.3 GB/s, measured with
    py-spy at 16% of the export's time). A hit is settled by the exact per-value scan.
    """
    _, _, data = text.buffers()
    if len(text) == 0 or data is None:
        return False
    offsets = _offsets(text)
    raw = data.slice(offsets[0], offsets[len(text)] - offsets[0]).to_pybytes()
    return any(raw.find(special) >= 0 for special in (b",", b'"', b"\r", b"\n"))


def _offsets(text: pa.Array) -> memoryview:
    """The len(text) + 1 value offsets of a (sliced) string array, without copying."""
    width = 8 if pa.types.is_large_string(text.type) else 4
    start = text.offset * width
    view = memoryview(text.buffers()[1])[start : start + (len(text) + 1) * width]
    return view.cast("q" if width == 8 else "i")


def _format_timestamps(values: pa.Array, name: str) -> pa.Array:
    if not pa.types.is_timestamp(values.type):
        raise pa.ArrowTypeError(f"expected a timestamp, got {values.type}")
    if values.type.tz is not None:  # the instant is what counts; drop the zone (values are UTC already)
        values = values.cast(pa.timestamp(values.type.unit))
    # Floor, not truncate toward zero: a pre-1970 instant must not move forward to the next millisecond.
    millis = pc.floor_temporal(values, unit="millisecond").cast(pa.timestamp("ms"))
    _check_timestamp_range(millis, name)
    # Arrow casts timestamp[ms] to "YYYY-MM-DD HH:MM:SS.mmm"; replacing the space and appending Z is ~10x
    # faster than strftime.
    text = pc.binary_replace_slice(millis.cast(pa.string()), 10, 11, "T")
    return pc.binary_join_element_wise(text, "Z", "")


def _check_timestamp_range(millis: pa.Array, name: str) -> None:
    bounds = pc.min_max(millis.cast(pa.int64()))
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is not None and (low < _TIMESTAMP_MIN_MS or high > _TIMESTAMP_MAX_MS):
        raise WriteError(f"column {name}: TIMESTAMP outside years 0001-9999")


def _batch_chunks(batch: pa.RecordBatch, columns: Sequence[Column]) -> Iterator[pa.RecordBatch]:
    """Slices of the batch whose CSV text is about _CHUNK_TARGET_BYTES at most (estimated, not measured)."""
    rows = batch.num_rows
    if rows == 0:
        return
    estimate = rows * (len(columns) + 1)
    for i, column in enumerate(columns):
        if column.type is ColumnType.STRING:
            estimate += _string_data_bytes(batch.column(i)) + 2 * rows  # quotes, at worst
        else:
            estimate += _FIXED_WIDTH[column.type] * rows
    step = max(1, rows * _CHUNK_TARGET_BYTES // max(1, estimate))
    for start in range(0, rows, step):
        yield batch.slice(start, step)


def _until_stopped(
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


def _coalesced(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Small consecutive batches of one schema merged into batches of at least _COALESCE_ROWS rows.

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
        if pending_rows >= _COALESCE_ROWS:
            yield _concatenated(pending)
            pending, pending_rows = [], 0
    if pending:
        yield _concatenated(pending)


def _concatenated(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    return batches[0] if len(batches) == 1 else pa.concat_batches(batches)


def _string_data_bytes(values: pa.Array) -> int:
    if len(values) == 0 or not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return 0
    offsets = _offsets(values)
    return int(offsets[len(values)] - offsets[0])


class _RowText:
    """The formatted rows of one chunk: row i is data[offsets[i]:offsets[i + 1]], read without copying."""

    def __init__(self, rows: pa.Array) -> None:
        self._rows = rows  # keeps the buffers alive
        self.count = len(rows)
        self.offsets = _offsets(rows)
        data = rows.buffers()[2]
        self.data = memoryview(data) if data is not None else memoryview(b"")

    def span(self, first: int, stop: int) -> memoryview:
        return self.data[self.offsets[first] : self.offsets[stop]]

    def fitting(self, first: int, budget: int) -> int:
        """The largest stop >= first such that rows first..stop-1 take at most `budget` bytes."""
        limit = self.offsets[first] + budget
        return bisect.bisect_right(self.offsets, limit, first + 1, self.count + 1) - 1


class _GzipFile:
    """A gzip file being written: compress, hash and count on the way out; nothing is read back."""

    def __init__(self, path: Path, compression_level: int) -> None:
        self.path = path
        self.compressed_bytes = 0
        self._hash = hashlib.sha256()
        self._file: BinaryIO = open(path, "wb")  # closed by finish() or discard()
        self._compressor: _Compressor = _deflate.compressobj(
            compression_level, _deflate.DEFLATED, _GZIP_WBITS
        )

    def write(self, data: memoryview | bytes) -> None:
        self._emit(self._compressor.compress(data))

    def finish(self) -> str:
        """Flush and close; returns the sha256 hex digest of the file's bytes."""
        self._emit(self._compressor.flush())
        self._file.close()
        return self._hash.hexdigest()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)

    def _emit(self, compressed: bytes) -> None:
        if compressed:
            self._hash.update(compressed)
            self._file.write(compressed)
            self.compressed_bytes += len(compressed)


class _Background:
    """Runs steps on one background thread, in submission order, at most `depth` steps behind the caller.

    ISA-L, hashlib and file writes release the GIL, so compressing chunk n overlaps formatting chunk n + 1
    (Arrow kernels release it too). `depth` bounds how many formatted chunks wait in memory.
    """

    def __init__(self, depth: int = 2) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-gzip")
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


@dataclass(slots=True)
class _OpenPart:
    name: str
    file: _GzipFile
    rows: int = 0
    bytes: int = 0


class _PartSequence:
    """Spreads row text over parts of at most part_bytes uncompressed (one over-long row goes alone).

    Decisions (which part, how many rows) are taken here, on the caller's thread; compressing, hashing and
    writing run in the background, in order.
    """

    def __init__(
        self,
        *,
        directory: Path,
        name_for_part: Callable[[int], str],
        header: bytes,
        part_bytes: int,
        compression_level: int,
        on_part: Callable[[PartFile], None] | None = None,
    ) -> None:
        self._directory = directory
        self._on_part = on_part
        self._name_for_part = name_for_part
        self._header = header
        self._part_bytes = part_bytes
        self._compression_level = compression_level
        self._background = _Background()
        self._current: _OpenPart | None = None
        self._closed: list[tuple[_OpenPart, Future[str]]] = []
        self.bytes_written = 0  # uncompressed, headers included, over all parts

    def write(self, text: _RowText) -> None:
        first = 0
        while first < text.count:
            part = self._current or self._open()
            stop = text.fitting(first, self._part_bytes - part.bytes)
            if stop == first:
                if part.rows:  # full: the next row starts a new part
                    self._close()
                    continue
                stop = first + 1  # a row longer than part_bytes still has to go somewhere
            self._write(part, text.span(first, stop), rows=stop - first)
            first = stop

    def finish(self) -> list[PartFile]:
        if self._current is None and not self._closed:
            self._open()  # zero rows still make one part holding the header
        if self._current is not None:
            self._close()
        self._background.drain()
        self._background.stop()
        return [_part_file(part, digest.result()) for part, digest in self._closed]

    def discard(self) -> None:
        """Remove every file written so far (the background thread is stopped first)."""
        self._background.stop()
        parts = [part for part, _ in self._closed]
        if self._current is not None:
            parts.append(self._current)
        for part in parts:
            part.file.discard()

    def _open(self) -> _OpenPart:
        name = self._name_for_part(len(self._closed))
        self._current = _OpenPart(
            name, _GzipFile(temporary_path(self._directory, name), self._compression_level)
        )
        self._write(self._current, self._header, rows=0)
        return self._current

    def _write(self, part: _OpenPart, data: memoryview | bytes, *, rows: int) -> None:
        part.rows += rows
        part.bytes += len(data)
        self.bytes_written += len(data)
        self._background.submit(part.file.write, data)

    def _close(self) -> None:
        part = self._current
        assert part is not None
        digest = self._background.submit(part.file.finish)
        self._closed.append((part, digest))
        if self._on_part is not None:  # after finish, on the same thread: the digest is known by then
            self._background.submit(self._hand_over, part, digest)
        self._current = None

    def _hand_over(self, part: _OpenPart, digest: Future[str]) -> None:
        assert self._on_part is not None
        self._on_part(_part_file(part, digest.result()))


def _part_file(part: _OpenPart, sha256: str) -> PartFile:
    return PartFile(
        name=part.name,
        path=part.file.path,
        rows=part.rows,
        bytes=part.bytes,
        compressed_bytes=part.file.compressed_bytes,
        sha256=sha256,
    )


def write_csv_gzip_parts(
    batches: Iterable[pa.RecordBatch],
    *,
    columns: Sequence[Column],
    directory: Path,
    name_for_part: Callable[[int], str],
    part_bytes: int,
    compression_level: int = 1,
    header: Sequence[str] | None = None,
    max_bytes: int | None = None,
    control: WriteControl | None = None,
) -> list[PartFile]:
    """Write the batches as gzipped CSV parts in `directory` under temporary names; return them in order.

    - Part i is written at `temporary_path(directory, name_for_part(i))`; nothing is ever written under a
      final name, so publishing (all or nothing) is the storage layer's job.
    - A new part starts when the next row would take the current one past `part_bytes` uncompressed bytes;
      every part starts with the header, and a single row longer than part_bytes goes alone in its part.
      Zero rows still give one part, holding only the header.
    - `compression_level` is an ISA-L level, 0 to 3 (zlib is used at the same level when ISA-L is missing).
    - `control` (see WriteControl) is asked `should_stop()` before each batch is pulled from `batches` (True
      raises WriteCanceled); told `progress(rows, bytes)`, the running totals (uncompressed bytes, headers
      included), as batches are written (small batches are merged first, so not necessarily once per input
      batch); and handed each part through `part_finished(part)` as soon as its file is complete, in order, on
      the writer's background thread (so the next part is formatted meanwhile; a slow part_finished holds the
      writer back, which bounds how many finished parts wait). From then on the file is the control's: it
      may move or delete it. Going past `max_bytes` raises WriteLimitExceeded.
    - On any error every file written so far is removed and WriteError (or a subclass) is raised; exceptions
      raised by the callbacks or by the batch iterator (e.g. a warehouse error) pass through unchanged.
    Memory stays bounded by a few batches and formatted chunks, whatever the row count.
    """
    if part_bytes < 1:
        raise ValueError("part_bytes must be positive")
    if not 0 <= compression_level <= 3:
        raise ValueError("compression_level must be between 0 and 3")
    names = list(header) if header is not None else [column.name for column in columns]
    if len(names) != len(columns) or not columns:
        raise ValueError("need one header name per column, and at least one column")
    control = control or _UNCONTROLLED
    parts = _PartSequence(
        directory=directory,
        name_for_part=name_for_part,
        header=csv_header(names),
        part_bytes=part_bytes,
        compression_level=compression_level,
        on_part=control.part_finished,
    )
    source = _until_stopped(batches, control.should_stop)
    rows_written = 0
    try:
        for batch in _coalesced(source):
            for chunk in _batch_chunks(batch, columns):
                with _as_write_error():
                    text = _RowText(csv_rows(chunk, columns))
                    parts.write(text)
                rows_written += text.count
                if max_bytes is not None and parts.bytes_written > max_bytes:
                    raise WriteLimitExceeded(f"export exceeds the limit of {max_bytes} uncompressed bytes")
            control.progress(rows_written, parts.bytes_written)
        with _as_write_error():
            return parts.finish()
    except BaseException:
        parts.discard()
        raise
    finally:
        source.close()  # an abandoned engine cursor is released now, not whenever the traceback dies


@contextlib.contextmanager
def _as_write_error() -> Iterator[None]:
    """Our own failures as WriteError; the batch source's and the callbacks' errors are left alone."""
    try:
        yield
    except OSError as exc:  # a full or failing disk may recover
        raise WriteError(f"cannot write export file: {exc}", retryable=True) from exc
    except pa.ArrowException as exc:
        raise WriteError(f"cannot format export: {exc}") from exc


def remove_parts(parts: Iterable[PartFile]) -> None:
    """Delete the temporary files of parts that will not be published (e.g. after a failed upload)."""
    for part in parts:
        part.path.unlink(missing_ok=True)
