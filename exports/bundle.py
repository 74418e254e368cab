"""A zip of stored objects, streamed while it is read from storage: no temporary file, memory bounded by one
chunk whatever the objects' sizes.

The entries are stored, not compressed again: a result's parts are compressed already (gzip, parquet, xlsx),
and an uncompressed part is sent as fast as storage reads it. Sizes and checksums follow each entry (data
descriptors) and ZIP64 records are written, so the archive needs no seeking and any size works.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator, Sequence

from exports.storage.base import Storage

CHUNK = 1 << 20


class _Sink(io.RawIOBase):
    """Where zipfile writes: bytes gathered until the stream takes them. Not seekable, so zipfile writes data
    descriptors instead of going back to fill in sizes."""

    def __init__(self) -> None:
        super().__init__()
        self._pending = bytearray()
        self._offset = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._pending += data
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def take(self) -> bytes:
        taken = bytes(self._pending)
        self._pending.clear()
        return taken


def zip_stream(storage: Storage, entries: Sequence[tuple[str, str]], *, chunk: int = CHUNK) -> Iterator[bytes]:
    """The zip's bytes: each (storage key, name in the archive) in order. StorageError (e.g. ObjectNotFound)
    passes through from where the object is read."""
    sink = _Sink()
    stamp = time.gmtime()[:6]
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, name in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.external_attr = 0o644 << 16
            with storage.open(key) as source, archive.open(info, "w", force_zip64=True) as target:
                while block := source.read(chunk):
                    target.write(block)
                    if taken := sink.take():
                        yield taken
            if taken := sink.take():
                yield taken
    if taken := sink.take():
        yield taken
