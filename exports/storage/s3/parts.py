"""A file cut into the parts of a multipart upload: their byte ranges within S3's limits, and each part's
request body (streamed from the file, never held in memory) with its SHA-256."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from pathlib import Path
from typing import Any

from exports.errors import StorageError

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's floor for every part but the last of an upload
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
# boto3's TransferManager default (multipart_chunksize, and multipart_threshold). Against moto_server on
# the shared 2-core machine the server's CPU per 300 MB upload grew with the part size (8 MiB 2.2-2.3 s,
# 16 MiB 2.4-2.5 s, 32 MiB 2.8 s; 5 MiB no better than 8), and the server's CPU is most of an upload's there.
# Memory does not depend on it (parts are streamed from the file).
DEFAULT_PART_SIZE = 8 * MIB
# Parts of one file in flight at a time: boto3's TransferManager default (max_concurrency).
DEFAULT_CONCURRENCY = 10
HASH_BLOCK = 4 * MIB


def part_ranges(size: int, threshold: int, chunk: int) -> list[tuple[int, int]]:
    """(offset, length) of each part: one part up to `threshold` bytes, else parts of `chunk` bytes (grown
    when needed to stay within S3's 10,000 parts)."""
    if size <= threshold:
        return [(0, size)]
    chunk = max(chunk, -(-size // MAX_PARTS))
    return [(offset, min(chunk, size - offset)) for offset in range(0, size, chunk)]


def part_body(source: Path | bytes, offset: int, length: int, *, hashed: bool) -> tuple[Any, bytes | None]:
    """A part's request body and, when `hashed`, its SHA-256: the file is read twice, once here and once as
    it is sent (from the page cache: cheaper than holding a part in memory per thread), and hashed once (the
    request's signature reuses this digest, see signing.py)."""
    if isinstance(source, bytes):
        data = source[offset : offset + length]
        return data, hashlib.sha256(data).digest() if hashed else None
    body = FileSlice(source, offset, length)
    if not hashed:
        return body, None
    try:
        digest = hashlib.sha256()
        while block := body.read(HASH_BLOCK):
            digest.update(block)
        body.seek(0)
    except BaseException:
        body.close()
        raise
    return body, digest.digest()


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class FileSlice(io.RawIOBase):
    """`length` bytes of a file from `offset`, as a stream of its own (position 0 is `offset`), so botocore
    can size it, hash it for signing, send it and rewind it for a retry without holding it in memory.
    Reads with pread, so slices of one file never share a position."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self._path = path
        self._offset = offset
        self._length = length
        self._position = 0

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._length}[whence]
        self._position = min(max(0, base + offset), self._length)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        wanted = self._length - self._position
        if size is not None and size >= 0:
            wanted = min(wanted, size)
        if wanted <= 0:
            return b""
        data = os.pread(self._fd, wanted, self._offset + self._position)
        if not data:
            # The file is shorter than when the upload was planned: sending less than the announced
            # Content-Length would hang until the server times out. Not retryable: the export file changed
            # under us, and publishing it again would publish something else than its manifest describes.
            raise StorageError(f"export file {self._path} changed during upload (shorter than planned)")
        self._position += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
