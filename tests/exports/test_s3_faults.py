"""S3 publish under injected faults, against a real moto_server: whatever fails and whenever, no object is
left under any key and no multipart upload is left open (or, when even the abort cannot be sent, the sweep
removes it).

Faults are injected with botocore's own event hooks on the storage's client (`before-send` runs after the
request is signed, just before it goes on the wire): a connection that drops, a server error, a body
damaged in transit, a source file cut short mid-upload.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError

from exports.storage import StorageError
from exports.storage.s3 import S3Storage
from exports.storage.s3.parts import MIB
from tests.moto import MotoServer, moto_server

PREFIX = "exports"
BIG_KEY = "reports/acme/guid_QueryExport_1579194142011__000000000000.csv.gz"
SMALL_KEY = "reports/acme/guid_QueryExport_1579194142011__000000000001.csv.gz"
MANIFEST_KEY = "reports/acme/guid_manifest.json"
CHUNK = 5 * MIB


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def bucket(moto) -> str:
    return moto.bucket_create("faults")


def make_storage(moto: MotoServer, bucket: str, **overrides: Any) -> S3Storage:
    # One attempt per request: the faults below are permanent, and botocore's back-off would only slow
    # the tests down (a retried request meets the same hook again).
    options = {"multipart_threshold": CHUNK, "multipart_chunk": CHUNK, "max_attempts": 1, **overrides}
    return S3Storage(**moto.storage_config(bucket, prefix=PREFIX, **options))


@pytest.fixture
def storage(moto, bucket) -> Iterator[S3Storage]:
    backend = make_storage(moto, bucket, max_concurrency=3)
    yield backend
    backend.close()


@pytest.fixture
def files(tmp_path) -> list[tuple[Path, str]]:
    """A 12 MiB file (three parts) and a small one: five parts to upload with the manifest."""
    big = tmp_path / "big.part"
    big.write_bytes(random.Random(7).randbytes(12 * MIB))
    small = tmp_path / "small.part"
    small.write_bytes(b"a,b\n1,2\n")
    return [(big, BIG_KEY), (small, SMALL_KEY)]


MANIFEST = (b'{"parts": 2}', MANIFEST_KEY)


class Hook:
    """A botocore event handler that runs `act(call number, request)` for one operation, from any thread.
    `before-send` runs once per attempt, just before the request goes on the wire; `after-call` once per
    call, after the response was received and parsed."""

    def __init__(
        self,
        storage: S3Storage,
        operation: str,
        act: Callable[[int, Any], Any],
        *,
        event: str = "before-send",
    ) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        self._act = act
        self._event = f"{event}.s3.{operation}"
        self._client = storage.client
        self._client.meta.events.register(self._event, self)

    def __call__(self, request: Any = None, **_: Any) -> Any:
        with self._lock:
            self.calls += 1
            number = self.calls
        return self._act(number, request)

    def remove(self) -> None:
        self._client.meta.events.unregister(self._event, self)


def connection_drops(request: Any) -> None:
    raise ConnectionClosedError(endpoint_url=request.url)


def assert_nothing_left(moto: MotoServer, bucket: str) -> None:
    assert moto.keys(bucket) == []
    assert moto.uploads(bucket) == []


def test_a_missing_source_file_fails_before_any_request_for_it(moto, bucket, storage, files):
    sent: list[str] = []
    Hook(storage, "*", lambda number, request: sent.append(request.url))
    missing = files[1][0].with_name("gone.part")
    with pytest.raises(StorageError, match="no such local file") as caught:
        storage.publish([files[0], (missing, SMALL_KEY)], MANIFEST)
    assert not caught.value.retryable
    # The first file went up (staged, then aborted); nothing was ever sent for the missing one.
    assert any(BIG_KEY in url for url in sent)
    assert not any(SMALL_KEY in url or MANIFEST_KEY in url for url in sent)
    assert_nothing_left(moto, bucket)


# Parts are sent in staging order: the big file's 1-3, the small file's 4, the manifest's 5 (in commit).
@pytest.mark.parametrize(
    "failing_part, open_at_failure",
    [(2, [BIG_KEY]), (4, [BIG_KEY, SMALL_KEY]), (5, [BIG_KEY, SMALL_KEY, MANIFEST_KEY])],
)
def test_a_part_upload_that_fails_aborts_every_upload(
    moto, bucket, storage, files, failing_part, open_at_failure
):
    open_uploads_at_failure: list[list[str]] = []

    def part_fails(number: int, request: Any) -> None:
        if number == failing_part:
            open_uploads_at_failure.append(moto.uploads(bucket))
            connection_drops(request)

    Hook(storage, "UploadPart", part_fails)
    with pytest.raises(StorageError) as caught:
        storage.publish(files, MANIFEST)
    assert caught.value.retryable  # a dropped connection may well work next time
    # Every file staged so far was an open upload when the part failed (so there was something to abort) ...
    assert open_uploads_at_failure == [sorted(f"{PREFIX}/{key}" for key in open_at_failure)]
    # ... and nothing of it is left.
    assert_nothing_left(moto, bucket)


def test_a_server_error_on_a_part_aborts_every_upload(moto, bucket, storage, files):
    def slow_down(number: int, request: Any) -> AWSResponse | None:
        if number < 2:
            return None
        body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
        return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, _Raw(body))

    Hook(storage, "UploadPart", slow_down)
    with pytest.raises(StorageError, match="SlowDown") as caught:
        storage.publish(files, MANIFEST)
    assert caught.value.retryable
    assert_nothing_left(moto, bucket)


def test_at_the_default_sizes_a_part_failing_among_many_in_flight_aborts_the_upload(moto, bucket, tmp_path):
    # The defaults (8 MiB parts, 10 at a time): a 44 MiB file is six parts, all sent at once; the fourth
    # fails while the others are on their way. The parts that land after the failure must not outlive it.
    big = tmp_path / "big.part"
    big.write_bytes(random.Random(11).randbytes(44 * MIB))
    storage = S3Storage(**moto.storage_config(bucket, prefix=PREFIX, max_attempts=1))
    sent: list[int] = []

    def fourth_part_fails(number: int, request: Any) -> None:
        sent.append(number)
        if number == 4:
            connection_drops(request)

    Hook(storage, "UploadPart", fourth_part_fails)
    with pytest.raises(StorageError) as caught:
        storage.publish([(big, BIG_KEY)], MANIFEST)
    assert caught.value.retryable
    assert len(sent) >= 4
    assert_nothing_left(moto, bucket)
    storage.close()


def test_a_source_file_cut_short_mid_upload_aborts_every_upload(moto, bucket, files):
    storage = make_storage(moto, bucket, max_concurrency=1)
    big = files[0][0]

    def truncate_before_second_part(number: int, request: Any) -> None:
        if number == 2:
            # Part 2 covers 5-10 MiB: its body now ends after 1 MiB, mid-request.
            with big.open("r+b") as handle:
                handle.truncate(6 * MIB)

    Hook(storage, "UploadPart", truncate_before_second_part)
    with pytest.raises(StorageError, match="changed during upload") as caught:
        storage.publish(files, MANIFEST)
    assert not caught.value.retryable  # publishing it again would not publish what the manifest describes
    assert_nothing_left(moto, bucket)


def test_a_failure_while_completing_deletes_the_objects_already_completed(moto, bucket, storage, files):
    keys_at_failure: list[list[str]] = []

    def second_completion_fails(number: int, request: Any) -> None:
        if number == 2:
            keys_at_failure.append(moto.keys(bucket))
            connection_drops(request)

    Hook(storage, "CompleteMultipartUpload", second_completion_fails)
    with pytest.raises(StorageError) as caught:
        storage.publish(files, MANIFEST)
    assert caught.value.retryable
    assert keys_at_failure == [[f"{PREFIX}/{BIG_KEY}"]]  # the first file was published when it failed
    assert_nothing_left(moto, bucket)


def test_a_completion_whose_answer_is_lost_is_taken_back_too(moto, bucket, storage, files):
    keys_at_failure: list[list[str]] = []

    def answer_lost(number: int, _: Any) -> None:
        if number == 2:
            # The server completed the second file; the worker never hears of it.
            keys_at_failure.append(moto.keys(bucket))
            raise ConnectionClosedError(endpoint_url=moto.endpoint_url)

    Hook(storage, "CompleteMultipartUpload", answer_lost, event="after-call")
    with pytest.raises(StorageError):
        storage.publish(files, MANIFEST)
    assert keys_at_failure == [sorted(f"{PREFIX}/{key}" for key in (BIG_KEY, SMALL_KEY))]
    assert_nothing_left(moto, bucket)


def test_a_failure_completing_the_manifest_takes_back_every_part(moto, bucket, storage, files):
    keys_at_failure: list[list[str]] = []

    def manifest_fails(number: int, request: Any) -> None:
        if "manifest" in request.url:
            keys_at_failure.append(moto.keys(bucket))
            connection_drops(request)

    Hook(storage, "CompleteMultipartUpload", manifest_fails)
    with pytest.raises(StorageError):
        storage.publish(files, MANIFEST)
    assert keys_at_failure == [sorted(f"{PREFIX}/{key}" for key in (BIG_KEY, SMALL_KEY))]
    assert_nothing_left(moto, bucket)


def test_a_part_damaged_in_transit_fails_the_checksum_and_is_taken_back(moto, bucket, storage, files):
    def flip_a_byte(number: int, request: Any) -> None:
        if "partNumber=2" in request.url:  # only the big file has a second part
            # After signing: the damage is what a faulty proxy or disk would do. moto stores the part as it
            # arrives and recomputes the checksum when the upload is completed.
            body = bytearray(request.body.read())
            request.body.seek(0)
            body[len(body) // 2] ^= 0xFF
            request.body = bytes(body)

    Hook(storage, "UploadPart", flip_a_byte)
    with pytest.raises(StorageError, match="other bytes than were uploaded") as caught:
        storage.publish(files, MANIFEST)
    assert caught.value.retryable
    assert_nothing_left(moto, bucket)


def test_uploads_whose_abort_fails_are_removed_by_the_sweep(moto, bucket, storage, files):
    # Part 5 is the manifest's: both files are staged and the manifest's upload is open when it fails.
    parts = Hook(
        storage, "UploadPart", lambda number, request: connection_drops(request) if number >= 5 else None
    )
    aborts = Hook(storage, "AbortMultipartUpload", lambda number, request: connection_drops(request))
    with pytest.raises(StorageError):
        storage.publish(files, MANIFEST)
    assert aborts.calls == 3  # every upload's abort was tried
    assert moto.keys(bucket) == []
    assert len(moto.uploads(bucket)) == 3  # left open: the server could not be told
    parts.remove()
    aborts.remove()
    # moto dates every upload 2010-11-10, so any cut-off sweeps them.
    assert storage.sweep_incomplete(timedelta(hours=1)) == 3
    assert_nothing_left(moto, bucket)
    storage.publish(files, MANIFEST)  # and the storage works again once the faults are gone
    assert len(moto.keys(bucket)) == 3


def assert_published(moto: MotoServer, bucket: str, files: list[tuple[Path, str]]) -> None:
    """Exactly the files and the manifest are published, with their bytes, and no upload is left open."""
    client = moto.client()
    expected = {key: path.read_bytes() for path, key in files} | {MANIFEST[1]: MANIFEST[0]}
    assert moto.keys(bucket) == sorted(f"{PREFIX}/{key}" for key in expected)
    for key, content in expected.items():
        assert client.get_object(Bucket=bucket, Key=f"{PREFIX}/{key}")["Body"].read() == content, key
    assert moto.uploads(bucket) == []


# -- the Publication itself: a stage or a commit that failed, tried again --------------------------------


def test_a_failed_stage_leaves_the_earlier_ones_staged_and_can_be_tried_again(moto, bucket, storage, files):
    with storage.publication() as publication:
        publication.stage(*files[0])
        parts = Hook(storage, "UploadPart", lambda number, request: connection_drops(request))
        with pytest.raises(StorageError) as caught:
            publication.stage(*files[1])
        assert caught.value.retryable
        assert moto.uploads(bucket) == [f"{PREFIX}/{BIG_KEY}"]  # the failed file's upload was aborted
        parts.remove()
        publication.stage(*files[1])
        assert moto.keys(bucket) == []
        publication.commit(MANIFEST)
    assert_published(moto, bucket, files)


def test_a_commit_whose_manifest_failed_to_stage_can_be_tried_again(moto, bucket, storage, files):
    with storage.publication() as publication:
        for source, key in files:
            publication.stage(source, key)
        parts = Hook(storage, "UploadPart", lambda number, request: connection_drops(request))
        with pytest.raises(StorageError) as caught:
            publication.commit(MANIFEST)
        assert caught.value.retryable
        assert moto.keys(bucket) == []
        assert moto.uploads(bucket) == sorted(f"{PREFIX}/{key}" for key in (BIG_KEY, SMALL_KEY))
        parts.remove()
        publication.commit(MANIFEST)
    assert_published(moto, bucket, files)


def no_such_upload(request: Any) -> AWSResponse:
    """S3's answer to completing an upload it no longer knows (completed a while ago, or aborted)."""
    body = b"<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>"
    return AWSResponse(request.url, 404, {"Content-Type": "application/xml"}, _Raw(body))


