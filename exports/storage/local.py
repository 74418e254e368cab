"""A local directory as storage: the embedded default, and what tests publish to."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, cast

from exports.errors import ObjectNotFound, StorageError
from exports.storage.base import (
    CommitCheck,
    ObjectStat,
    Publication,
    RangeReader,
    Storage,
    key_validate,
    range_check,
    staging_name,
)


class LocalStorage(Storage):
    """Keys are relative paths under `root`. Publishing stages every file next to its final path (a hard
    link when the source is on the same file system, else a copy), fsyncs it, then renames it into place
    with os.replace, manifest last."""

    kind = "local"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    def publication(self) -> Publication:
        return _LocalPublication(self)

    def open(self, key: str, start: int | None = None, end: int | None = None) -> BinaryIO:
        first, stop = range_check(start, end)
        path = self._path(key)
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise _storage_error(exc, "open", key) from exc
        if first == 0 and stop is None:
            return stream
        stream.seek(first)
        length = (stop if stop is not None else os.fstat(stream.fileno()).st_size) - first
        return cast(BinaryIO, io.BufferedReader(RangeReader(stream, length)))

    def stat(self, key: str) -> ObjectStat:
        try:
            status = self._path(key).stat()
        except OSError as exc:
            raise _storage_error(exc, "stat", key) from exc
        if not stat.S_ISREG(status.st_mode):
            raise ObjectNotFound(f"no object under {key!r}")
        return ObjectStat(
            size=status.st_size,
            modified=datetime.fromtimestamp(status.st_mtime, tz=UTC),
            etag=f"{status.st_ino:x}-{status.st_size:x}-{status.st_mtime_ns:x}",
        )

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self._path(key).unlink(missing_ok=True)
            except OSError as exc:
                raise _storage_error(exc, "delete", key) from exc

    def move(self, source: str, key: str) -> None:
        final = self._path(key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._path(source), final)
            _fsync_directory(final.parent)
        except FileNotFoundError:
            self._moved_already(source, key)
        except OSError as exc:
            raise _storage_error(exc, "move", key) from exc

    def sweep_incomplete(self, older_than: timedelta) -> int:
        """Staging files (`.<name>.<random>.partial`) left by a publish that was killed."""
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        for path in self.root.rglob(".*.partial"):
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def _path(self, key: str) -> Path:
        """The file for a key; refuses keys that would leave the root, symlinks included."""
        path = self.root / key_validate(key)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise StorageError(f"storage key escapes the root: {key!r}")
        return path

    def _staging_path(self, final: Path) -> Path:
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.with_name(staging_name(final.name))


class _LocalPublication(Publication):
    """Stages each file next to its final path; commit renames them into place, manifest last."""

    def __init__(self, storage: LocalStorage) -> None:
        self._storage = storage
        self._staged: list[tuple[Path, Path]] = []  # (temporary, final), in publishing order
        self._placed: list[Path] = []
        self._committed = False

    def stage(self, source: Path, key: str) -> None:
        self._stage(key, lambda temporary: _stage_copy(Path(source), temporary))

    def commit(self, manifest: tuple[bytes, str], *, commit_check: CommitCheck | None = None) -> None:
        content, key = manifest
        if not self._staged or self._staged[-1][1] != self._storage._path(key):
            self._stage(key, lambda temporary: _stage_bytes(content, temporary))
        self._storage.commit_allowed(commit_check)
        try:
            for temporary, final in self._staged[len(self._placed) :]:
                os.replace(temporary, final)
                self._placed.append(final)
            for directory in {final.parent for _, final in self._staged}:
                _fsync_directory(directory)
        except OSError as exc:
            raise _storage_error(exc, "publish", key) from exc
        self._committed = True

    def abort(self) -> None:
        if self._committed:
            return
        for temporary, _ in self._staged:
            temporary.unlink(missing_ok=True)
        for final in self._placed:
            final.unlink(missing_ok=True)
        self._staged, self._placed = [], []

    def _stage(self, key: str, write: Callable[[Path], None]) -> None:
        final = self._storage._path(key)
        if any(final == staged for _, staged in self._staged):
            raise StorageError("publish: the same key appears twice")
        try:
            temporary = self._storage._staging_path(final)
        except OSError as exc:
            raise _storage_error(exc, "publish", key) from exc
        try:
            write(temporary)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise _storage_error(exc, "publish", key) from exc
        self._staged.append((temporary, final))


def _stage_copy(source: Path, temporary: Path) -> None:
    try:
        os.link(source, temporary)  # same file system: no bytes copied
    except OSError as exc:
        if not source.is_file():
            raise FileNotFoundError(errno.ENOENT, "no such export file", str(source)) from exc
        shutil.copyfile(source, temporary)
    _fsync_file(temporary)


def _stage_bytes(content: bytes, temporary: Path) -> None:
    with temporary.open("xb") as stream:
        stream.write(content)
        stream.flush()
        os.fsync(stream.fileno())


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_directory(path: Path) -> None:
    """Make the renames durable: a rename lives in the directory, not in the file."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _storage_error(exc: OSError, action: str, key: str | None = None) -> StorageError:
    where = f" {key!r}" if key is not None else ""
    if action in ("open", "stat") and isinstance(
        exc, FileNotFoundError | IsADirectoryError | NotADirectoryError
    ):
        return ObjectNotFound(f"no object under{where}")
    # A permission problem or a missing source file will not fix itself; a full or failing disk may.
    retryable = not isinstance(
        exc, PermissionError | FileNotFoundError | IsADirectoryError | NotADirectoryError
    )
    return StorageError(f"local storage {action}{where} failed: {exc.strerror or exc}", retryable=retryable)
