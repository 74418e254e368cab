"""S3 storage against a real S3-compatible HTTP server (moto_server): what only S3 does (multipart uploads and
their checksums, presigned URLs, batched deletes, credentials and errors that say what to fix in the
destination). What every backend promises is in test_storage_contract.py."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import random
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exports.errors import PublishFenced
from exports.storage import ObjectNotFound, StorageError, storage_for
from exports.storage.s3 import S3Storage
from exports.storage.s3 import parts as s3_parts_module
from exports.storage.s3 import storage as s3_storage_module
from exports.storage.s3.parts import MAX_PARTS, MIB, MIN_PART_SIZE, b64, part_ranges
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


def test_each_file_is_one_multipart_upload_of_its_parts(moto, bucket, storage, sources):
    contents = [source.read_bytes() for source in sources]
    with storage.publication() as publication:
        for source, key in zip(sources, PART_KEYS, strict=True):
            publication.stage(source, key)
            source.unlink()  # every part is on the server: the upload needs the file no more
        publication.commit((b"{}", MANIFEST_KEY))
    for content, key in zip(contents, PART_KEYS, strict=True):
        # Read back with a client of our own, not only through the code under test.
        assert moto.client().get_object(Bucket=bucket, Key=f"{PREFIX}/{key}")["Body"].read() == content
    # The big file went up in three parts, the small one in one: S3's multipart ETag counts them.
    assert storage.stat(PART_KEYS[0]).etag.endswith("-3")
    assert storage.stat(PART_KEYS[1]).etag.endswith("-1")


def test_objects_carry_a_content_type_and_a_checksum_the_server_computed(moto, bucket, storage, sources):
    storage.publish([(sources[0], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    client = moto.client()
    part = client.head_object(Bucket=bucket, Key=f"{PREFIX}/{PART_KEYS[0]}", ChecksumMode="ENABLED")
    assert part["ContentType"] == "application/gzip"
    data = sources[0].read_bytes()
    digests = b"".join(hashlib.sha256(data[i : i + CHUNK]).digest() for i in range(0, len(data), CHUNK))
    expected = b64(hashlib.sha256(digests).digest())
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


def test_delete_sends_keys_in_batches(moto, bucket, storage, sources, monkeypatch):
    keys = [f"reports/acme/k{i}.csv.gz" for i in range(5)]
    storage.publish([(sources[1], key) for key in keys], (b"{}", MANIFEST_KEY))
    monkeypatch.setattr(
        s3_storage_module, "DELETE_BATCH", 2
    )  # DeleteObjects takes 1000 keys; 5 keys make 3 batches
    storage.delete(keys)
    assert moto.keys(bucket) == [f"{PREFIX}/{MANIFEST_KEY}"]


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../outside", "reports/../../outside", "reports/./x", "a//b", "a/", "a\\b", "a\x00b"],
)
def test_presigned_urls_refuse_keys_that_could_escape_the_prefix(storage, key):
    with pytest.raises(StorageError):
        storage.presigned_url(key, 60)


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


def test_sweep_leaves_uploads_outside_the_prefix_alone(moto, bucket, storage):
    theirs = moto.client().create_multipart_upload(Bucket=bucket, Key="someone-else/upload.bin")
    # moto dates every upload 2010-11-10: "older than an hour" would take it, were it under the prefix.
    assert storage.sweep_incomplete(timedelta(hours=1)) == 0
    assert moto.uploads(bucket) == [theirs["Key"]]


@given(
    size=st.integers(min_value=0, max_value=50 * 1024**3),
    threshold=st.integers(min_value=0, max_value=1024**3),
    chunk=st.integers(min_value=MIN_PART_SIZE, max_value=1024**3),
)
def test_part_ranges_cover_the_file_within_s3_limits(size, threshold, chunk):
    ranges = part_ranges(size, threshold, chunk)
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


# -- the Publication: staged one file at a time, placed all at once ---------------------------------------


def test_an_aborted_publication_takes_nothing_more(moto, bucket, storage, sources):
    publication = storage.publication()
    publication.stage(sources[1], PART_KEYS[0])
    publication.abort()
    with pytest.raises(StorageError):
        publication.stage(sources[1], PART_KEYS[1])
    with pytest.raises(StorageError):
        publication.commit((b"{}", MANIFEST_KEY))
    assert moto.keys(bucket) == [] and moto.uploads(bucket) == []


def test_a_fenced_publication_cannot_commit_any_more(moto, bucket, storage, sources):
    with storage.publication() as publication:
        publication.stage(sources[1], PART_KEYS[0])
        with pytest.raises(PublishFenced):
            publication.commit((b"{}", MANIFEST_KEY), commit_check=lambda: False)
        with pytest.raises(StorageError):  # only abort is left
            publication.commit((b"{}", MANIFEST_KEY))
        assert moto.keys(bucket) == []
    assert moto.keys(bucket) == [] and moto.uploads(bucket) == []


class PartRequests:
    """What each UploadPart request carried as it went on the wire (botocore's `before-send`, after signing)."""

    def __init__(self, storage: S3Storage) -> None:
        self.headers: list[dict[str, str]] = []
        storage.client.meta.events.register("before-send.s3.UploadPart", self._seen)

    def _seen(self, request, **_) -> None:
        self.headers.append({name.lower(): _text(value) for name, value in request.headers.items()})


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_by_default_a_file_goes_up_in_8_mib_parts(moto, bucket, tmp_path):
    # boto3's TransferManager defaults: 8 MiB parts (and threshold), 10 at a time.
    source = tmp_path / "big.part"
    source.write_bytes(random.Random(5).randbytes(20 * MIB))
    storage = S3Storage(**moto.storage_config(bucket, prefix=PREFIX))
    assert (storage.multipart_chunk, storage.multipart_threshold, storage.max_concurrency) == (
        8 * MIB,
        8 * MIB,
        10,
    )
    requests = PartRequests(storage)
    storage.publish([(source, PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    sizes = sorted(int(headers["content-length"]) for headers in requests.headers)
    assert sizes == [2, 4 * MIB, 8 * MIB, 8 * MIB]  # the manifest's one part, then the file's three
    assert _read(storage, PART_KEYS[0]) == source.read_bytes()
    storage.close()


def test_each_part_is_hashed_once_and_signed_with_that_hash(moto, bucket, storage, sources, monkeypatch):
    # Over plain HTTP SigV4 signs the body's SHA-256: it must be the part's own digest (a server checks it
    # against the bytes), taken from the part's checksum header rather than computed again, so the file is
    # read twice (hashed, then sent), not three times.
    read = {"bytes": 0}
    original = s3_parts_module.FileSlice.read

    def counted(self, size=-1):
        data = original(self, size)
        read["bytes"] += len(data)
        return data

    monkeypatch.setattr(s3_parts_module.FileSlice, "read", counted)
    requests = PartRequests(storage)
    storage.publish([(sources[0], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    content = sources[0].read_bytes()
    digests = {_sha256(content[offset : offset + CHUNK]) for offset in range(0, len(content), CHUNK)}
    file_parts = [headers for headers in requests.headers if int(headers["content-length"]) > 2]
    assert {headers["x-amz-content-sha256"] for headers in file_parts} == digests
    for headers in file_parts:
        assert base64.b64decode(headers["x-amz-checksum-sha256"]).hex() == headers["x-amz-content-sha256"]
        assert "Signature=" in headers["authorization"]
    assert read["bytes"] == 2 * len(content)


def test_without_checksums_botocore_signs_each_part_with_the_hash_it_computes(moto, bucket, sources):
    storage = S3Storage(
        **moto.storage_config(
            bucket, prefix=PREFIX, multipart_threshold=CHUNK, multipart_chunk=CHUNK, verify_checksums=False
        )
    )
    requests = PartRequests(storage)
    storage.publish([(sources[0], PART_KEYS[0])], (b"{}", MANIFEST_KEY))
    content = sources[0].read_bytes()
    digests = {_sha256(content[offset : offset + CHUNK]) for offset in range(0, len(content), CHUNK)}
    file_parts = [headers for headers in requests.headers if int(headers["content-length"]) > 2]
    assert not any("x-amz-checksum-sha256" in headers for headers in file_parts)
    assert {headers["x-amz-content-sha256"] for headers in file_parts} == digests
    assert _read(storage, PART_KEYS[0]) == content
    storage.close()