def answer_lost(number: int, _: Any) -> None:
    """After-call: the second completion reached the server, which completed it; the worker never hears."""
    if number == 2:
        raise ConnectionClosedError(endpoint_url="http://s3.invalid")


@pytest.mark.parametrize("verify_checksums", [True, False])
@pytest.mark.parametrize("lost", ["request", "answer", "answer, then the upload is forgotten"])
def test_a_commit_tried_again_after_a_failed_completion_publishes_every_object_once(
    moto, bucket, files, lost, verify_checksums
):
    storage = make_storage(moto, bucket, verify_checksums=verify_checksums)
    sent: list[str] = []  # the completions that reached the server

    def completion(number: int, request: Any) -> AWSResponse | None:
        if lost == "request" and number == 2:
            connection_drops(request)  # before the server sees the second completion
        if lost == "answer, then the upload is forgotten" and number == 3:
            # moto completes a completed upload again, as S3 does for a while; later S3 says NoSuchUpload.
            return no_such_upload(request)
        sent.append(request.url)
        return None

    Hook(storage, "CompleteMultipartUpload", completion)
    if lost != "request":
        Hook(storage, "CompleteMultipartUpload", answer_lost, event="after-call")
    with storage.publication() as publication:
        for source, key in files:
            publication.stage(source, key)
        with pytest.raises(StorageError) as caught:
            publication.commit(MANIFEST)
        assert caught.value.retryable
        placed = [BIG_KEY] if lost == "request" else [BIG_KEY, SMALL_KEY]
        assert moto.keys(bucket) == sorted(f"{PREFIX}/{key}" for key in placed)
        publication.commit(MANIFEST)
        publication.commit(MANIFEST)  # once committed, a no-op
    assert_published(moto, bucket, files)
    # The first file's completion is not sent again; the second one's only where moto can complete it again.
    assert sum(BIG_KEY in url for url in sent) == 1
    assert sum(SMALL_KEY in url for url in sent) == (2 if lost == "answer" else 1)
    assert sum(MANIFEST_KEY in url for url in sent) == 1


