"""Local directory storage: what only it does (symlinks, its own file times, a commit retried after a failed
rename). What every backend promises is in test_storage_contract.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exports.storage import StorageError, storage_for, storage_kinds
from exports.storage.local import LocalStorage

PREFIX = "reports/acme"
PART_KEYS = [f"{PREFIX}/guid_QueryExport_1579194142011__{i:012d}.csv.gz" for i in range(3)]
MANIFEST_KEY = f"{PREFIX}/guid_manifest.json"


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(tmp_path / "root")


@pytest.fixture
def sources(tmp_path) -> list[Path]:
    work = tmp_path / "work"
    work.mkdir()
    paths = []
    for index in range(3):
        path = work / f".part{index}.tmp"
        path.write_bytes(bytes([index]) * (1000 + index) + b"end")
        paths.append(path)
    return paths


def files_under(root: Path) -> list[str]:
    """Every file under root, hidden ones included, as sorted relative paths."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_stat_reports_the_files_own_modification_time(storage, sources):
    storage.publish([(sources[0], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    mtime = (storage.root / PART_KEYS[0]).stat().st_mtime
    assert storage.stat(PART_KEYS[0]).modified == datetime.fromtimestamp(mtime, UTC)


def test_a_symlink_out_of_the_root_is_refused(storage, tmp_path, sources):
    outside = tmp_path / "outside"
    outside.mkdir()
    storage.root.mkdir()
    os.symlink(outside, storage.root / "reports")
    with pytest.raises(StorageError, match="escapes"):
        storage.publish([(sources[0], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    assert list(outside.iterdir()) == []


def test_test_connection_fails_when_the_root_is_unusable(tmp_path):
    root = tmp_path / "a-file"
    root.write_bytes(b"not a directory")
    with pytest.raises(StorageError):
        LocalStorage(root).test_connection()


def test_presigned_urls_are_not_offered(storage):
    assert storage.presigned_url(PART_KEYS[0], 60) is None


def test_registry_builds_backends_by_kind(tmp_path):
    storage = storage_for("local", root=tmp_path)
    assert isinstance(storage, LocalStorage)
    assert storage.root == tmp_path
    assert "local" in storage_kinds()
    with pytest.raises(StorageError, match="unknown storage kind"):
        storage_for("ftp", host="example.com")
    with pytest.raises(StorageError, match="invalid local storage configuration"):
        storage_for("local", directory=tmp_path)


# --- the publication: files staged one at a time while the export runs --------------------------------


def test_a_commit_interrupted_midway_carries_on_when_called_again(storage, sources, monkeypatch):
    real_replace, calls = os.replace, []

    def flaky_replace(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real_replace(source, target)

    with storage.publication() as publication:
        for source, key in zip(sources, PART_KEYS, strict=True):
            publication.stage(source, key)
        monkeypatch.setattr(os, "replace", flaky_replace)
        with pytest.raises(StorageError) as failed:
            publication.commit((b"{}", MANIFEST_KEY))
        assert failed.value.retryable
        publication.commit((b"{}", MANIFEST_KEY))
    assert files_under(storage.root) == sorted([*PART_KEYS, MANIFEST_KEY])
    assert len(calls) == 5  # 3 parts + manifest, the failed rename tried twice
