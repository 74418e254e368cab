"""S3 storage against a real S3-compatible HTTP server (moto_server): publish all or nothing through multipart
uploads, read back with ranges, presigned URLs, errors that say what to fix in the destination."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import random
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exports.storage import ObjectNotFound, StorageError, storage_for
from exports.storage import s3 as s3_module
from exports.storage.s3 import MAX_PARTS, MIB, MIN_PART_SIZE, S3Storage
from tests.moto import SECRET_ACCESS_KEY, MotoServer, moto_server
from tests.servers import free_port

PREFIX = "exports"
PART_KEYS = [f"reports/acme/guid_QueryExport_1579194142011__{i:012d}.csv.gz" for i in range(2)]
MANIFEST_KEY = "reports/acme/guid_manifest.json"
CHUNK = 5 * MIB  # S3's smallest part, so a 12 MiB file is a real three-part upload


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def bucket(moto) -> str:
    return moto.bucket_create()


@pytest.fixture
def storage(moto, bucket) -> Iterator[S3Storage]:
    backend = S3Storage(
        **moto.storage_config(
            bucket, prefix=PREFIX, multipart_threshold=CHUNK, multipart_chunk=CHUNK, max_concurrency=3
        )
    )
    yield backend
    backend.close()


@pytest.fixture
def sources(tmp_path) -> list[Path]:
    """A part larger than the multipart threshold (three parts: 5 + 5 + 2 MiB) and a small one."""
    rng = random.Random(4)
    big = tmp_path / ".part0.tmp"
    big.write_bytes(rng.randbytes(12 * MIB + 123))
    small = tmp_path / ".part1.tmp"
    small.write_bytes(b"small part\n" * 10)
    return [big, small]


def manifest_for(sources: list[Path]) -> bytes:
    parts = [
        {"name": key.rsplit("/", 1)[1], "bytes": path.stat().st_size, "sha256": _sha256(path.read_bytes())}
        for path, key in zip(sources, PART_KEYS, strict=True)
    ]
    return json.dumps({"parts": parts}).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(storage: S3Storage, key: str, start: int | None = None, end: int | None = None) -> bytes:
    with storage.open(key, start, end) as stream:
        return stream.read()


def test_publish_puts_every_file_and_the_manifest_under_its_key(moto, bucket, storage, sources):
    manifest = manifest_for(sources)
    storage.publish(list(zip(sources, PART_KEYS, strict=True)), (manifest, MANIFEST_KEY))

    assert moto.keys(bucket) == sorted(f"{PREFIX}/{key}" for key in [*PART_KEYS, MANIFEST_KEY])
    assert moto.uploads(bucket) == []
    for source, key in zip(sources, PART_KEYS, strict=True):
        assert _read(storage, key) == source.read_bytes()
        # Read back with a client of our own too, not only through the code under test.
        body = moto.client().get_object(Bucket=bucket, Key=f"{PREFIX}/{key}")["Body"].read()
        assert body == source.read_bytes()
        assert storage.size(key) == source.stat().st_size
    assert _read(storage, MANIFEST_KEY) == manifest
    # The big file went up in three parts, the small one in one: S3's multipart ETag counts them.
    assert storage.stat(PART_KEYS[0]).etag.endswith("-3")
    assert storage.stat(PART_KEYS[1]).etag.endswith("-1")
    assert all(source.exists() for source in sources)  # the caller removes its own files


def test_objects_carry_a_content_type_and_a_checksum_the_server_computed(moto, bucket, storage, sources):
    storage.publish([(sources[0], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    client = moto.client()
    part = client.head_object(Bucket=bucket, Key=f"{PREFIX}/{PART_KEYS[0]}", ChecksumMode="ENABLED")
    assert part["ContentType"] == "application/gzip"
    data = sources[0].read_bytes()
    digests = b"".join(hashlib.sha256(data[i : i + CHUNK]).digest() for i in range(0, len(data), CHUNK))
    expected = s3_module._b64(hashlib.sha256(digests).digest())
    assert part["ChecksumSHA256"].split("-")[0] == expected
    manifest = client.head_object(Bucket=bucket, Key=f"{PREFIX}/{MANIFEST_KEY}")
    assert manifest["ContentType"] == "application/json"


def test_presigned_url_downloads_the_bytes_the_manifest_describes(storage, sources):
    storage.publish(list(zip(sources, PART_KEYS, strict=True)), (manifest_for(sources), MANIFEST_KEY))
    manifest = json.loads(_read(storage, MANIFEST_KEY))
    for entry, key in zip(manifest["parts"], PART_KEYS, strict=True):
        url = storage.presigned_url(key, 300)
        assert "X-Amz-Signature=" in url and "X-Amz-Expires=300" in url
        assert SECRET_ACCESS_KEY not in url
        with urllib.request.urlopen(url, timeout=60) as response:
            body = response.read()
        assert len(body) == entry["bytes"]
        assert _sha256(body) == entry["sha256"]
    assert "X-Amz-Expires=3600" in storage.presigned_url(PART_KEYS[0])  # the configured default


@pytest.mark.parametrize("expires", [0, -5, 7 * 24 * 3600 + 1])
def test_presigned_url_lifetime_is_bounded(storage, expires):
    with pytest.raises(StorageError, match="lifetime"):
        storage.presigned_url(PART_KEYS[0], expires)


def test_publish_overwrites_existing_keys(storage, sources):
    storage.publish([(sources[0], PART_KEYS[0])], (b"one", MANIFEST_KEY))
    storage.publish([(sources[1], PART_KEYS[0])], (b"two", MANIFEST_KEY))
    assert _read(storage, PART_KEYS[0]) == sources[1].read_bytes()
    assert _read(storage, MANIFEST_KEY) == b"two"


def test_an_empty_file_is_published(moto, bucket, storage, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    storage.publish([(empty, PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    assert storage.size(PART_KEYS[0]) == 0
    assert _read(storage, PART_KEYS[0]) == b""
    assert moto.uploads(bucket) == []


def test_the_same_key_twice_is_refused_and_nothing_is_left(moto, bucket, storage, sources):
    with pytest.raises(StorageError, match="twice"):
        storage.publish([(sources[0], PART_KEYS[0]), (sources[1], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    assert moto.keys(bucket) == []
    assert moto.uploads(bucket) == []


def test_open_reads_byte_ranges(storage, sources):
    storage.publish([(sources[0], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    content = sources[0].read_bytes()
    size = len(content)
    cases = [
        (0, 1),
        (2, 5),
        (size - 3, None),
        (CHUNK - 10, CHUNK + 10),  # across a part boundary
        (10, size),
        (5, size + 100),
        (size, None),
        (size + 5, None),
        (size + 5, size + 10),
        (7, 7),
        (None, None),
    ]
    for start, end in cases:
        assert _read(storage, PART_KEYS[0], start, end) == content[start:end], (start, end)
    with storage.open(PART_KEYS[0], 1000, 1004) as stream:  # read in small steps too
        assert stream.read(2) + stream.read(1) + stream.read(10) + stream.read() == content[1000:1004]


def test_an_inverted_range_is_refused(storage, sources):
    storage.publish([(sources[1], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    with pytest.raises(ValueError):
        storage.open(PART_KEYS[0], 5, 2)
    with pytest.raises(ValueError):
        storage.open(PART_KEYS[0], -1)


def test_stat_exists_and_delete(moto, bucket, storage, sources):
    storage.publish([(sources[1], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    stat = storage.stat(PART_KEYS[0])
    assert stat.size == sources[1].stat().st_size
    assert stat.modified.tzinfo == UTC
    assert abs(stat.modified - datetime.now(UTC)) < timedelta(days=1)  # a sanity bound, not a timing one
    assert stat.etag and '"' not in stat.etag
    assert storage.exists(PART_KEYS[0])
    storage.delete([PART_KEYS[0], MANIFEST_KEY, PART_KEYS[1]])  # a missing key is ignored
    storage.delete([PART_KEYS[0]])  # idempotent
    storage.delete([])
    assert not storage.exists(PART_KEYS[0])
    assert moto.keys(bucket) == []


def test_delete_sends_keys_in_batches(moto, bucket, storage, sources, monkeypatch):
    keys = [f"reports/acme/k{i}.csv.gz" for i in range(5)]
    storage.publish([(sources[1], key) for key in keys], (b"{}", MANIFEST_KEY))
    monkeypatch.setattr(s3_module, "DELETE_BATCH", 2)  # DeleteObjects takes 1000 keys; 5 keys make 3 batches
    storage.delete(keys)
    assert moto.keys(bucket) == [f"{PREFIX}/{MANIFEST_KEY}"]


def test_etag_changes_when_the_content_changes(storage, sources):
    storage.publish([(sources[0], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    first = storage.stat(PART_KEYS[0]).etag
    storage.publish([(sources[1], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    assert storage.stat(PART_KEYS[0]).etag != first


def test_missing_objects_are_object_not_found(storage):
    with pytest.raises(ObjectNotFound):
        storage.open(PART_KEYS[0])
    with pytest.raises(ObjectNotFound):
        storage.open(PART_KEYS[0], 3, 3)
    with pytest.raises(ObjectNotFound):
        storage.stat(PART_KEYS[0])
    assert not storage.exists(PART_KEYS[0])


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../outside", "reports/../../outside", "reports/./x", "a//b", "a/", "a\\b", "a\x00b"],
)
def test_keys_that_could_escape_the_prefix_are_refused(moto, bucket, storage, sources, key):
    with pytest.raises(StorageError) as caught:
        storage.publish([(sources[1], key)], (b"{}", MANIFEST_KEY))
    assert not caught.value.retryable
    with pytest.raises(StorageError):
        storage.open(key)
    with pytest.raises(StorageError):
        storage.delete([key])
    with pytest.raises(StorageError):
        storage.presigned_url(key, 60)
    assert moto.keys(bucket) == []


def test_without_a_prefix_keys_are_object_keys(moto, bucket, sources):
    storage = S3Storage(**moto.storage_config(bucket))
    storage.publish([(sources[1], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    assert moto.keys(bucket) == sorted([PART_KEYS[0], MANIFEST_KEY])


def test_storage_for_builds_an_s3_backend(moto, bucket):
    storage = storage_for("s3", **moto.storage_config(bucket, prefix="/nested/prefix/"))
    assert isinstance(storage, S3Storage)
    assert storage.prefix == "nested/prefix"
    storage.test_connection()
    with pytest.raises(StorageError, match="invalid s3 storage configuration"):
        storage_for("s3", bucket=bucket, no_such_option=1)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"bucket": "a"}, "bucket name"),
        ({"bucket": "has space"}, "bucket name"),
        ({"prefix": "../up"}, "invalid storage key"),
        ({"multipart_chunk": MIN_PART_SIZE - 1}, "multipart_chunk"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"presign_expires": 0}, "lifetime"),
        ({"endpoint_url": "not a url"}, "invalid S3 storage configuration"),
    ],
)
def test_a_bad_configuration_is_refused(moto, bucket, overrides, message):
    with pytest.raises(StorageError, match=message) as caught:
        S3Storage(**{**moto.storage_config(bucket), **overrides})
    assert not caught.value.retryable


def test_the_secret_is_not_in_the_repr(moto, bucket):
    storage = S3Storage(**moto.storage_config(bucket, prefix=PREFIX))
    assert SECRET_ACCESS_KEY not in repr(storage)
    assert bucket in repr(storage)


def test_test_connection_writes_reads_and_removes_a_probe(moto, bucket, storage):
    storage.test_connection()
    assert moto.keys(bucket) == []
    assert moto.uploads(bucket) == []


def test_a_missing_bucket_is_a_permanent_error_naming_the_bucket(moto, sources):
    storage = S3Storage(**moto.storage_config("no-such-bucket-here"))
    for action in (
        storage.test_connection,
        lambda: storage.publish([(sources[1], PART_KEYS[0])], (b"{}", MANIFEST_KEY)),
        lambda: storage.open(PART_KEYS[0]),
        lambda: storage.stat(PART_KEYS[0]),  # HEAD says only 404: the bucket is checked before "not found"
        lambda: storage.exists(PART_KEYS[0]),
    ):
        with pytest.raises(StorageError, match="'no-such-bucket-here' does not exist") as caught:
            action()
        assert not caught.value.retryable
        assert not isinstance(caught.value, ObjectNotFound)


def test_an_unreachable_endpoint_is_a_retryable_error(moto):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    storage = S3Storage(
        **moto.storage_config("some-bucket", endpoint_url=endpoint, max_attempts=1, connect_timeout=5)
    )
    with pytest.raises(StorageError) as caught:
        storage.test_connection()
    assert caught.value.retryable
    assert endpoint in str(caught.value)


def test_sweep_aborts_old_uploads_under_the_prefix_only(moto, bucket, storage):
    client = moto.client()
    ours = client.create_multipart_upload(Bucket=bucket, Key=f"{PREFIX}/reports/acme/left-behind.csv.gz")
    theirs = client.create_multipart_upload(Bucket=bucket, Key="someone-else/upload.bin")
    # moto reports every upload as initiated on 2010-11-10, so "younger than a century" keeps it and
    # "older than an hour" takes it.
    assert storage.sweep_incomplete(timedelta(days=365 * 100)) == 0
    assert moto.uploads(bucket) == sorted([ours["Key"], theirs["Key"]])
    assert storage.sweep_incomplete(timedelta(hours=1)) == 1
    assert moto.uploads(bucket) == [theirs["Key"]]
    assert storage.sweep_incomplete(timedelta(hours=1)) == 0


@given(
    size=st.integers(min_value=0, max_value=50 * 1024**3),
    threshold=st.integers(min_value=0, max_value=1024**3),
    chunk=st.integers(min_value=MIN_PART_SIZE, max_value=1024**3),
)
def test_part_ranges_cover_the_file_within_s3_limits(size, threshold, chunk):
    ranges = s3_module._part_ranges(size, threshold, chunk)
    assert 1 <= len(ranges) <= MAX_PARTS
    assert ranges[0][0] == 0
    assert all(a + la == b for (a, la), (b, _) in itertools.pairwise(ranges))  # contiguous
    assert sum(length for _, length in ranges) == size
    if size <= threshold:
        assert len(ranges) == 1
    else:
        assert all(length >= MIN_PART_SIZE for _, length in ranges[:-1])
        assert all(length >= chunk for _, length in ranges[:-1])


# -- credentials and permissions, on a server that checks them ------------------------------------------


@pytest.fixture(scope="module")
def auth_moto() -> Iterator[tuple[MotoServer, str, dict[str, tuple[str, str]]]]:
    """A second server that checks signatures and IAM policies: a bucket, a `writer` allowed s3:* and a
    `stranger` allowed nothing (set up before checks start: moto's switch applies to the whole server)."""
    with moto_server() as server:
        bucket = server.bucket_create("auth")
        allow_s3 = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        users = {
            "writer": server.access_key_create("writer", policy=allow_s3),
            "stranger": server.access_key_create("stranger"),
        }
        server.enforce_auth()
        yield server, bucket, users


def _auth_storage(server: MotoServer, bucket: str, key_id: str, secret: str) -> S3Storage:
    return S3Storage(
        **server.storage_config(bucket, prefix=PREFIX, access_key_id=key_id, secret_access_key=secret)
    )


def test_with_checked_credentials_publish_and_read_work(auth_moto, sources):
    server, bucket, users = auth_moto
    storage = _auth_storage(server, bucket, *users["writer"])
    storage.test_connection()
    storage.publish([(sources[1], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    assert _read(storage, PART_KEYS[0]) == sources[1].read_bytes()
    storage.delete([PART_KEYS[0], MANIFEST_KEY])


@pytest.mark.parametrize(
    "who, message",
    [
        ("unknown key", "access key id is not known"),
        ("wrong secret", "secret access key does not match"),
        ("stranger", "access denied"),
    ],
)
def test_bad_credentials_are_permanent_errors_that_say_what_to_fix(auth_moto, sources, who, message):
    server, bucket, users = auth_moto
    writer_id, writer_secret = users["writer"]
    key_id, secret = {
        "unknown key": ("AKIAUNKNOWNUNKNOWN00", "some-secret-value"),
        "wrong secret": (writer_id, "not-the-writers-secret"),
        "stranger": users["stranger"],
    }[who]
    storage = _auth_storage(server, bucket, key_id, secret)
    for action in (
        storage.test_connection,
        lambda: storage.publish([(sources[1], PART_KEYS[0])], (b"{}", MANIFEST_KEY)),
        lambda: storage.open(PART_KEYS[0]),
    ):
        with pytest.raises(StorageError, match=message) as caught:
            action()
        assert not caught.value.retryable
        assert secret not in str(caught.value)
    admin = _auth_storage(server, bucket, writer_id, writer_secret).client
    assert admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert admin.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_head_refused_for_lack_of_permission_is_not_object_not_found(auth_moto):
    server, bucket, users = auth_moto
    storage = _auth_storage(server, bucket, *users["stranger"])
    with pytest.raises(StorageError, match="access denied") as caught:
        storage.stat(PART_KEYS[0])
    assert not isinstance(caught.value, ObjectNotFound)
    with pytest.raises(StorageError, match="access denied"):
        storage.exists(PART_KEYS[0])


def test_reading_an_object_stream_in_pieces(storage, sources):
    storage.publish([(sources[0], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    sink = io.BytesIO()
    with storage.open(PART_KEYS[0], 17) as stream:
        while chunk := stream.read(1_000_003):
            sink.write(chunk)
    assert sink.getvalue() == sources[0].read_bytes()[17:]


def test_a_refused_commit_check_publishes_nothing(moto, bucket, storage, sources):
    from exports.storage.base import PublishFenced

    with pytest.raises(PublishFenced):
        storage.publish(
            list(zip(sources, PART_KEYS, strict=True)),
            (manifest_for(sources), MANIFEST_KEY),
            commit_check=lambda: False,
        )
    assert moto.keys(bucket) == [] and moto.uploads(bucket) == []


# -- the Publication: staged one file at a time, placed all at once ---------------------------------------


def test_staged_files_are_invisible_until_commit(moto, bucket, storage, sources):
    manifest = manifest_for(sources)
    with storage.publication() as publication:
        for source, key in zip(sources, PART_KEYS, strict=True):
            publication.stage(source, key)
        assert moto.keys(bucket) == []
        assert moto.uploads(bucket) == sorted(f"{PREFIX}/{key}" for key in PART_KEYS)
        publication.commit((manifest, MANIFEST_KEY))
        assert moto.keys(bucket) == sorted(f"{PREFIX}/{key}" for key in [*PART_KEYS, MANIFEST_KEY])
        assert moto.uploads(bucket) == []
    # Leaving the block after the commit keeps everything.
    assert len(moto.keys(bucket)) == 3
    assert _read(storage, MANIFEST_KEY) == manifest


def test_a_source_deleted_once_staged_is_still_published(moto, bucket, storage, sources):
    contents = [source.read_bytes() for source in sources]
    with storage.publication() as publication:
        for source, key in zip(sources, PART_KEYS, strict=True):
            publication.stage(source, key)
            source.unlink()  # the runner removes each part as soon as it is staged
        publication.commit((b"{}", MANIFEST_KEY))
    for content, key in zip(contents, PART_KEYS, strict=True):
        assert _read(storage, key) == content
    assert storage.stat(PART_KEYS[0]).etag.endswith("-3")  # still the three-part upload


def test_abort_after_two_stages_leaves_nothing(moto, bucket, storage, sources):
    publication = storage.publication()
    for source, key in zip(sources, PART_KEYS, strict=True):
        publication.stage(source, key)
    assert len(moto.uploads(bucket)) == 2
    publication.abort()
    assert moto.keys(bucket) == [] and moto.uploads(bucket) == []
    publication.abort()  # idempotent
    with pytest.raises(StorageError):
        publication.stage(sources[1], PART_KEYS[1])
    with pytest.raises(StorageError):
        publication.commit((b"{}", MANIFEST_KEY))
    assert moto.keys(bucket) == [] and moto.uploads(bucket) == []


def test_leaving_the_block_without_a_commit_aborts(moto, bucket, storage, sources):
    with pytest.raises(RuntimeError), storage.publication() as publication:
        publication.stage(sources[0], PART_KEYS[0])
        raise RuntimeError("the export failed while producing the next part")
    assert moto.keys(bucket) == [] and moto.uploads(bucket) == []


def test_a_commit_refused_by_the_commit_check_leaves_nothing(moto, bucket, storage, sources):
    from exports.storage.base import PublishFenced

    checks: list[int] = []

    def lease_lost() -> bool:
        checks.append(len(moto.uploads(bucket)))
        return False

    with storage.publication() as publication:
        for source, key in zip(sources, PART_KEYS, strict=True):
            publication.stage(source, key)
        with pytest.raises(PublishFenced) as caught:
            publication.commit((manifest_for(sources), MANIFEST_KEY), commit_check=lease_lost)
        assert not caught.value.retryable
        assert checks == [3]  # asked once everything, the manifest too, was staged
        assert moto.keys(bucket) == []  # nothing placed
        with pytest.raises(StorageError):  # only abort is left
            publication.commit((manifest_for(sources), MANIFEST_KEY))
        assert moto.keys(bucket) == []
    assert moto.keys(bucket) == [] and moto.uploads(bucket) == []


def test_a_key_staged_twice_is_refused_and_the_publication_goes_on(moto, bucket, storage, sources):
    with storage.publication() as publication:
        publication.stage(sources[0], PART_KEYS[0])
        with pytest.raises(StorageError, match="twice") as caught:
            publication.stage(sources[1], PART_KEYS[0])
        assert not caught.value.retryable
        with pytest.raises(StorageError, match="twice"):
            publication.commit((b"{}", PART_KEYS[0]))  # the manifest under a staged key
        assert moto.uploads(bucket) == [f"{PREFIX}/{PART_KEYS[0]}"]  # nothing sent for either
        publication.commit((b"{}", MANIFEST_KEY))
    assert _read(storage, PART_KEYS[0]) == sources[0].read_bytes()
    assert moto.keys(bucket) == sorted(f"{PREFIX}/{key}" for key in (PART_KEYS[0], MANIFEST_KEY))
