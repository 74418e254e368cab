"""Amazon S3 (or an S3-compatible server) as storage, through boto3.

S3 has no rename, so "upload under a temporary name, then rename" becomes "upload into an open multipart
upload, then complete it": an object appears under its key only when its multipart upload is completed.
A publication (`Publication` in base.py) therefore stages a file by opening one multipart upload for it (a
small file is a single-part upload: the last, here only, part of an upload may be smaller than 5 MiB) and
uploading every part of it (several at a time, in threads); commit stages the manifest the same way and
completes the uploads in staging order, the manifest last:

- a failure while staging a file aborts that file's upload only: the files staged before stay staged;
- a failure while completing leaves the rest open, so that commit can carry on when called again. A
  completion whose answer was lost meets `NoSuchUpload` the next time and counts as done when the object
  under its key has the checksum (or, from a server that reports none, the size) of what was uploaded;
- abort aborts the open uploads and deletes the objects already completed. The manifest is completed
  last, so a reader that starts from the manifest never sees a half-published export even if that
  clean-up cannot reach the server;
- an upload whose abort could not be sent (the server went away, the worker was killed) is removed later
  by `sweep_incomplete`, run by the retention task. A bucket lifecycle rule
  `AbortIncompleteMultipartUpload` is the belt to those braces.

Integrity: every part is sent with its SHA-256 (`x-amz-checksum-sha256`, which S3 verifies before it
accepts the part), and once an object is completed its composite checksum (the SHA-256 of the parts'
digests) as reported by the server is compared with ours, so a part that was altered on the way or kept
wrongly fails the commit. When CompleteMultipartUpload does not report the checksum (some S3-compatible
servers, moto) it is read back with HEAD; a server that reports no checksum at all is trusted. A commit
that found such a damaged object cannot be carried on (the staged bytes are spent): only abort is left.
`verify_checksums=False` sends no checksum headers, for servers that reject them.

Permissions the credentials need under the prefix: s3:PutObject, s3:GetObject, s3:DeleteObject,
s3:AbortMultipartUpload, s3:ListBucketMultipartUploads (sweep), and s3:ListBucket (without it S3 answers
403 rather than 404 for a missing object, so a missing object would read as "access denied").
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from exports.errors import ObjectNotFound, PublishFenced, StorageError
from exports.storage.base import CommitCheck, ObjectStat, Publication, Storage, key_validate, range_check

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's floor for every part but the last of an upload
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
# Measured against moto_server (bench/upload_s3.py, a loaded 2-core machine): 16 MiB parts, 8 at a time,
# came to 0.85-1.0x of boto3's upload_file where 64 MiB parts made 0.65x: smaller parts keep reading,
# hashing and sending overlapped. Memory does not depend on it (parts are streamed from the file).
DEFAULT_PART_SIZE = 16 * MIB
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
HASH_BLOCK = 4 * MIB

# A bucket name as botocore accepts it (S3 itself is stricter; S3-compatible servers vary).
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9._-]{3,255}$")
_CONTENT_TYPES = {".gz": "application/gzip", ".json": "application/json", ".csv": "text/csv"}

# Error codes that describe a passing condition: the same request may succeed later.
_RETRYABLE_CODES = frozenset(
    {
        "BadDigest",  # the body was damaged on the way
        "InternalError",
        "NoSuchUpload",  # an upload swept away under us: a new publish opens new ones
        "OperationAborted",
        "RequestTimeout",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "XAmzContentSHA256Mismatch",
    }
)

# What the operator must fix in the destination, by error code. Never quotes a credential.
_HINTS = {
    "NoSuchBucket": "bucket {bucket!r} does not exist: check the bucket name (and region) of the destination",
    "InvalidBucketName": "{bucket!r} is not a valid bucket name: check the bucket name of the destination",
    "AccessDenied": (
        "access denied: check that the destination's credentials may read, write, delete and list "
        "multipart uploads in bucket {bucket!r}{under}"
    ),
    "AllAccessDisabled": "all access to bucket {bucket!r} is disabled: check the bucket",
    "AccountProblem": "the account owning bucket {bucket!r} has a problem: check the account",
    "InvalidAccessKeyId": "the access key id is not known to the server: check the destination's credentials",
    "SignatureDoesNotMatch": (
        "the secret access key does not match the access key id: check the destination's credentials"
    ),
    "ExpiredToken": "the session token has expired: update the destination's credentials",
    "InvalidToken": "the session token is invalid: update the destination's credentials",
    "TokenRefreshRequired": "the session token has expired: update the destination's credentials",
    "PermanentRedirect": "bucket {bucket!r} is in another region: check the destination's region",
    "AuthorizationHeaderMalformed": (
        "the request was signed for the wrong region: check the destination's region for bucket {bucket!r}"
    ),
    "RequestTimeTooSkewed": "the worker's clock is too far from the server's: fix the worker's clock",
}
_HINTS["403"] = _HINTS["AccessDenied"]  # HEAD responses carry no body, hence no code but the status

# What publish and the reads convert into StorageError; anything else (a Celery time limit) passes through.
_FAILURES = (ClientError, BotoCoreError, OSError, urllib3.exceptions.HTTPError)


class S3Storage(Storage):
    """Keys are object keys under `prefix` in `bucket`. Credentials default to boto3's chain (environment,
    instance profile) when not given. See the module docstring for how publishing stays all or nothing."""

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        region: str | None = "us-east-1",
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        multipart_threshold: int = DEFAULT_PART_SIZE,
        multipart_chunk: int = DEFAULT_PART_SIZE,
        max_concurrency: int = 8,
        presign_expires: int = 3600,
        addressing_style: str = "auto",
        verify_checksums: bool = True,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        max_attempts: int = 3,
    ) -> None:
        self.bucket = _bucket_check(bucket)
        self.prefix = _prefix_check(prefix)
        self.endpoint_url = endpoint_url or None
        self.multipart_threshold = _int_check("multipart_threshold", multipart_threshold, 0, MAX_PART_SIZE)
        self.multipart_chunk = _int_check("multipart_chunk", multipart_chunk, MIN_PART_SIZE, MAX_PART_SIZE)
        self.max_concurrency = _int_check("max_concurrency", max_concurrency, 1, 64)
        self.presign_expires = _expires_check(presign_expires)
        self.verify_checksums = verify_checksums
        # Kept only to scrub them from error messages, in case a server or library ever echoes one.
        self._secrets = tuple(s for s in (secret_access_key, session_token) if s)
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Modest: the caller (the Celery task) retries a whole publish too.
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            max_pool_connections=max(10, self.max_concurrency),
            # Checksums only where we ask for them (or the API requires one): botocore's default CRC32 on
            # every upload is refused by some S3-compatible servers, and we send our own SHA-256.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            session = boto3.session.Session(
                aws_access_key_id=access_key_id or None,
                aws_secret_access_key=secret_access_key or None,
                aws_session_token=session_token or None,
                region_name=region or None,
            )
            self._client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
        except (BotoCoreError, ValueError) as exc:
            raise StorageError(f"invalid S3 storage configuration: {self._scrub(str(exc))}") from exc

    def __repr__(self) -> str:
        return (
            f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r})"
        )

    @property
    def client(self) -> Any:
        """The boto3 S3 client (for tools and tests, e.g. to hook botocore events)."""
        return self._client

    # -- publishing -----------------------------------------------------------------------------------

    def publication(self) -> Publication:
        return _S3Publication(self)

    def _upload_plan(self, source: Path | bytes, key: str) -> _Upload:
        """The upload of one file, with its parts' byte ranges; reads the local file's size only."""
        object_key = self._object_key(key)
        if isinstance(source, bytes):
            size = len(source)
        else:
            try:
                size = source.stat().st_size
            except OSError as exc:
                raise self._error(exc, "publish", key) from exc
        ranges = _part_ranges(size, self.multipart_threshold, self.multipart_chunk)
        return _Upload(name=key, key=object_key, source=source, ranges=ranges)

    def _upload_create(self, upload: _Upload) -> None:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": upload.key,
            "ContentType": _CONTENT_TYPES.get(PurePosixPath(upload.key).suffix, "application/octet-stream"),
        }
        if self.verify_checksums:
            params["ChecksumAlgorithm"] = "SHA256"
        upload.upload_id = self._client.create_multipart_upload(**params)["UploadId"]

    def _parts_upload(self, upload: _Upload) -> None:
        """Upload every part of the upload, up to max_concurrency at a time; on the first failure, start no
        new part, wait for those in flight (a part landing after its upload's abort would be kept), and
        raise that failure."""
        pool = ThreadPoolExecutor(
            max_workers=min(self.max_concurrency, len(upload.ranges)), thread_name_prefix="s3-part"
        )
        try:
            futures = [pool.submit(self._part_upload, upload, index) for index in range(len(upload.ranges))]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # raises the first failure
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _part_upload(self, upload: _Upload, index: int) -> None:
        offset, length = upload.ranges[index]
        body, digest = _part_body(upload.source, offset, length, hashed=self.verify_checksums)
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": upload.key,
            "UploadId": upload.upload_id,
            "PartNumber": index + 1,
            "Body": body,
        }
        if digest is not None:
            params["ChecksumAlgorithm"] = "SHA256"
            params["ChecksumSHA256"] = _b64(digest)
        try:
            response = self._client.upload_part(**params)
        finally:
            if isinstance(body, _FileSlice):
                body.close()
        part = {"PartNumber": index + 1, "ETag": response["ETag"]}
        if digest is not None:
            echoed = response.get("ChecksumSHA256")
            if echoed is not None and echoed != params["ChecksumSHA256"]:
                raise _ChecksumMismatch(f"S3 stored part {index + 1} of {upload.key!r} with another checksum")
            part["ChecksumSHA256"] = params["ChecksumSHA256"]
        upload.parts[index] = part
        upload.digests[index] = digest

    def _upload_complete(self, upload: _Upload) -> None:
        """Complete one staged upload and check the object's checksum. Called again after a failure, it
        carries on: an upload already completed is only checked."""
        reported = None
        if not upload.completed:
            upload.completion_sent = True
            try:
                response = self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=upload.key,
                    UploadId=upload.upload_id,
                    MultipartUpload={"Parts": upload.parts},
                )
            except ClientError as exc:
                if _code(exc) != "NoSuchUpload":
                    raise
                # Completed by an earlier request whose answer was lost (an earlier commit, or a retry
                # inside botocore), or aborted by someone else: the object under the key tells which.
                if not self._object_matches(upload):
                    # Nothing of ours left to abort or delete: the object is someone else's.
                    upload.upload_id = None
                    raise _UploadSpoiled(
                        f"S3 publish of {upload.name!r} failed: its multipart upload is gone and the object "
                        "under its key is not the one uploaded [NoSuchUpload]"
                    ) from exc
                upload.completed = upload.placed = True
                return
            upload.completed = True
            reported = response.get("ChecksumSHA256")
        if self.verify_checksums:
            self._checksum_verify(upload, reported)
        upload.placed = True

    def _checksum_verify(self, upload: _Upload, reported: str | None) -> None:
        """Compare the server's composite checksum of a completed object (base64 of the SHA-256 of the
        parts' digests, `-<parts>` appended by S3) with the one of the bytes we sent."""
        if reported is None:
            head = self._client.head_object(Bucket=self.bucket, Key=upload.key, ChecksumMode="ENABLED")
            reported = head.get("ChecksumSHA256")
        if reported is None:
            logger.debug("S3 server reports no checksum for %s; not verified", upload.key)
            return
        if reported.split("-")[0] != _composite_checksum(upload):
            raise _UploadSpoiled(f"S3 assembled {upload.key!r} from other bytes than were uploaded")

    def _object_matches(self, upload: _Upload) -> bool:
        """Whether the object under the upload's key holds what was uploaded: the same checksum, or the same
        size when either side has no checksum."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": upload.key}
        if self.verify_checksums:
            params["ChecksumMode"] = "ENABLED"
        try:
            head = self._client.head_object(**params)
        except ClientError as exc:
            if _status(exc) == 404:
                return False
            raise
        reported = head.get("ChecksumSHA256")
        if self.verify_checksums and reported is not None:
            return bool(reported.split("-")[0] == _composite_checksum(upload))
        return int(head["ContentLength"]) == sum(length for _, length in upload.ranges)

    def _rollback(self, uploads: list[_Upload]) -> None:
        """Undo uploads as far as the server lets us: abort the open ones, delete the objects already
        completed. Failures here are logged, not raised: the original error is the one to report, and
        whatever stays behind is either an open upload (swept later) or a part without its manifest."""
        for upload in uploads:
            if upload.upload_id is None or upload.completed:
                continue
            try:
                if not self._upload_abort(upload.key, upload.upload_id) and upload.completion_sent:
                    upload.completed = True  # the server completed it, but its answer was lost
            except _FAILURES as exc:
                logger.warning("S3 abort of the upload of %s failed: %s", upload.key, self._scrub(str(exc)))
        completed = [upload.key for upload in uploads if upload.completed]
        if completed:
            try:
                self._objects_delete(completed)
            except (StorageError, *_FAILURES) as exc:
                logger.warning("S3 delete of %d published object(s) failed: %s", len(completed), exc)

    def _upload_abort(self, object_key: str, upload_id: str) -> bool:
        """Abort one multipart upload; False when it is gone already (completed or aborted elsewhere)."""
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=upload_id)
        except ClientError as exc:
            if _code(exc) in ("NoSuchUpload", "404"):
                return False
            raise
        return True

    def sweep_incomplete(self, older_than: timedelta) -> int:
        """Abort the multipart uploads under the prefix initiated more than `older_than` ago (left by a
        publication whose clean-up could not run); returns how many were aborted. `older_than` must exceed
        the longest export: a publication keeps its uploads open while the export is still producing parts,
        so a younger upload may belong to one in progress."""
        cutoff = datetime.now(UTC) - older_than
        aborted = 0
        with self._calling("sweep"):
            paginator = self._client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._root()):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < cutoff and self._upload_abort(upload["Key"], upload["UploadId"]):
                        aborted += 1
        if aborted:
            logger.info("S3 sweep aborted %d incomplete upload(s) in %s", aborted, self.bucket)
        return aborted

    # -- reading --------------------------------------------------------------------------------------

    def open(self, key: str, start: int | None = None, end: int | None = None) -> BinaryIO:
        first, stop = range_check(start, end)
        object_key = self._object_key(key)
        if stop == first:
            self.stat(key)  # an empty range still needs the object to exist
            return io.BytesIO(b"")
        params = {"Bucket": self.bucket, "Key": object_key}
        if first or stop is not None:
            params["Range"] = f"bytes={first}-{'' if stop is None else stop - 1}"
        try:
            response = self._client.get_object(**params)
        except ClientError as exc:
            if _code(exc) == "InvalidRange":
                return io.BytesIO(b"")  # the range starts at or past the end: nothing to read, as from a file
            raise self._error(exc, "open", key) from exc
        except _FAILURES as exc:
            raise self._error(exc, "open", key) from exc
        return cast(
            BinaryIO, io.BufferedReader(_ResponseStream(response["Body"], f"{self.bucket}/{object_key}"))
        )

    def stat(self, key: str) -> ObjectStat:
        object_key = self._object_key(key)
        try:
            with self._calling("stat", key):
                response = self._client.head_object(Bucket=self.bucket, Key=object_key)
        except ObjectNotFound:
            self._bucket_exists_check()  # HEAD says 404 for a missing bucket too
            raise
        return ObjectStat(
            size=int(response["ContentLength"]),
            modified=response["LastModified"].astimezone(UTC),
            etag=str(response.get("ETag", "")).strip('"') or None,
        )

    def delete(self, keys: Iterable[str]) -> None:
        object_keys = [self._object_key(key) for key in keys]
        with self._calling("delete"):
            self._objects_delete(object_keys)

    def _objects_delete(self, object_keys: list[str]) -> None:
        for first in range(0, len(object_keys), DELETE_BATCH):
            batch = object_keys[first : first + DELETE_BATCH]
            response = self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            errors = [e for e in response.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                codes = sorted({str(e.get("Code")) for e in errors})
                raise StorageError(
                    f"S3 delete failed for {len(errors)} object(s) in bucket {self.bucket!r} ({', '.join(codes)})",
                    retryable=all(code in _RETRYABLE_CODES for code in codes),
                )

    def presigned_url(self, key: str, expires: int | None = None) -> str:
        """A SigV4 presigned GET URL for the object, valid `expires` seconds (default `presign_expires`,
        at most 7 days). Signing is local: it does not check that the object exists."""
        seconds = self.presign_expires if expires is None else _expires_check(expires)
        with self._calling("presign", key):
            return str(
                self._client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": self._object_key(key)},
                    ExpiresIn=seconds,
                )
            )

    def close(self) -> None:
        self._client.close()

    # -- helpers --------------------------------------------------------------------------------------

    def _object_key(self, key: str) -> str:
        key_validate(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _root(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def _bucket_exists_check(self) -> None:
        """StorageError when the bucket itself is missing; any other answer leaves the verdict to the caller."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _status(exc) == 404:
                hint = _HINTS["NoSuchBucket"].format(bucket=self.bucket)
                raise StorageError(f"S3 stat failed: {hint} [NoSuchBucket]") from exc
        except _FAILURES:
            pass  # the HEAD of the object said 404; a failure to double-check it should not hide that

    @contextlib.contextmanager
    def _calling(self, action: str, key: str | None = None) -> Iterator[None]:
        """Turn boto3's and the network's exceptions into StorageError for one call."""
        try:
            yield
        except StorageError:
            raise
        except _FAILURES as exc:
            raise self._error(exc, action, key) from exc

    def _error(self, exc: BaseException, action: str, key: str | None = None) -> StorageError:
        """A StorageError saying what failed, whether a retry may help and what to fix; no secret in it."""
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, BotoCoreError) and isinstance(exc.kwargs.get("error"), StorageError):
            return cast(StorageError, exc.kwargs["error"])  # ours, raised while botocore read a request body
        where = f" of {key!r}" if key is not None else ""
        if isinstance(exc, ClientError):
            code, status = _code(exc), _status(exc)
            if code == "NoSuchKey" or (code in ("404", "NotFound") and action in ("open", "stat")):
                return ObjectNotFound(f"no object under {key!r}")
            hint = _HINTS.get(code)
            detail = (
                hint.format(bucket=self.bucket, under=f" under {self.prefix!r}" if self.prefix else "")
                if hint
                else str(exc.response.get("Error", {}).get("Message") or f"HTTP {status}")
            )
            retryable = code in _RETRYABLE_CODES or (status is not None and (status >= 500 or status == 429))
            message = f"S3 {action}{where} failed: {detail} [{code or status}]"
        elif isinstance(exc, FileNotFoundError):
            # A missing export file will not reappear on a retry.
            return StorageError(f"S3 {action}{where} failed: no such local file {exc.filename!r}")
        elif isinstance(exc, OSError):
            retryable = not isinstance(exc, PermissionError | IsADirectoryError)
            message = f"S3 {action}{where} failed: {exc}"
        elif isinstance(exc, BotoCoreError):
            retryable = _transient(exc)
            message = f"S3 {action}{where} failed: {exc}"
            if retryable and self.endpoint_url:
                message += f" (check the endpoint URL {self.endpoint_url!r} and the network)"
            elif type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
                message += " (set the destination's access key id and secret access key)"
        else:  # urllib3 below botocore
            retryable = True
            message = f"S3 {action}{where} failed: {exc}"
        return StorageError(self._scrub(message), retryable=retryable)

    def _scrub(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message


class _S3Publication(Publication):
    """A publish in progress: one open multipart upload per staged file (see the module docstring)."""

    def __init__(self, storage: S3Storage) -> None:
        self._storage = storage
        self._uploads: list[_Upload] = []  # the staged files, in staging order
        self._manifest: _Upload | None = None
        self._spoiled: StorageError | None = None  # why committing can no longer succeed: only abort is left
        self._committed = False
        self._aborted = False

    def stage(self, source: Path, key: str) -> None:
        if self._committed or self._aborted:
            raise StorageError(f"S3 publish of {key!r}: this publication is over (committed or aborted)")
        self._uploads.append(self._upload(Path(source), key))

    def commit(self, manifest: tuple[bytes, str], *, commit_check: CommitCheck | None = None) -> None:
        if self._committed:
            return
        if self._aborted:
            raise StorageError("S3 publish: this publication was aborted")
        if self._spoiled is not None:
            # Same retryable flag: a new publication may succeed where this one cannot.
            raise StorageError(
                f"S3 publish cannot carry on after: {self._spoiled}", retryable=self._spoiled.retryable
            )
        if self._manifest is None:
            content, key = manifest
            self._manifest = self._upload(bytes(content), key)
        try:
            self._storage.commit_allowed(commit_check)
        except PublishFenced as exc:
            self._spoiled = exc
            raise
        for upload in (*self._uploads, self._manifest):  # in staging order, the manifest last
            if upload.placed:
                continue  # by an earlier commit
            try:
                self._storage._upload_complete(upload)
            except _UploadSpoiled as exc:
                self._spoiled = exc
                raise
            except StorageError:
                raise
            except _FAILURES as exc:
                raise self._storage._error(exc, "publish", upload.name) from exc
        self._committed = True

    def abort(self) -> None:
        if self._committed or self._aborted:
            return
        self._aborted = True
        self._storage._rollback([*self._uploads, *([self._manifest] if self._manifest else [])])

    def _upload(self, source: Path | bytes, key: str) -> _Upload:
        """Open a multipart upload for one file and upload all its parts; on failure abort it and raise."""
        upload = self._storage._upload_plan(source, key)
        if any(other.key == upload.key for other in (*self._uploads, self._manifest) if other):
            raise StorageError(f"S3 publish: the key {key!r} appears twice")
        try:
            self._storage._upload_create(upload)
            self._storage._parts_upload(upload)
        except BaseException as exc:
            self._storage._rollback([upload])
            if isinstance(exc, StorageError):
                raise
            if isinstance(exc, _FAILURES):
                raise self._storage._error(exc, "publish", key) from exc
            raise
        return upload


@dataclass(eq=False)
class _Upload:
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


class _ChecksumMismatch(StorageError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)  # a damaged transfer, not a wrong configuration


class _UploadSpoiled(_ChecksumMismatch):
    """A completed object that is not what was uploaded, or an upload gone: its bytes are spent, so the
    publication cannot be committed any more (a new one may succeed)."""


class _FileSlice(io.RawIOBase):
    """`length` bytes of a file from `offset`, as a stream of its own (position 0 is `offset`), so botocore
    can size it, hash it for signing, send it and rewind it for a retry without holding it in memory.
    Reads with pread, so slices of one file never share a position."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self._path = path
        self._offset = offset
        self._length = length
        self._position = 0

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._length}[whence]
        self._position = min(max(0, base + offset), self._length)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        wanted = self._length - self._position
        if size is not None and size >= 0:
            wanted = min(wanted, size)
        if wanted <= 0:
            return b""
        data = os.pread(self._fd, wanted, self._offset + self._position)
        if not data:
            # The file is shorter than when the upload was planned: sending less than the announced
            # Content-Length would hang until the server times out. Not retryable: the export file changed
            # under us, and publishing it again would publish something else than its manifest describes.
            raise StorageError(f"export file {self._path} changed during upload (shorter than planned)")
        self._position += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


class _ResponseStream(io.RawIOBase):
    """A GetObject body as a raw stream whose network failures are retryable StorageErrors."""

    def __init__(self, body: Any, where: str) -> None:
        super().__init__()
        self._body = body
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        try:
            data = self._body.read(len(view))
        except _FAILURES as exc:
            raise StorageError(f"S3 read of {self._where} was interrupted: {exc}", retryable=True) from exc
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _part_body(source: Path | bytes, offset: int, length: int, *, hashed: bool) -> tuple[Any, bytes | None]:
    """A part's request body and, when `hashed`, its SHA-256 (read once more from the page cache when
    sent: cheaper than holding a 64 MiB part in memory per thread)."""
    if isinstance(source, bytes):
        data = source[offset : offset + length]
        return data, hashlib.sha256(data).digest() if hashed else None
    body = _FileSlice(source, offset, length)
    if not hashed:
        return body, None
    try:
        digest = hashlib.sha256()
        while block := body.read(HASH_BLOCK):
            digest.update(block)
        body.seek(0)
    except BaseException:
        body.close()
        raise
    return body, digest.digest()


def _part_ranges(size: int, threshold: int, chunk: int) -> list[tuple[int, int]]:
    """(offset, length) of each part: one part up to `threshold` bytes, else parts of `chunk` bytes (grown
    when needed to stay within S3's 10,000 parts)."""
    if size <= threshold:
        return [(0, size)]
    chunk = max(chunk, -(-size // MAX_PARTS))
    return [(offset, min(chunk, size - offset)) for offset in range(0, size, chunk)]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "")


def _status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _transient(exc: BotoCoreError) -> bool:
    """Connection failures, timeouts and damaged responses pass; bad parameters and missing credentials do not."""
    from botocore import exceptions as errors

    return isinstance(
        exc,
        errors.ConnectionError
        | errors.HTTPClientError
        | errors.IncompleteReadError
        | errors.ChecksumError
        | errors.UnseekableStreamError,
    )


def _composite_checksum(upload: _Upload) -> str:
    """S3's checksum of a multipart object: base64 of the SHA-256 of its parts' SHA-256 digests."""
    return _b64(hashlib.sha256(b"".join(cast(list[bytes], upload.digests))).digest())


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _bucket_check(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET_NAME.match(bucket):
        raise StorageError(f"invalid S3 bucket name {bucket!r}: check the bucket name of the destination")
    return bucket


def _prefix_check(prefix: str | None) -> str:
    cleaned = (prefix or "").strip("/")
    if cleaned:
        key_validate(cleaned)
    return cleaned


def _int_check(name: str, value: int, minimum: int, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise StorageError(
            f"invalid S3 storage configuration: {name} must be an integer from {minimum} to {maximum}, not {value!r}"
        )
    return value


def _expires_check(seconds: int) -> int:
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= MAX_PRESIGN_SECONDS:
        raise StorageError(
            f"presigned URL lifetime must be 1 to {MAX_PRESIGN_SECONDS} seconds, not {seconds!r}"
        )
    return seconds
