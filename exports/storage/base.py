"""The storage interface: where finished exports are published and read back from.

A backend is one module (or package) here with one Storage subclass, registered by kind in `exports.storage`.
Keys are relative POSIX paths (`reports/acme/<guid>_QueryExport_<ms>__000000000000.csv.gz`); each backend
maps them under its own root (a directory, an SFTP base dir, an S3 prefix).
"""

from __future__ import annotations

import abc
import io
import posixpath
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, ClassVar

from exports.errors import ObjectNotFound, PublishFenced, StorageError

CommitCheck = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class ObjectStat:
    size: int
    modified: datetime  # timezone-aware
    etag: str | None  # an opaque validator (no quotes) that changes when the content may have changed


def key_validate(key: str) -> str:
    """Return `key` if it is a clean relative POSIX path, else raise StorageError (never retryable).

    Refused: empty keys, absolute paths, backslashes, NUL, empty segments (`a//b`, trailing `/`) and `.` or
    `..` segments, so that no key can leave a backend's root whatever the backend does with it.
    """
    if not isinstance(key, str) or not key:
        raise StorageError("storage key must be a non-empty string")
    if "\\" in key or "\x00" in key:
        raise StorageError(f"invalid storage key {key!r}")
    if key.startswith("/") or posixpath.isabs(key):
        raise StorageError(f"storage key must be relative: {key!r}")
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise StorageError(f"invalid storage key {key!r}")
    return key


def staging_name(name: str) -> str:
    """A hidden, unique name next to `name` for an upload that is not published yet."""
    return f".{name}.{uuid.uuid4().hex[:16]}.partial"


class RangeReader(io.RawIOBase):
    """Reads at most `length` bytes of `stream` from its current position; closing it closes `stream`."""

    def __init__(self, stream: BinaryIO, length: int) -> None:
        super().__init__()
        self._stream = stream
        self._remaining = max(0, length)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._remaining <= 0:
            return 0
        view = memoryview(buffer).cast("B")[: self._remaining]
        data = self._stream.read(len(view))
        view[: len(data)] = data
        self._remaining -= len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()


def range_check(start: int | None, end: int | None) -> tuple[int, int | None]:
    """Normalise an `open()` range: `start` inclusive (default 0), `end` exclusive (default: to the end)."""
    first = 0 if start is None else start
    if first < 0 or (end is not None and end < first):
        raise ValueError(f"invalid byte range start={start} end={end}")
    return first, end


class Publication(abc.ABC):
    """One all-or-nothing publish, fed a file at a time, so that uploading a finished part can overlap
    producing the next one. Not thread-safe: one thread drives it (the export's uploader thread).

    - `stage(source, key)` uploads a local file under a hidden temporary name next to `key`. Once it returns
      the server holds every byte and the local file is no longer needed (the caller may delete it). A
      stage that fails leaves nothing of that file behind and raises StorageError; whether trying the
      same stage again may work is `error.retryable`. Files staged before stay staged. A key staged twice
      is a StorageError (never retryable).
    - `commit(manifest, commit_check=...)` stages the manifest bytes, calls `commit_check` (False: nothing
      is placed and PublishFenced is raised; only abort() is left), then moves every staged file to its
      final key, the manifest last. Existing keys are overwritten. A commit that failed with a retryable
      error may be called again: it carries on with what is not placed yet (a move whose answer was lost
      counts as done when the final key holds the file and the temporary name is gone).
    - `abort()` removes everything this publication staged or placed, as far as the server allows;
      failures are logged, never raised. Idempotent; a no-op after a successful commit.

    As a context manager, leaving the block without a successful commit aborts.
    """

    @abc.abstractmethod
    def stage(self, source: Path, key: str) -> None: ...

    @abc.abstractmethod
    def commit(self, manifest: tuple[bytes, str], *, commit_check: CommitCheck | None = None) -> None: ...

    @abc.abstractmethod
    def abort(self) -> None: ...

    def __enter__(self) -> Publication:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()  # a no-op once committed