@pytest.mark.parametrize("verify_checksums", [True, False])
@pytest.mark.parametrize("under_the_key", ["nothing", "other bytes"])
def test_a_commit_whose_upload_vanished_cannot_carry_on(moto, bucket, files, under_the_key, verify_checksums):
    storage = make_storage(moto, bucket, verify_checksums=verify_checksums)
    Hook(storage, "CompleteMultipartUpload", answer_lost, event="after-call")
    forgotten = Hook(
        storage, "CompleteMultipartUpload", lambda n, request: no_such_upload(request) if n > 2 else None
    )
    with storage.publication() as publication:
        for source, key in files:
            publication.stage(source, key)
        with pytest.raises(StorageError):
            publication.commit(MANIFEST)
        # The completed object is removed or replaced by someone else: the key does not hold what was staged.
        if under_the_key == "nothing":
            moto.client().delete_object(Bucket=bucket, Key=f"{PREFIX}/{SMALL_KEY}")
        else:
            moto.client().put_object(Bucket=bucket, Key=f"{PREFIX}/{SMALL_KEY}", Body=b"someone else's")
        for _ in range(2):
            with pytest.raises(StorageError, match="upload is gone") as caught:
                publication.commit(MANIFEST)
            assert caught.value.retryable  # a new publication may succeed
        assert forgotten.calls == 2 + 1  # tried once, then refused without asking the server again
    assert moto.uploads(bucket) == []
    if under_the_key == "nothing":
        assert moto.keys(bucket) == []
    else:  # the abort takes back what it placed, never an object that is not its own
        assert moto.keys(bucket) == [f"{PREFIX}/{SMALL_KEY}"]
        body = moto.client().get_object(Bucket=bucket, Key=f"{PREFIX}/{SMALL_KEY}")["Body"].read()
        assert body == b"someone else's"


def test_a_commit_that_found_a_damaged_object_cannot_carry_on(moto, bucket, storage, files):
    def flip_a_byte(number: int, request: Any) -> None:
        if "partNumber=2" in request.url:
            body = bytearray(request.body.read())
            request.body.seek(0)
            body[len(body) // 2] ^= 0xFF
            request.body = bytes(body)

    Hook(storage, "UploadPart", flip_a_byte)
    with storage.publication() as publication:
        for source, key in files:
            publication.stage(source, key)
        with pytest.raises(StorageError, match="other bytes than were uploaded"):
            publication.commit(MANIFEST)
        with pytest.raises(StorageError, match="other bytes than were uploaded") as caught:
            publication.commit(MANIFEST)  # the staged bytes are spent: it never publishes the damaged object
        assert caught.value.retryable
        assert moto.keys(bucket) == [f"{PREFIX}/{BIG_KEY}"]  # until abort takes it back
    assert_nothing_left(moto, bucket)


class _Raw:
    """The raw body of a canned response, as botocore reads it."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body
