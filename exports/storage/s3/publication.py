"""Publishing to S3, all or nothing (a Publication, see base.py).

S3 has no rename, so "upload under a temporary name, then rename" becomes "upload into an open multipart
upload, then complete it": an object appears under its key only when its multipart upload is completed.
A publication therefore stages a file by opening one multipart upload for it (a small file is a
single-part upload: the last, here only, part of an upload may be smaller than 5 MiB) and uploading every
part of it (several at a time, in threads); commit stages the manifest the same way and completes the
uploads in staging order, the manifest last:

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

A commit that found a completed object damaged (see multipart.py) cannot be carried on: only abort is left.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from exports.errors import PublishFenced, StorageError
from exports.storage.base import CommitCheck, Publication
from exports.storage.s3.errors import FAILURES, UploadSpoiled
from exports.storage.s3.multipart import Upload
from exports.storage.s3.parts import part_ranges

if TYPE_CHECKING:
    from exports.storage.s3.storage import S3Storage

logger = logging.getLogger(__name__)


class S3Publication(Publication):
    """A publish in progress: one open multipart upload per staged file (see the module docstring)."""

    def __init__(self, storage: S3Storage) -> None:
        self._storage = storage
        self._uploads: list[Upload] = []  # the staged files, in staging order
        self._manifest: Upload | None = None
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
                self._storage._multipart.complete(upload)
            except UploadSpoiled as exc:
                self._spoiled = exc
                raise
            except StorageError:
                raise
            except FAILURES as exc:
                raise self._storage._errors.storage_error(exc, "publish", upload.name) from exc
        self._committed = True

    def abort(self) -> None:
        if self._committed or self._aborted:
            return
        self._aborted = True
        self._rollback([*self._uploads, *([self._manifest] if self._manifest else [])])

    def _upload(self, source: Path | bytes, key: str) -> Upload:
        """Open a multipart upload for one file and upload all its parts; on failure abort it and raise."""
        upload = self._plan(source, key)
        if any(other.key == upload.key for other in (*self._uploads, self._manifest) if other):
            raise StorageError(f"S3 publish: the key {key!r} appears twice")
        try:
            self._storage._multipart.create(upload)
            self._storage._multipart.parts_upload(upload)
        except BaseException as exc:
            self._rollback([upload])
            if isinstance(exc, StorageError):
                raise
            if isinstance(exc, FAILURES):
                raise self._storage._errors.storage_error(exc, "publish", key) from exc
            raise
        return upload

    def _plan(self, source: Path | bytes, key: str) -> Upload:
        """The upload of one file, with its parts' byte ranges; reads the local file's size only."""
        storage = self._storage
        object_key = storage._object_key(key)
        if isinstance(source, bytes):
            size = len(source)
        else:
            try:
                size = source.stat().st_size
            except OSError as exc:
                raise storage._errors.storage_error(exc, "publish", key) from exc
        ranges = part_ranges(size, storage.multipart_threshold, storage.multipart_chunk)
        return Upload(name=key, key=object_key, source=source, ranges=ranges)

    def _rollback(self, uploads: list[Upload]) -> None:
        """Undo uploads as far as the server lets us: abort the open ones, delete the objects already
        completed. Failures here are logged, not raised: the original error is the one to report, and
        whatever stays behind is either an open upload (swept later) or a part without its manifest."""
        storage = self._storage
        for upload in uploads:
            if upload.upload_id is None or upload.completed:
                continue
            try:
                if not storage._multipart.abort(upload.key, upload.upload_id) and upload.completion_sent:
                    upload.completed = True  # the server completed it, but its answer was lost
            except FAILURES as exc:
                logger.warning(
                    "S3 abort of the upload of %s failed: %s", upload.key, storage._errors.scrub(str(exc))
                )
        completed = [upload.key for upload in uploads if upload.completed]
        if completed:
            try:
                storage._objects_delete(completed)
            except (StorageError, *FAILURES) as exc:
                logger.warning("S3 delete of %d published object(s) failed: %s", len(completed), exc)
