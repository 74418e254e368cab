"""Local directory storage: publish all or nothing, read back with ranges, refuse keys escaping the root."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exports.storage import ObjectNotFound, StorageError, key_validate, storage_for, storage_kinds
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


def test_publish_puts_every_file_and_the_manifest_under_its_key(storage, sources):
    storage.publish(list(zip(sources, PART_KEYS, strict=True)), (b'{"parts": 3}\n', MANIFEST_KEY))
    assert files_under(storage.root) == sorted([*PART_KEYS, MANIFEST_KEY])
    for source, key in zip(sources, PART_KEYS, strict=True):
        with storage.open(key) as stream:
            assert stream.read() == source.read_bytes()
        assert storage.size(key) == source.stat().st_size
    with storage.open(MANIFEST_KEY) as stream:
        assert stream.read() == b'{"parts": 3}\n'
    assert all(source.exists() for source in sources)  # the caller removes its own files


def test_publish_overwrites_existing_keys(storage, sources):
    storage.publish([(sources[0], PART_KEYS[0])], (b"one", MANIFEST_KEY))
    storage.publish([(sources[1], PART_KEYS[0])], (b"two", MANIFEST_KEY))
    with storage.open(PART_KEYS[0]) as stream:
        assert stream.read() == sources[1].read_bytes()
    assert files_under(storage.root) == sorted([PART_KEYS[0], MANIFEST_KEY])


def test_a_source_that_fails_leaves_nothing_published(storage, sources):
    missing = sources[1].with_name("gone.tmp")
    files = [(sources[0], PART_KEYS[0]), (missing, PART_KEYS[1]), (sources[2], PART_KEYS[2])]
    with pytest.raises(StorageError) as caught:
        storage.publish(files, (b"{}", MANIFEST_KEY))
    assert not caught.value.retryable
    assert files_under(storage.root) == []


def test_a_rename_that_fails_takes_back_the_files_already_renamed(storage, sources):
    # A non-empty directory where the second file should land: its rename fails after the first succeeded.
    blocker = storage.root / PART_KEYS[1]
    (blocker / "occupied").mkdir(parents=True)
    with pytest.raises(StorageError):
        storage.publish(list(zip(sources, PART_KEYS, strict=True)), (b"{}", MANIFEST_KEY))
    assert files_under(storage.root) == []
    assert not storage.exists(PART_KEYS[0])
    assert not storage.exists(MANIFEST_KEY)


def test_the_same_key_twice_is_refused(storage, sources):
    with pytest.raises(StorageError, match="twice"):
        storage.publish([(sources[0], PART_KEYS[0]), (sources[1], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    assert files_under(storage.root) == []


def test_open_reads_byte_ranges(storage, sources):
    storage.publish([(sources[2], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    content = sources[2].read_bytes()
    size = len(content)
    cases = [
        (0, 1),
        (2, 5),
        (size - 3, None),
        (10, size),
        (5, size + 100),
        (size, None),
        (size + 5, None),
        (7, 7),
    ]
    for start, end in cases:
        with storage.open(PART_KEYS[0], start, end) as stream:
            assert stream.read() == content[start:end], (start, end)
    with storage.open(PART_KEYS[0], 1000, 1004) as stream:  # read in small steps too
        assert stream.read(2) + stream.read(1) + stream.read(10) + stream.read() == content[1000:1004]


def test_an_inverted_range_is_refused(storage, sources):
    storage.publish([(sources[0], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    with pytest.raises(ValueError):
        storage.open(PART_KEYS[0], 5, 2)
    with pytest.raises(ValueError):
        storage.open(PART_KEYS[0], -1)


def test_stat_exists_and_delete(storage, sources):
    storage.publish([(sources[0], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    stat = storage.stat(PART_KEYS[0])
    assert stat.size == sources[0].stat().st_size
    mtime = (storage.root / PART_KEYS[0]).stat().st_mtime
    assert stat.modified == datetime.fromtimestamp(mtime, UTC)
    assert stat.etag
    assert storage.exists(PART_KEYS[0])
    storage.delete([PART_KEYS[0], MANIFEST_KEY, PART_KEYS[2]])  # a missing key is ignored
    storage.delete([PART_KEYS[0]])  # idempotent
    assert not storage.exists(PART_KEYS[0])
    assert files_under(storage.root) == []


def test_etag_changes_when_the_content_changes(storage, sources):
    storage.publish([(sources[0], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    first = storage.stat(PART_KEYS[0]).etag
    storage.publish([(sources[1], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    assert storage.stat(PART_KEYS[0]).etag != first


def test_missing_objects_are_object_not_found(storage):
    with pytest.raises(ObjectNotFound):
        storage.open(PART_KEYS[0])
    with pytest.raises(ObjectNotFound):
        storage.stat(PART_KEYS[0])
    with pytest.raises(ObjectNotFound):
        storage.size("reports")  # a directory is not an object
    assert not storage.exists(PART_KEYS[0])


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside",
        "reports/../../outside",
        "reports/./x",
        "a//b",
        "a/",
        "a\\b",
        "a\x00b",
        "..",
    ],
)
def test_keys_that_could_escape_the_root_are_refused(storage, sources, key):
    with pytest.raises(StorageError) as caught:
        storage.publish([(sources[0], key)], (b"{}", MANIFEST_KEY))
    assert not caught.value.retryable
    with pytest.raises(StorageError):
        storage.open(key)
    with pytest.raises(StorageError):
        storage.delete([key])
    with pytest.raises(StorageError):
        key_validate(key)
    assert files_under(storage.root) == []


def test_a_symlink_out_of_the_root_is_refused(storage, tmp_path, sources):
    outside = tmp_path / "outside"
    outside.mkdir()
    storage.root.mkdir()
    os.symlink(outside, storage.root / "reports")
    with pytest.raises(StorageError, match="escapes"):
        storage.publish([(sources[0], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    assert list(outside.iterdir()) == []


def test_test_connection_writes_reads_and_removes_a_probe(storage):
    storage.test_connection()
    assert storage.root.is_dir()
    assert files_under(storage.root) == []


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


def test_a_refused_commit_check_publishes_nothing(storage, sources):
    from exports.storage.base import PublishFenced

    checked: list[bool] = []

    def fenced() -> bool:
        checked.append(True)
        return False

    with pytest.raises(PublishFenced) as raised:
        storage.publish(
            list(zip(sources, PART_KEYS, strict=True)), (b"{}", MANIFEST_KEY), commit_check=fenced
        )
    assert checked == [True] and raised.value.retryable is False
    assert files_under(storage.root) == []
    storage.publish(
        list(zip(sources, PART_KEYS, strict=True)), (b"{}", MANIFEST_KEY), commit_check=lambda: True
    )
    assert files_under(storage.root) == sorted([*PART_KEYS, MANIFEST_KEY])


# --- the publication: files staged one at a time while the export runs --------------------------------


def test_staged_files_are_hidden_until_commit_and_survive_their_source(storage, sources):
    with storage.publication() as publication:
        for source, key in zip(sources, PART_KEYS, strict=True):
            publication.stage(source, key)
            source.unlink()  # the runner deletes each part once it is staged
        assert all(name.endswith(".partial") for name in files_under(storage.root))
        assert not any((storage.root / key).exists() for key in PART_KEYS)
        publication.commit((b"{}", MANIFEST_KEY))
    assert files_under(storage.root) == sorted([*PART_KEYS, MANIFEST_KEY])
    assert (storage.root / PART_KEYS[2]).read_bytes() == bytes([2]) * 1002 + b"end"


def test_leaving_the_block_without_commit_removes_every_staged_file(storage, sources):
    with storage.publication() as publication:
        publication.stage(sources[0], PART_KEYS[0])
        publication.stage(sources[1], PART_KEYS[1])
    publication.abort()  # a second abort is harmless
    assert files_under(storage.root) == []


def test_a_refused_commit_check_places_nothing(storage, sources):
    from exports.storage.base import PublishFenced

    with pytest.raises(PublishFenced), storage.publication() as publication:
        publication.stage(sources[0], PART_KEYS[0])
        publication.commit((b"{}", MANIFEST_KEY), commit_check=lambda: False)
    assert files_under(storage.root) == []


def test_a_key_staged_twice_is_refused_and_the_rest_still_commits(storage, sources):
    with storage.publication() as publication:
        publication.stage(sources[0], PART_KEYS[0])
        with pytest.raises(StorageError, match="twice") as refused:
            publication.stage(sources[1], PART_KEYS[0])
        assert not refused.value.retryable
        publication.commit((b"{}", MANIFEST_KEY))
    assert files_under(storage.root) == sorted([PART_KEYS[0], MANIFEST_KEY])


def test_a_failed_stage_leaves_nothing_of_it_and_can_be_tried_again(storage, sources, tmp_path):
    missing = tmp_path / "work" / ".gone.tmp"
    with storage.publication() as publication:
        publication.stage(sources[0], PART_KEYS[0])
        with pytest.raises(StorageError):
            publication.stage(missing, PART_KEYS[1])
        assert len(files_under(storage.root)) == 1
        publication.stage(sources[1], PART_KEYS[1])
        publication.commit((b"{}", MANIFEST_KEY))
    assert files_under(storage.root) == sorted([*PART_KEYS[:2], MANIFEST_KEY])


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
