"""A zip of stored objects, streamed while it is read from storage: no temporary file, memory bounded by one
chunk whatever the objects' sizes, and each chunk sent as storage gave it (no copy).

The entries are stored, not compressed again: a result's parts are compressed already (gzip, parquet, xlsx),
and an uncompressed part is sent as fast as storage reads it. The archive is written front to back, as a
stream must be: each entry's CRC-32 and sizes follow its data (a data descriptor, general-purpose flag bit 3),
and every size and offset is a ZIP64 field, so any size works. Python's zipfile, Info-ZIP and the common
desktop tools read it (the tests read it back with zipfile, which checks every CRC). PKWARE's APPNOTE 6.3.x,
sections 4.3.7-4.3.16, is the layout.

CRC-32 comes from ISA-L (already a requirement, for gzip) at tens of GB/s; zlib's is the fallback.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from exports.storage.base import Storage

try:
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - isal is in requirements.txt
    from zlib import crc32

CHUNK = 1 << 20
_VERSION = 45  # 4.5: ZIP64
_FLAGS = 0x0008 | 0x0800  # sizes in a data descriptor; names in UTF-8
_STORED = 0
_UNKNOWN32 = 0xFFFFFFFF  # "see the ZIP64 extra field"
_UNKNOWN16 = 0xFFFF


@dataclass
class _Entry:
    name: bytes
    offset: int
    crc: int = 0
    size: int = 0


def zip_stream(
    storage: Storage, entries: Sequence[tuple[str, str]], *, chunk: int = CHUNK
) -> Iterator[bytes]:
    """The zip's bytes: each (storage key, name in the archive) in order. StorageError (e.g. ObjectNotFound)
    passes through from where the object is read."""
    time_field, date_field = _dos_stamp(time.gmtime())
    written, done = 0, []
    for key, name in entries:
        entry = _Entry(name.encode("utf-8"), offset=written)
        header = _local_header(entry, time_field, date_field)
        yield header
        written += len(header)
        with storage.open(key) as source:
            while block := source.read(chunk):
                entry.crc = crc32(block, entry.crc)
                entry.size += len(block)
                yield block
        descriptor = struct.pack("<IIQQ", 0x08074B50, entry.crc, entry.size, entry.size)
        yield descriptor
        written += entry.size + len(descriptor)
        done.append(entry)
    yield _central_directory(done, written, time_field, date_field)


def _dos_stamp(moment: time.struct_time) -> tuple[int, int]:
    time_field = (moment.tm_hour << 11) | (moment.tm_min << 5) | (moment.tm_sec // 2)
    date_field = ((moment.tm_year - 1980) << 9) | (moment.tm_mon << 5) | moment.tm_mday
    return time_field, date_field


def _local_header(entry: _Entry, time_field: int, date_field: int) -> bytes:
    zip64 = struct.pack("<HHQQ", 0x0001, 16, 0, 0)  # sizes follow in the data descriptor
    fixed = struct.pack(
        "<IHHHHHIIIHH",
        0x04034B50,
        _VERSION,
        _FLAGS,
        _STORED,
        time_field,
        date_field,
        0,
        _UNKNOWN32,
        _UNKNOWN32,
        len(entry.name),
        len(zip64),
    )
    return fixed + entry.name + zip64


def _central_directory(entries: list[_Entry], start: int, time_field: int, date_field: int) -> bytes:
    records = []
    for entry in entries:
        zip64 = struct.pack("<HHQQQ", 0x0001, 24, entry.size, entry.size, entry.offset)
        records.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                (3 << 8) | _VERSION,  # made by: Unix, 4.5
                _VERSION,
                _FLAGS,
                _STORED,
                time_field,
                date_field,
                entry.crc,
                _UNKNOWN32,
                _UNKNOWN32,
                len(entry.name),
                len(zip64),
                0,  # comment length
                0,  # disk number
                0,  # internal attributes
                0o644 << 16,  # external attributes: a regular file, rw-r--r--
                _UNKNOWN32,
            )
            + entry.name
            + zip64
        )
    directory = b"".join(records)
    end = start + len(directory)
    zip64_end = struct.pack(
        "<IQHHIIQQQQ",
        0x06064B50,
        44,
        (3 << 8) | _VERSION,
        _VERSION,
        0,
        0,
        len(entries),
        len(entries),
        len(directory),
        start,
    )
    locator = struct.pack("<IIQI", 0x07064B50, 0, end, 1)
    classic_end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, _UNKNOWN16, _UNKNOWN16, _UNKNOWN32, _UNKNOWN32, 0
    )
    return directory + zip64_end + locator + classic_end
