"""What every storage backend promises (the docstrings of Storage and Publication in exports/storage/base.py),
checked against each one: a local directory, S3 (a real moto_server) and SFTP (a real OpenSSH sshd).

Every test looks at the server from outside the code under test too (the directory on this machine, or the
bucket through a client of its own): which final keys hold an object, and what staging left behind
(temporary files, open multipart uploads). Checks that only one backend can make stay in its own file.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError

from exports.errors import ObjectNotFound, PublishFenced, StorageError
from exports.storage.base import Storage, key_validate, staging_name
from exports.storage.local import LocalStorage
from exports.storage.s3 import S3Storage
from exports.storage.s3.parts import MIB
from exports.storage.sftp import SftpStorage
from exports.storage.sftp.reading import READ_WINDOW_SIZE
from tests.moto import MotoServer, moto_server
from tests.sshd import SshdServer, sshd_server

PREFIX = "reports/acme"
PART_KEYS = [f"{PREFIX}/guid_QueryExport_1579194142011__{i:012d}.csv.gz" for i in range(3)]
MANIFEST_KEY = f"{PREFIX}/guid_manifest.json"
MANIFEST = b'{"parts": 3}\n'
S3_PREFIX = "exports"
CHUNK = 5 * MIB  # S3's smallest part, so the 12 MiB source is a real three-part upload
LONG_AGO = datetime(2010, 11, 10, tzinfo=UTC)  # when moto dates every multipart upload
BAD_KEYS = [
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
]


class Backend:
    """A storage under test, and a look at its server from outside the code under test."""

    sweeps = True  # whether sweep_incomplete removes what abandoned_upload_make leaves

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def finals(self) -> list[str]:
        """The keys that hold a published object, sorted."""
        raise NotImplementedError

    def pending(self) -> list[str]:
        """What staging left on the server (temporary files, open multipart uploads), sorted."""
        raise NotImplementedError

    def placement_break(self, key: str) -> None:
        """Make placing `key` fail when a commit gets to it."""
        raise NotImplementedError

    def abandoned_upload_make(self, key: str) -> None:
        """Leave an unfinished upload of `key` dated LONG_AGO, as a publish killed then would have."""
        raise NotImplementedError


class DirectoryBackend(Backend):
    """A backend whose objects are files in a directory of this machine (local; SFTP to a local sshd)."""

    def __init__(self, storage: Storage, root: Path, *, sweeps: bool) -> None:
        super().__init__(storage)
        self.root = root
        self.sweeps = sweeps

    def finals(self) -> list[str]:
        return [name for name in self._files() if not name.endswith(".partial")]

    def pending(self) -> list[str]:
        return [name for name in self._files() if name.endswith(".partial")]

    def placement_break(self, key: str) -> None:
        (self.root / key / "occupied").mkdir(
            parents=True
        )  # nothing can be renamed onto a non-empty directory

    def abandoned_upload_make(self, key: str) -> None:
        final = self.root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.with_name(staging_name(final.name))
        temporary.write_bytes(b"left behind")
        os.utime(temporary, (LONG_AGO.timestamp(), LONG_AGO.timestamp()))

    def _files(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())


class BucketBackend(Backend):
    """S3: objects and open uploads in a bucket of moto_server, seen through a client of its own."""

    def __init__(self, storage: S3Storage, moto: MotoServer, bucket: str) -> None:
        super().__init__(storage)
        self.s3_storage = storage
        self.moto = moto
        self.bucket = bucket

    def finals(self) -> list[str]:
        return [key.removeprefix(f"{S3_PREFIX}/") for key in self.moto.keys(self.bucket)]

    def pending(self) -> list[str]:
        return [key.removeprefix(f"{S3_PREFIX}/") for key in self.moto.uploads(self.bucket)]

    def placement_break(self, key: str) -> None:
        def connection_drops(request: Any, **_: Any) -> None:
            if key in request.url:
                raise ConnectionClosedError(endpoint_url=request.url)

        self.s3_storage.client.meta.events.register(
            "before-send.s3.CompleteMultipartUpload", connection_drops
        )

    def abandoned_upload_make(self, key: str) -> None:
        self.moto.client().create_multipart_upload(Bucket=self.bucket, Key=f"{S3_PREFIX}/{key}")


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshdServer]:
    with sshd_server() as server:
        yield server


@pytest.fixture(params=["local", "s3", "sftp"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        yield DirectoryBackend(LocalStorage(tmp_path / "root"), tmp_path / "root", sweeps=True)
    elif request.param == "s3":
        moto: MotoServer = request.getfixturevalue("moto")
        bucket = moto.bucket_create()
        # One attempt per request: a fault placed by placement_break must not be retried away.
        config = moto.storage_config(
            bucket, prefix=S3_PREFIX, multipart_threshold=CHUNK, multipart_chunk=CHUNK, max_attempts=1
        )
        with contextlib.closing(S3Storage(**config)) as s3:
            yield BucketBackend(s3, moto, bucket)
    else:
        sshd: SshdServer = request.getfixturevalue("sshd")
        base = sshd.root_dir / uuid.uuid4().hex
        base.mkdir()
        with contextlib.closing(SftpStorage(**sshd.config(base_dir=str(base)))) as sftp:
            # SftpStorage keeps Storage's sweep_incomplete: its temporary files are never swept.
            yield DirectoryBackend(sftp, base, sweeps=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    """Three export files: one of several S3 parts and SFTP read windows, a small one, an empty one."""
    rng = random.Random(4)
    paths = []
    for index, size in enumerate([12 * MIB + 123, 1000, 0]):
        path = tmp_path / f".part{index}.tmp"
        path.write_bytes(rng.randbytes(size))
        paths.append(path)
    return paths


def read(storage: Storage, key: str, start: int | None = None, end: int | None = None) -> bytes:
    with storage.open(key, start, end) as stream:
        return stream.read()


def assert_nothing_left(backend: Backend) -> None:
    assert backend.finals() == []
    assert backend.pending() == []


# -- publish: all or nothing ------------------------------------------------------------------------------


def test_publish_puts_every_file_and_the_manifest_under_its_key(backend, sources):
    backend.storage.publish(list(zip(sources, PART_KEYS, strict=True)), (MANIFEST, MANIFEST_KEY))
    assert backend.finals() == sorted([*PART_KEYS, MANIFEST_KEY])
    assert backend.pending() == []
    for source, key in zip(sources, PART_KEYS, strict=True):
        assert read(backend.storage, key) == source.read_bytes()
        assert backend.storage.size(key) == source.stat().st_size
    assert read(backend.storage, MANIFEST_KEY) == MANIFEST
    assert all(source.exists() for source in sources)  # the caller removes its own files


def test_publish_overwrites_existing_keys(backend, sources):
    backend.storage.publish([(sources[0], PART_KEYS[0])], (b"one", MANIFEST_KEY))
    backend.storage.publish([(sources[1], PART_KEYS[0])], (b"two", MANIFEST_KEY))
    assert read(backend.storage, PART_KEYS[0]) == sources[1].read_bytes()
    assert read(backend.storage, MANIFEST_KEY) == b"two"
    assert backend.finals() == sorted([PART_KEYS[0], MANIFEST_KEY])


def test_a_missing_source_publishes_nothing(backend, sources):
    files = [(sources[0], PART_KEYS[0]), (sources[1].with_name("gone.tmp"), PART_KEYS[1])]
    with pytest.raises(StorageError) as caught:
        backend.storage.publish(files, (MANIFEST, MANIFEST_KEY))
    assert not caught.value.retryable  # a missing export file will not come back
    assert_nothing_left(backend)


def test_publish_refuses_the_same_key_twice_and_leaves_nothing(backend, sources):
    with pytest.raises(StorageError, match="twice") as caught:
        backend.storage.publish(
            [(sources[0], PART_KEYS[0]), (sources[1], PART_KEYS[0])], (MANIFEST, MANIFEST_KEY)
        )
    assert not caught.value.retryable
    assert_nothing_left(backend)


def test_publish_with_a_refused_commit_check_publishes_nothing(backend, sources):
    checked: list[bool] = []

    def fenced() -> bool:
        checked.append(True)
        return False

    files = list(zip(sources, PART_KEYS, strict=True))
    with pytest.raises(PublishFenced) as raised:
        backend.storage.publish(files, (MANIFEST, MANIFEST_KEY), commit_check=fenced)
    assert checked == [True] and raised.value.retryable is False
    assert_nothing_left(backend)
    backend.storage.publish(files, (MANIFEST, MANIFEST_KEY), commit_check=lambda: True)
    assert backend.finals() == sorted([*PART_KEYS, MANIFEST_KEY])


# -- the publication: staged one file at a time, placed all at once ---------------------------------------


def test_staged_files_are_invisible_until_commit_and_survive_their_source(backend, sources):
    contents = [source.read_bytes() for source in sources]
    with backend.storage.publication() as publication:
        for source, key in zip(sources, PART_KEYS, strict=True):
            publication.stage(source, key)
            source.unlink()  # the runner deletes each part once it is staged
        assert len(backend.pending()) == len(PART_KEYS)
        assert backend.finals() == []
        assert not any(backend.storage.exists(key) for key in PART_KEYS)
        publication.commit((MANIFEST, MANIFEST_KEY))
    # Leaving the block after the commit keeps everything.
    assert backend.finals() == sorted([*PART_KEYS, MANIFEST_KEY])
    assert backend.pending() == []
    for content, key in zip(contents, PART_KEYS, strict=True):
        assert read(backend.storage, key) == content


def test_abort_removes_every_staged_file_and_may_be_called_again(backend, sources):
    publication = backend.storage.publication()
    publication.stage(sources[0], PART_KEYS[0])
    publication.stage(sources[1], PART_KEYS[1])
    publication.abort()
    assert_nothing_left(backend)
    publication.abort()
    assert_nothing_left(backend)


def test_leaving_the_block_without_a_commit_aborts(backend, sources):
    with pytest.raises(RuntimeError), backend.storage.publication() as publication:
        publication.stage(sources[0], PART_KEYS[0])
        raise RuntimeError("the export failed while producing the next part")
    assert_nothing_left(backend)


def test_a_commit_failing_part_way_has_not_placed_the_manifest_and_abort_takes_back_what_it_placed(
    backend, sources
):
    backend.placement_break(PART_KEYS[-1])
    with backend.storage.publication() as publication:
        for source, key in zip(sources, PART_KEYS, strict=True):
            publication.stage(source, key)
        with pytest.raises(StorageError):
            publication.commit((MANIFEST, MANIFEST_KEY))
        assert backend.finals() == sorted(PART_KEYS[:-1])  # placed in staging order, the manifest last
    assert_nothing_left(backend)


def test_a_refused_commit_check_places_nothing(backend, sources):
    seen: list[tuple[int, list[str]]] = []

    def lease_lost() -> bool:
        seen.append((len(backend.pending()), backend.finals()))
        return False

    with backend.storage.publication() as publication:
        for source, key in zip(sources, PART_KEYS, strict=True):
            publication.stage(source, key)
        with pytest.raises(PublishFenced) as fenced:
            publication.commit((MANIFEST, MANIFEST_KEY), commit_check=lease_lost)
        assert not fenced.value.retryable
        assert seen == [(len(PART_KEYS) + 1, [])]  # asked once, the manifest staged too, nothing placed
        assert backend.finals() == []
    assert_nothing_left(backend)


def test_a_key_staged_twice_is_refused_and_the_publication_goes_on(backend, sources):
    with backend.storage.publication() as publication:
        publication.stage(sources[0], PART_KEYS[0])
        with pytest.raises(StorageError, match="twice") as again:
            publication.stage(sources[1], PART_KEYS[0])
        assert not again.value.retryable
        publication.stage(sources[2], PART_KEYS[2])
        with pytest.raises(StorageError, match="twice") as manifest_again:
            publication.commit((MANIFEST, PART_KEYS[0]))  # the manifest under a staged key
        assert not manifest_again.value.retryable
        assert len(backend.pending()) == 2  # nothing was staged for either
        publication.commit((MANIFEST, MANIFEST_KEY))
    assert backend.finals() == sorted([PART_KEYS[0], PART_KEYS[2], MANIFEST_KEY])
    assert read(backend.storage, PART_KEYS[0]) == sources[0].read_bytes()


def test_a_failed_stage_leaves_nothing_of_it_and_the_publication_goes_on(backend, sources, tmp_path):
    with backend.storage.publication() as publication:
        publication.stage(sources[1], PART_KEYS[1])
        with pytest.raises(StorageError) as failed:
            publication.stage(tmp_path / "gone.tmp", PART_KEYS[0])
        assert not failed.value.retryable
        assert len(backend.pending()) == 1  # the earlier file stays staged
        publication.stage(sources[0], PART_KEYS[0])
        publication.commit((MANIFEST, MANIFEST_KEY))
    assert backend.finals() == sorted([PART_KEYS[0], PART_KEYS[1], MANIFEST_KEY])


# -- reading, deleting, the probe and the sweep -----------------------------------------------------------


def test_open_reads_byte_ranges(backend, sources):
    backend.storage.publish([(sources[0], PART_KEYS[0])], (MANIFEST, MANIFEST_KEY))
    content = sources[0].read_bytes()
    size = len(content)
    cases = [
        (0, 1),
        (2, 5),
        (size - 3, None),
        (CHUNK - 10, CHUNK + 10),  # across an S3 part boundary
        (READ_WINDOW_SIZE - 10, READ_WINDOW_SIZE + 10),  # across an SFTP read window
        (10, size),
        (5, size + 100),
        (size, None),
        (size + 5, None),
        (size + 5, size + 10),
        (7, 7),
        (None, None),
    ]
    for start, end in cases:
        assert read(backend.storage, PART_KEYS[0], start, end) == content[start:end], (start, end)
    with backend.storage.open(PART_KEYS[0], 1000, 1004) as stream:  # read in small steps too
        assert stream.read(2) + stream.read(1) + stream.read(10) + stream.read() == content[1000:1004]


def test_an_inverted_range_is_refused(backend, sources):
    backend.storage.publish([(sources[1], PART_KEYS[0])], (MANIFEST, MANIFEST_KEY))
    with pytest.raises(ValueError):
        backend.storage.open(PART_KEYS[0], 5, 2)
    with pytest.raises(ValueError):
        backend.storage.open(PART_KEYS[0], -1)


def test_missing_objects_and_directories_are_object_not_found(backend, sources):
    backend.storage.publish([(sources[1], PART_KEYS[1])], (MANIFEST, MANIFEST_KEY))
    for key in (PART_KEYS[0], PREFIX):  # PREFIX: a directory (local, SFTP), a key prefix (S3)
        with pytest.raises(ObjectNotFound):
            backend.storage.open(key)
        with pytest.raises(ObjectNotFound):
            backend.storage.open(key, 3, 3)
        with pytest.raises(ObjectNotFound):
            backend.storage.stat(key)
        assert not backend.storage.exists(key)


def test_stat_exists_and_an_idempotent_delete(backend, sources):
    storage = backend.storage
    storage.publish([(sources[1], PART_KEYS[1])], (MANIFEST, MANIFEST_KEY))
    stat = storage.stat(PART_KEYS[1])
    assert stat.size == sources[1].stat().st_size
    assert stat.modified.tzinfo is not None
    assert abs(stat.modified - datetime.now(UTC)) < timedelta(days=1)  # a sanity bound, not a timing one
    assert stat.etag and '"' not in stat.etag
    assert storage.stat(PART_KEYS[1]).etag == stat.etag
    assert storage.exists(PART_KEYS[1])
    storage.delete([PART_KEYS[1], MANIFEST_KEY, PART_KEYS[0]])  # a missing key is ignored
    storage.delete([PART_KEYS[1]])  # idempotent
    storage.delete([])
    assert not storage.exists(PART_KEYS[1])
    assert_nothing_left(backend)


def test_move_renames_on_the_server_replacing_the_target_and_is_idempotent(backend, sources):
    storage = backend.storage
    hidden = f"{PREFIX}/.guid-a1-s0000_QueryExport_1__000000000000.csv.gz"
    storage.publish([(sources[0], hidden)], (MANIFEST, MANIFEST_KEY))
    storage.publish([(sources[1], PART_KEYS[0])], (MANIFEST, MANIFEST_KEY))  # a key the move replaces
    storage.move(hidden, PART_KEYS[0])
    assert backend.finals() == sorted([PART_KEYS[0], MANIFEST_KEY])
    assert read(storage, PART_KEYS[0]) == sources[0].read_bytes()
    storage.move(hidden, PART_KEYS[0])  # the source gone, the target there: a move whose answer was lost
    assert read(storage, PART_KEYS[0]) == sources[0].read_bytes()
    with pytest.raises(ObjectNotFound):
        storage.move(hidden, PART_KEYS[1])  # neither there
    assert backend.pending() == []


def test_etag_changes_when_the_content_changes(backend, sources):
    backend.storage.publish([(sources[0], PART_KEYS[0])], (MANIFEST, MANIFEST_KEY))
    first = backend.storage.stat(PART_KEYS[0]).etag
    backend.storage.publish([(sources[1], PART_KEYS[0])], (MANIFEST, MANIFEST_KEY))
    assert backend.storage.stat(PART_KEYS[0]).etag != first


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_could_leave_the_root_are_refused(backend, sources, key):
    with pytest.raises(StorageError) as caught:
        backend.storage.publish([(sources[1], key)], (MANIFEST, MANIFEST_KEY))
    assert not caught.value.retryable
    with pytest.raises(StorageError):
        backend.storage.open(key)
    with pytest.raises(StorageError):
        backend.storage.delete([key])
    assert_nothing_left(backend)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_key_validate_refuses_keys_that_could_leave_a_root(key):
    with pytest.raises(StorageError):
        key_validate(key)


def test_test_connection_writes_reads_and_removes_a_probe(backend):
    backend.storage.test_connection()
    assert_nothing_left(backend)


def test_sweep_removes_old_unfinished_uploads_and_nothing_else(backend, sources):
    backend.storage.publish([(sources[1], PART_KEYS[1])], (MANIFEST, MANIFEST_KEY))
    backend.abandoned_upload_make(PART_KEYS[0])
    assert backend.storage.sweep_incomplete(timedelta(days=365 * 100)) == 0  # younger than that: kept
    assert len(backend.pending()) == 1
    swept = 1 if backend.sweeps else 0
    assert backend.storage.sweep_incomplete(timedelta(hours=1)) == swept
    assert len(backend.pending()) == 1 - swept
    assert backend.storage.sweep_incomplete(timedelta(hours=1)) == 0
    assert backend.finals() == sorted([PART_KEYS[1], MANIFEST_KEY])  # published objects are never swept