class Storage(abc.ABC):
    """One place exports go to. Implementations must be safe to use from one thread at a time.

    A storage may hold connections (SFTP): use it as a context manager, or call close(), when done."""

    kind: ClassVar[str]

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abc.abstractmethod
    def publication(self) -> Publication:
        """Start an all-or-nothing publish that takes files one at a time (see Publication)."""

    def publish(
        self,
        files: Sequence[tuple[Path, str]],
        manifest: tuple[bytes, str],
        *,
        commit_check: CommitCheck | None = None,
    ) -> None:
        """Publish local files under keys, then the manifest bytes under its key, all or nothing.

        Everything is uploaded under temporary names first and moved to its final key only once every
        upload succeeded, the manifest last. On any failure whatever this call wrote is removed and
        StorageError is raised: no final key is left half-published. Existing keys are overwritten. The
        local source files are left in place (the caller removes them).

        `commit_check` is called once everything is staged, just before the first final name appears; when
        it returns False the staged files are discarded and PublishFenced is raised (a writer that lost its
        right to publish, e.g. a worker whose lease went to another attempt, must not overwrite the result).
        """
        with self.publication() as publication:
            for source, key in files:
                publication.stage(Path(source), key)
            publication.commit(manifest, commit_check=commit_check)

    @staticmethod
    def commit_allowed(commit_check: CommitCheck | None) -> None:
        """Raise PublishFenced unless the caller may still publish."""
        if commit_check is not None and not commit_check():
            raise PublishFenced("publish refused: this writer no longer holds the right to publish")

    @abc.abstractmethod
    def open(self, key: str, start: int | None = None, end: int | None = None) -> BinaryIO:
        """A binary stream of the object's bytes [start, end) (end exclusive, like slicing; clamped to the
        size). ObjectNotFound when the key does not exist."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectStat:
        """Size, modification time and etag. ObjectNotFound when the key does not exist."""

    @abc.abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Remove the objects; keys that do not exist are ignored (deleting is idempotent)."""

    def move(self, source: str, key: str) -> None:
        """Give the object under `source` the key `key` on the server (an object already under `key` is
        replaced); the bytes do not travel through this process. Idempotent: when `source` is gone and `key`
        exists, the move is taken as done (a retried move whose answer was lost). ObjectNotFound when neither
        exists. Backends that cannot move keep this default, which refuses."""
        raise StorageError(f"{self.kind} storage cannot move objects")

    def _moved_already(self, source: str, key: str) -> None:
        """For a move whose source is gone: done when `key` exists, else ObjectNotFound."""
        if not self.exists(key):
            raise ObjectNotFound(f"no object under {source!r} to move to {key!r}")

    def size(self, key: str) -> int:
        return self.stat(key).size

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def presigned_url(self, key: str, expires: int) -> str | None:
        """A URL a client can download the object from for `expires` seconds, or None (the default) when
        the backend cannot sign URLs and the object must be streamed through the API."""
        return None

    def test_connection(self, prefix: str = "") -> None:
        """Write a probe object through publish(), read it back and delete it; StorageError on failure.

        `prefix` (a key prefix like `reports/acme`) puts the probe where exports will go, for servers where
        the root itself is not writable (an SFTP chroot is owned by root)."""
        name = f".insights-probe-{uuid.uuid4().hex}"
        key = f"{key_validate(prefix)}/{name}" if prefix else name
        payload = f"insights storage probe {name}\n".encode()
        self.publish([], (payload, key))
        try:
            with self.open(key) as stream:
                echoed = stream.read()
            if echoed != payload:
                raise StorageError("storage probe read back different bytes than were written")
        finally:
            self.delete([key])

    def sweep_incomplete(self, older_than: timedelta) -> int:
        """Remove uploads that never finished (staging files, open multipart uploads) older than
        `older_than`; returns how many. Backends without such leftovers keep this default."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
