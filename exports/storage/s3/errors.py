"""boto3's, botocore's and the network's exceptions as StorageError: what failed, whether the same request
may succeed later (`retryable`) and what to fix in the destination; never a credential."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

import urllib3.exceptions
from botocore.exceptions import BotoCoreError, ClientError

from exports.errors import ObjectNotFound, StorageError

# Error codes that describe a passing condition: the same request may succeed later.
RETRYABLE_CODES = frozenset(
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
HINTS = {
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
HINTS["403"] = HINTS["AccessDenied"]  # HEAD responses carry no body, hence no code but the status

# What publish and the reads convert into StorageError; anything else (a Celery time limit) passes through.
FAILURES = (ClientError, BotoCoreError, OSError, urllib3.exceptions.HTTPError)


class ChecksumMismatch(StorageError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)  # a damaged transfer, not a wrong configuration


class UploadSpoiled(ChecksumMismatch):
    """A completed object that is not what was uploaded, or an upload gone: its bytes are spent, so the
    publication cannot be committed any more (a new one may succeed)."""


@dataclass(frozen=True)
class ErrorMapper:
    """The StorageErrors of one storage: they name its bucket and prefix, and scrub its secrets (kept only
    for that, in case a server or library ever echoes one)."""

    bucket: str
    prefix: str
    endpoint_url: str | None
    secrets: tuple[str, ...] = field(repr=False)

    @contextlib.contextmanager
    def calling(self, action: str, key: str | None = None) -> Iterator[None]:
        """Turn boto3's and the network's exceptions into StorageError for one call."""
        try:
            yield
        except StorageError:
            raise
        except FAILURES as exc:
            raise self.storage_error(exc, action, key) from exc

    def storage_error(self, exc: BaseException, action: str, key: str | None = None) -> StorageError:
        """A StorageError saying what failed, whether a retry may help and what to fix; no secret in it."""
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, BotoCoreError) and isinstance(exc.kwargs.get("error"), StorageError):
            return cast(StorageError, exc.kwargs["error"])  # ours, raised while botocore read a request body
        where = f" of {key!r}" if key is not None else ""
        if isinstance(exc, ClientError):
            code, status = error_code(exc), error_status(exc)
            if code == "NoSuchKey" or (code in ("404", "NotFound") and action in ("open", "stat", "move")):
                return ObjectNotFound(f"no object under {key!r}")
            hint = HINTS.get(code)
            detail = (
                hint.format(bucket=self.bucket, under=f" under {self.prefix!r}" if self.prefix else "")
                if hint
                else str(exc.response.get("Error", {}).get("Message") or f"HTTP {status}")
            )
            retryable = code in RETRYABLE_CODES or (status is not None and (status >= 500 or status == 429))
            message = f"S3 {action}{where} failed: {detail} [{code or status}]"
        elif isinstance(exc, FileNotFoundError):
            # A missing export file will not reappear on a retry.
            return StorageError(f"S3 {action}{where} failed: no such local file {exc.filename!r}")
        elif isinstance(exc, OSError):
            retryable = not isinstance(exc, PermissionError | IsADirectoryError)
            message = f"S3 {action}{where} failed: {exc}"
        elif isinstance(exc, BotoCoreError):
            retryable = transient(exc)
            message = f"S3 {action}{where} failed: {exc}"
            if retryable and self.endpoint_url:
                message += f" (check the endpoint URL {self.endpoint_url!r} and the network)"
            elif type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
                message += " (set the destination's access key id and secret access key)"
        else:  # urllib3 below botocore
            retryable = True
            message = f"S3 {action}{where} failed: {exc}"
        return StorageError(self.scrub(message), retryable=retryable)

    def scrub(self, message: str) -> str:
        for secret in self.secrets:
            message = message.replace(secret, "***")
        return message


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "")


def error_status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def transient(exc: BotoCoreError) -> bool:
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
