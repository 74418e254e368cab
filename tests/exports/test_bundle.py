"""The streamed zip of stored objects: read back by Python's zipfile (which checks every entry's CRC-32), with
the names, sizes and bytes it was given, and chunks that are the storage's own (nothing buffered)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from exports.bundle import zip_stream
from exports.errors import ObjectNotFound
from exports.storage.local import LocalStorage


def _storage(tmp_path: Path, files: dict[str, bytes]) -> LocalStorage:
    for key, data in files.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(data)
    return LocalStorage(tmp_path)


def test_every_entry_reads_back_with_its_name_and_bytes(tmp_path):
    files = {"r/a.csv.gz": os.urandom(300_001), "r/empty": b"", "r/manifest.json": '{"Zoë": 1}'.encode()}
    storage = _storage(tmp_path, files)
    entries = [("r/a.csv.gz", "a.csv.gz"), ("r/empty", "empty"), ("r/manifest.json", "Zoë's manifest.json")]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(zip_stream(storage, entries, chunk=4096))))
    assert archive.testzip() is None  # every CRC-32 checks
    assert archive.namelist() == [name for _, name in entries]
    for key, name in entries:
        assert archive.read(name) == files[key]
        assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED


def test_the_stream_hands_on_storage_chunks_as_they_come(tmp_path):
    storage = _storage(tmp_path, {"r/big": os.urandom(1 << 20)})
    chunks = list(zip_stream(storage, [("r/big", "big")], chunk=64 * 1024))
    # header, 16 chunks of the object, the data descriptor, the central directory: nothing was gathered up.
    assert [len(c) for c in chunks[1:17]] == [64 * 1024] * 16
    assert max(len(c) for c in chunks) == 64 * 1024


def test_a_missing_object_stops_the_stream_with_its_error(tmp_path):
    storage = _storage(tmp_path, {"r/a": b"x"})
    with pytest.raises(ObjectNotFound):
        list(zip_stream(storage, [("r/a", "a"), ("r/gone", "gone")]))
