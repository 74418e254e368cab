"""Row text -> part files: the PartWriter of every text format (CSV, NDJSON and the xlsx sheet's XML).

A format gives one string per row (terminator included) for each chunk; TextPartWriter spreads the rows over
parts of at most `part_bytes` (and at most `max_rows` rows), each starting with the format's header, and
streams them into files of any kind (gzip, plain, an xlsx package) on one background thread.

Decisions (which part, how many rows) are taken on the caller's thread; compressing, hashing and writing run
in the background, in order. The row strings' contiguous data buffer goes to the file without a copy.
"""

from __future__ import annotations

import bisect
import hashlib
import sys
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, Protocol

import pyarrow as pa

from exports.writers.arrow_text import offsets
from exports.writers.parts import PartFile, PartSequence, PartTarget

try:  # ISA-L compresses several times faster than zlib at the same ratio; optional so a bare install works
    from isal import isal_zlib

    DEFLATE: ModuleType = isal_zlib
except ImportError:  # pragma: no cover - isal is pinned in requirements.txt
    DEFLATE = zlib

# zlib's window bits for a gzip container (header and CRC32 trailer) with a 32 KiB window.
_GZIP_WBITS = 16 + 15


class RowText:
    """The formatted rows of one chunk: row i is data[offsets[i]:offsets[i + 1]], read without copying."""

    def __init__(self, rows: pa.Array) -> None:
        self._rows = rows  # keeps the buffers alive
        self.count = len(rows)
        self.offsets = offsets(rows)
        data = rows.buffers()[2]
        self.data = memoryview(data) if data is not None else memoryview(b"")

    def span(self, first: int, stop: int) -> memoryview:
        return self.data[self.offsets[first] : self.offsets[stop]]

    def fitting(self, first: int, budget: int) -> int:
        """The largest stop >= first such that rows first..stop-1 take at most `budget` bytes."""
        limit = self.offsets[first] + budget
        return bisect.bisect_right(self.offsets, limit, first + 1, self.count + 1) - 1


class PartStream(Protocol):
    """A part's file being written; nothing is read back."""

    @property
    def path(self) -> Path: ...

    @property
    def compressed_bytes(self) -> int:
        """The file's size so far."""

    def write(self, data: memoryview | bytes) -> None: ...

    def finish(self) -> str:
        """Complete and close the file; returns the sha256 hex digest of its bytes."""

    def discard(self) -> None:
        """Close and remove the file."""


class _Compressor(Protocol):
    def compress(self, data: bytes | memoryview, /) -> bytes: ...

    def flush(self, mode: int = ..., /) -> bytes: ...


class HashedFile:
    """A file written front to back, hashed and counted on the way out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.compressed_bytes = 0
        self._hash = hashlib.sha256()
        self._file: BinaryIO = open(path, "wb")  # closed by close() or discard()

    def write(self, data: memoryview | bytes) -> None:
        if data:
            self._hash.update(data)
            self._file.write(data)
            self.compressed_bytes += len(data)

    def tell(self) -> int:
        return self.compressed_bytes

    def close(self) -> str:
        self._file.close()
        return self._hash.hexdigest()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class PlainFile(HashedFile):
    """An uncompressed part (compression "none")."""

    def finish(self) -> str:
        return self.close()


class GzipFile:
    """A gzip part: compressed by `deflate` (isal_zlib or zlib, the same API) on the way to the file."""

    def __init__(self, path: Path, compression_level: int, deflate: ModuleType = DEFLATE) -> None:
        self._file = HashedFile(path)
        self.path = path
        self._compressor: _Compressor = deflate.compressobj(compression_level, deflate.DEFLATED, _GZIP_WBITS)

    @property
    def compressed_bytes(self) -> int:
        return self._file.compressed_bytes

    def write(self, data: memoryview | bytes) -> None:
        self._file.write(self._compressor.compress(data))

    def finish(self) -> str:
        self._file.write(self._compressor.flush())
        return self._file.close()

    def discard(self) -> None:
        self._file.discard()


def check_compression_level(compression_level: int) -> None:
    if not 0 <= compression_level <= 3:
        raise ValueError("compression_level must be between 0 and 3")


def text_file_opener(
    *, gzip: bool, compression_level: int, deflate: ModuleType = DEFLATE
) -> Callable[[Path], PartStream]:
    """How a text writer opens each part: gzipped (ISA-L level 0 to 3) or plain."""
    check_compression_level(compression_level)
    if not gzip:
        return PlainFile
    return partial(GzipFile, compression_level=compression_level, deflate=deflate)


@dataclass(slots=True)
class _OpenPart:
    name: str
    file: PartStream
    rows: int = 0
    bytes: int = 0


class TextPartWriter(PartSequence[_OpenPart]):
    """A PartWriter for row text: parts of at most part_bytes (one over-long row goes alone) and max_rows,
    each starting with `header`."""

    def __init__(
        self,
        target: PartTarget,
        *,
        open_file: Callable[[Path], PartStream],
        format_rows: Callable[[pa.RecordBatch], pa.Array],
        chunks: Callable[[pa.RecordBatch], Iterable[pa.RecordBatch]],
        header: bytes,
        max_rows: int = sys.maxsize,
    ) -> None:
        super().__init__(target, thread_name="text-parts")
        self._open_file = open_file
        self._format_rows = format_rows
        self.chunks = chunks
        self._header = header
        self._max_rows = max_rows
        self.rows_written = 0
        self.bytes_written = 0  # uncompressed, headers included, over all parts

    def write(self, chunk: pa.RecordBatch) -> None:
        text = RowText(self._format_rows(chunk))
        first = 0
        while first < text.count:
            part = self._current or self._open()
            room = self._max_rows - part.rows
            stop = min(text.fitting(first, self._target.part_bytes - part.bytes), first + room)
            if stop == first:
                if part.rows:  # full: the next row starts a new part
                    self._close()
                    continue
                stop = first + 1  # a row longer than part_bytes still has to go somewhere
            self._write(part, text.span(first, stop), rows=stop - first)
            first = stop
        self.rows_written += text.count

    def _start(self, name: str, path: Path) -> _OpenPart:
        part = _OpenPart(name, self._open_file(path))
        self._write(part, self._header, rows=0)
        return part

    def _write(self, part: _OpenPart, data: memoryview | bytes, *, rows: int) -> None:
        part.rows += rows
        part.bytes += len(data)
        self.bytes_written += len(data)
        self._background.submit(part.file.write, data)

    def _complete(self, part: _OpenPart) -> PartFile:
        sha256 = part.file.finish()
        return PartFile(part.name, part.file.path, part.rows, part.bytes, part.file.compressed_bytes, sha256)

    def _remove(self, part: _OpenPart) -> None:
        part.file.discard()
