"""S3Storage: keys are object keys under a prefix in a bucket, through one boto3 client.

Permissions the credentials need under the prefix: s3:PutObject, s3:GetObject, s3:DeleteObject,
s3:AbortMultipartUpload, s3:ListBucketMultipartUploads (sweep), and s3:ListBucket (without it S3 answers
403 rather than 404 for a missing object, so a missing object would read as "access denied").
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from exports.errors import ObjectNotFound, StorageError
from exports.storage.base import ObjectStat, Publication, Storage, key_validate, range_check
from exports.storage.s3.errors import FAILURES, HINTS, RETRYABLE_CODES, ErrorMapper, error_code, error_status
from exports.storage.s3.multipart import MultipartUploads
from exports.storage.s3.parts import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE
from exports.storage.s3.publication import S3Publication
from exports.storage.s3.signing import part_checksum_signing_install

logger = logging.getLogger(__name__)

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys

# A bucket name as botocore accepts it (S3 itself is stricter; S3-compatible servers vary).
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9._-]{3,255}$")


class S3Storage(Storage):
    """Keys are object keys under `prefix` in `bucket`. Credentials default to boto3's chain (environment,
    instance profile) when not given. See publication.py for how publishing stays all or nothing."""

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
        max_concurrency: int = DEFAULT_CONCURRENCY,
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
        self._errors = ErrorMapper(
            self.bucket,
            self.prefix,
            self.endpoint_url,
            secrets=tuple(s for s in (secret_access_key, session_token) if s),
        )
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
            raise StorageError(f"invalid S3 storage configuration: {self._errors.scrub(str(exc))}") from exc
        if verify_checksums:
            part_checksum_signing_install(self._client)  # every part is hashed once, not twice (signing.py)
        self._multipart = MultipartUploads(
            self._client,
            self.bucket,
            verify_checksums=verify_checksums,
            max_concurrency=self.max_concurrency,
        )

    def __repr__(self) -> str:
        return (
            f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r})"
        )

    @property
    def client(self) -> Any:
        """The boto3 S3 client (for tools and tests, e.g. to hook botocore events)."""
        return self._client

    def publication(self) -> Publication:
        return S3Publication(self)

    def sweep_incomplete(self, older_than: timedelta) -> int:
        """Abort the multipart uploads under the prefix initiated more than `older_than` ago (left by a
        publication whose clean-up could not run); returns how many were aborted. `older_than` must exceed
        the longest export: a publication keeps its uploads open while the export is still producing parts,
        so a younger upload may belong to one in progress."""
        cutoff = datetime.now(UTC) - older_than
        aborted = 0
        with self._errors.calling("sweep"):
            paginator = self._client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._root()):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < cutoff and self._multipart.abort(
                        upload["Key"], upload["UploadId"]
                    ):
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
            if error_code(exc) == "InvalidRange":
                return io.BytesIO(b"")  # the range starts at or past the end: nothing to read, as from a file
            raise self._errors.storage_error(exc, "open", key) from exc
        except FAILURES as exc:
            raise self._errors.storage_error(exc, "open", key) from exc
        return cast(
            BinaryIO, io.BufferedReader(_ResponseStream(response["Body"], f"{self.bucket}/{object_key}"))
        )

    def stat(self, key: str) -> ObjectStat:
        object_key = self._object_key(key)
        try:
            with self._errors.calling("stat", key):
                response = self._client.head_object(Bucket=self.bucket, Key=object_key)
        except ObjectNotFound:
            self._bucket_exists_check()  # HEAD says 404 for a missing bucket too
            raise
        return ObjectStat(
            size=int(response["ContentLength"]),
            modified=response["LastModified"].astimezone(UTC),
            etag=str(response.get("ETag", "")).strip('"') or None,
        )

    # -- deleting, signing ----------------------------------------------------------------------------

    def delete(self, keys: Iterable[str]) -> None:
        object_keys = [self._object_key(key) for key in keys]
        with self._errors.calling("delete"):
            self._objects_delete(object_keys)

    def move(self, source: str, key: str) -> None:
        """A server-side copy (multipart for a large object, by boto3's managed copy), then the source's delete."""
        source_key, object_key = self._object_key(source), self._object_key(key)
        try:
            with self._errors.calling("move", key):
                self._client.copy({"Bucket": self.bucket, "Key": source_key}, self.bucket, object_key)
        except ObjectNotFound:
            self._moved_already(source, key)
            return
        self.delete([source])

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
                    retryable=all(code in RETRYABLE_CODES for code in codes),
                )

    def presigned_url(self, key: str, expires: int | None = None) -> str:
        """A SigV4 presigned GET URL for the object, valid `expires` seconds (default `presign_expires`,
        at most 7 days). Signing is local: it does not check that the object exists."""
        seconds = self.presign_expires if expires is None else _expires_check(expires)
        with self._errors.calling("presign", key):
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
            if error_status(exc) == 404:
                hint = HINTS["NoSuchBucket"].format(bucket=self.bucket)
                raise StorageError(f"S3 stat failed: {hint} [NoSuchBucket]") from exc
        except FAILURES:
            pass  # the HEAD of the object said 404; a failure to double-check it should not hide that


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
        except FAILURES as exc:
            raise StorageError(f"S3 read of {self._where} was interrupted: {exc}", retryable=True) from exc
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


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
