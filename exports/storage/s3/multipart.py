"""The multipart-upload calls: open an upload, send its parts (several at a time, in threads), complete it
and check what the server assembled, abort it.

Integrity: every part is sent with its SHA-256 (`x-amz-checksum-sha256`, which S3 verifies before it
accepts the part; the request's signature reuses that digest, see signing.py), and once an object is
completed its composite checksum (the SHA-256 of the parts' digests) as reported by the server is compared
with ours, so a part that was altered on the way or kept wrongly fails the commit. When
CompleteMultipartUpload does not report the checksum (some S3-compatible servers, moto) it is read back
with HEAD; a server that reports no checksum at all is trusted. A completed object found damaged raises
UploadSpoiled: its staged bytes are spent. `verify_checksums=False` sends no checksum headers, for servers
that reject them.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, cast

from botocore.exceptions import ClientError

from exports.storage.s3.errors import ChecksumMismatch, UploadSpoiled, error_code, error_status
from exports.storage.s3.parts import FileSlice, b64, part_body

logger = logging.getLogger(__name__)

_CONTENT_TYPES = {".gz": "application/gzip", ".json": "application/json", ".csv": "text/csv"}


@dataclass(eq=False)
class Upload:
    """One file on its way: an open multipart upload and what its completion needs."""

    name: str  # the storage key, for messages
    key: str  # the object key, prefix included
    source: Path | bytes
    ranges: list[tuple[int, int]]  # (offset, length) of each part
    upload_id: str | None = None
    parts: list[dict[str, Any]] = field(default_factory=list)  # CompleteMultipartUpload's Parts, in order
    digests: list[bytes | None] = field(default_factory=list)  # each part's raw SHA-256
    completion_sent: bool = False
    completed: bool = False  # the object exists on the server
    placed: bool = False  # ... and was checked: the commit is done with it

    def __post_init__(self) -> None:
        # One slot per part, filled by whichever thread uploads it.
        self.parts = [{} for _ in self.ranges]
        self.digests = [None for _ in self.ranges]


class MultipartUploads:
    """The multipart uploads of one bucket, through one boto3 client. Exceptions pass through as boto3
    raised them (the caller turns them into StorageError), but for the checksum failures."""

    def __init__(self, client: Any, bucket: str, *, verify_checksums: bool, max_concurrency: int) -> None:
        self._client = client
        self._bucket = bucket
        self._verify_checksums = verify_checksums
        self._max_concurrency = max_concurrency

    def create(self, upload: Upload) -> None:
        params: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": upload.key,
            "ContentType": _CONTENT_TYPES.get(PurePosixPath(upload.key).suffix, "application/octet-stream"),
        }
        if self._verify_checksums:
            params["ChecksumAlgorithm"] = "SHA256"
        upload.upload_id = self._client.create_multipart_upload(**params)["UploadId"]

    def parts_upload(self, upload: Upload) -> None:
        """Upload every part of the upload, up to max_concurrency at a time; on the first failure, start no
        new part, wait for those in flight (a part landing after its upload's abort would be kept), and
        raise that failure."""
        pool = ThreadPoolExecutor(
            max_workers=min(self._max_concurrency, len(upload.ranges)), thread_name_prefix="s3-part"
        )
        try:
            # Each part in a copy of the caller's context: its log fields (a query run's guid) follow the part.
            futures = [
                pool.submit(contextvars.copy_context().run, self._part_upload, upload, index)
                for index in range(len(upload.ranges))
            ]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # raises the first failure
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def complete(self, upload: Upload) -> None:
        """Complete one staged upload and check the object's checksum. Called again after a failure, it
        carries on: an upload already completed is only checked."""
        reported = None
        if not upload.completed:
            upload.completion_sent = True
            try:
                response = self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=upload.key,
                    UploadId=upload.upload_id,
                    MultipartUpload={"Parts": upload.parts},
                )
            except ClientError as exc:
                if error_code(exc) != "NoSuchUpload":
                    raise
                # Completed by an earlier request whose answer was lost (an earlier commit, or a retry
                # inside botocore), or aborted by someone else: the object under the key tells which.
                if not self._object_matches(upload):
                    # Nothing of ours left to abort or delete: the object is someone else's.
                    upload.upload_id = None
                    raise UploadSpoiled(
                        f"S3 publish of {upload.name!r} failed: its multipart upload is gone and the object "
                        "under its key is not the one uploaded [NoSuchUpload]"
                    ) from exc
                upload.completed = upload.placed = True
                return
            upload.completed = True
            reported = response.get("ChecksumSHA256")
        if self._verify_checksums:
            self._checksum_verify(upload, reported)
        upload.placed = True

    def abort(self, object_key: str, upload_id: str) -> bool:
        """Abort one multipart upload; False when it is gone already (completed or aborted elsewhere)."""
        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=object_key, UploadId=upload_id)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchUpload", "404"):
                return False
            raise
        return True

    def _part_upload(self, upload: Upload, index: int) -> None:
        offset, length = upload.ranges[index]
        body, digest = part_body(upload.source, offset, length, hashed=self._verify_checksums)
        params: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": upload.key,
            "UploadId": upload.upload_id,
            "PartNumber": index + 1,
            "Body": body,
        }
        if digest is not None:
            params["ChecksumAlgorithm"] = "SHA256"
            params["ChecksumSHA256"] = b64(digest)
        try:
            response = self._client.upload_part(**params)
        finally:
            if isinstance(body, FileSlice):
                body.close()
        part = {"PartNumber": index + 1, "ETag": response["ETag"]}
        if digest is not None:
            echoed = response.get("ChecksumSHA256")
            if echoed is not None and echoed != params["ChecksumSHA256"]:
                raise ChecksumMismatch(f"S3 stored part {index + 1} of {upload.key!r} with another checksum")
            part["ChecksumSHA256"] = params["ChecksumSHA256"]
        upload.parts[index] = part
        upload.digests[index] = digest

    def _checksum_verify(self, upload: Upload, reported: str | None) -> None:
        """Compare the server's composite checksum of a completed object (base64 of the SHA-256 of the
        parts' digests, `-<parts>` appended by S3) with the one of the bytes we sent."""
        if reported is None:
            head = self._client.head_object(Bucket=self._bucket, Key=upload.key, ChecksumMode="ENABLED")
            reported = head.get("ChecksumSHA256")
        if reported is None:
            logger.debug("S3 server reports no checksum for %s; not verified", upload.key)
            return
        if reported.split("-")[0] != _composite_checksum(upload):
            raise UploadSpoiled(f"S3 assembled {upload.key!r} from other bytes than were uploaded")

    def _object_matches(self, upload: Upload) -> bool:
        """Whether the object under the upload's key holds what was uploaded: the same checksum, or the same
        size when either side has no checksum."""
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": upload.key}
        if self._verify_checksums:
            params["ChecksumMode"] = "ENABLED"
        try:
            head = self._client.head_object(**params)
        except ClientError as exc:
            if error_status(exc) == 404:
                return False
            raise
        reported = head.get("ChecksumSHA256")
        if self._verify_checksums and reported is not None:
            return bool(reported.split("-")[0] == _composite_checksum(upload))
        return int(head["ContentLength"]) == sum(length for _, length in upload.ranges)


def _composite_checksum(upload: Upload) -> str:
    """S3's checksum of a multipart object: base64 of the SHA-256 of its parts' SHA-256 digests."""
    return b64(hashlib.sha256(b"".join(cast(list[bytes], upload.digests))).digest())
