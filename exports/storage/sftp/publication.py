"""Publishing to an SFTP server, all or nothing (a Publication, see base.py).

Each file is uploaded as it is staged, under a hidden temporary name next to its final path, and its size
checked against what the server reports; the commit uploads the manifest the same way and only then
renames each file into place with OpenSSH's `posix-rename@openssh.com` (an atomic replace), manifest last.
A failed stage removes what it wrote, reconnecting once if the connection itself was lost; a commit cut off
by a lost connection can be called again and carries on with the renames not done yet; an abort removes
every temporary and final name the publication wrote. Nothing is fsynced on the server (paramiko has no
`fsync@openssh.com`), as with `sftp put` without `-f`: a rename is atomic, not durable against a crash of
the server's machine.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import posixpath
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko

from exports.errors import StorageError
from exports.storage.base import CommitCheck, Publication, staging_name
from exports.storage.sftp.transfer import SourceError, Upload, UploadCrew, connections_for, segments_cut

if TYPE_CHECKING:
    from exports.storage.sftp.storage import SftpStorage

logger = logging.getLogger(__name__)


class SftpPublication(Publication):
    """Stages each file under its temporary name as it comes; commit renames them into place, manifest last.

    Every final name the publication may have written is tracked (`_placed`, and `_sent` for renames whose
    answer may have been lost), so that a commit called again carries on where the last one stopped and an
    abort takes back exactly what this publication put there."""

    def __init__(self, storage: SftpStorage) -> None:
        self._storage = storage
        self._crew = UploadCrew(storage._connector.connect, storage.host)
        self._directories: set[str] = set()  # directories known to exist on the server
        self._staged: list[Upload] = []  # on the server under their temporary names, in staging order
        self._manifest: Upload | None = None
        self._sent: set[str] = set()  # final names a rename was sent for
        self._placed: set[str] = set()  # final names whose rename was answered
        self._leftovers: list[str] = []  # temporary names of failed stages that could not be removed
        self._ended: str | None = None  # "committed" or "aborted"

    def stage(self, source: Path, key: str) -> None:
        self._open_check()
        upload = self._upload_for(Path(source), key)
        self._unique_check(upload)
        self._upload(upload)
        self._staged.append(upload)

    def commit(self, manifest: tuple[bytes, str], *, commit_check: CommitCheck | None = None) -> None:
        self._open_check()
        if self._manifest is None:
            content, key = manifest
            upload = self._upload_for(None, key, content)
            self._unique_check(upload)
            self._crew.dismiss()  # every part is on the server: the extra connections are done
            self._upload(upload)
            self._manifest = upload
        # Every byte is on the server: only now do names appear, the manifest last.
        self._storage.commit_allowed(commit_check)
        for upload in [*self._staged, self._manifest]:
            if upload.final not in self._placed:
                try:
                    self._storage._attempt(functools.partial(self._rename, upload))
                except Exception as exc:
                    raise self._storage._error(exc, "publish", upload.key) from exc
                self._placed.add(upload.final)
        self._ended = "committed"

    def abort(self) -> None:
        if self._ended is not None:
            return
        self._ended = "aborted"
        try:
            self._crew.dismiss()
            if self._staged or self._manifest or self._leftovers:
                self._storage._quietly(self._discard)
        except Exception:  # never raise from an abort
            logger.exception("sftp %s: abort failed", self._storage.host)

    def _open_check(self) -> None:
        if self._ended is not None:
            raise StorageError(f"this publication was {self._ended} already")

    def _unique_check(self, upload: Upload) -> None:
        if any(upload.final == staged.final for staged in self._staged):
            raise StorageError(f"publish: the key {upload.key!r} appears twice")

    def _upload_for(self, source: Path | None, key: str, content: bytes | None = None) -> Upload:
        final = self._storage._path(key)
        temporary = posixpath.join(posixpath.dirname(final), staging_name(posixpath.basename(final)))
        if source is None:
            return Upload(key, None, content or b"", len(content or b""), temporary, final)
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise SourceError(f"export file {source} cannot be read: {exc.strerror or exc}") from exc
        return Upload(key, source, None, size, temporary, final)

    def _upload(self, upload: Upload) -> None:
        """Write one file under its temporary name and check its size; on failure remove it and raise."""
        storage = self._storage
        workers = connections_for(upload.size, storage.connections)
        created = False  # whether the temporary name may exist on the server
        try:
            sftp = storage._attempt(self._base_dir_check)
            if workers > 1 and not self._crew.hired:
                # Only once the main connection got in (a wrong password must be tried once, not once per
                # connection): the extra connections shake hands while the main one prepares the file. They
                # stay for the publication's later large files.
                self._crew.hire(workers - 1)
            self._directories_make(sftp, posixpath.dirname(upload.final))
            created = True
            sftp.open(upload.temporary, "wb").close()
            self._crew.run(sftp, segments_cut(upload, workers))
            _size_check(sftp, upload)
        except Exception as exc:
            self._crew_replace()
            error = storage._error(exc, "publish", upload.key)  # judged before cleanup may reconnect
            if created and not storage._quietly(functools.partial(_remove_all, paths=[upload.temporary])):
                self._leftovers.append(upload.temporary)
            if error is exc:
                raise
            raise error from exc
        except BaseException:  # interrupted: still leave nothing behind
            self._crew_replace()
            if created:
                storage._quietly(functools.partial(_remove_all, paths=[upload.temporary]))
            raise

    def _crew_replace(self) -> None:
        """After a failed upload: the crew's connections may be gone too, a fresh one is hired when needed."""
        self._crew.dismiss()
        self._crew = UploadCrew(self._storage._connector.connect, self._storage.host)

    def _base_dir_check(self, sftp: paramiko.SFTPClient) -> paramiko.SFTPClient:
        base_dir, host = self._storage.base_dir, self._storage.host
        try:
            attributes = sftp.stat(base_dir)
        except FileNotFoundError:
            raise StorageError(
                f"base directory {base_dir!r} does not exist on {host}: create it or change the "
                "destination's base dir"
            ) from None
        if not stat.S_ISDIR(attributes.st_mode or 0):
            raise StorageError(f"base directory {base_dir!r} on {host} is not a directory")
        return sftp

    def _directories_make(self, sftp: paramiko.SFTPClient, directory: str) -> None:
        """mkdir -p `directory` below the base dir (which must exist already), skipping the directories
        known to exist and remembering those found or made."""
        base_dir = self._storage.base_dir
        relative = posixpath.relpath(directory, base_dir)
        path = base_dir
        for part in [] if relative == "." else relative.split("/"):
            path = posixpath.join(path, part)
            if path not in self._directories:
                _directory_ensure(sftp, path)
                self._directories.add(path)

    def _rename(self, upload: Upload, sftp: paramiko.SFTPClient) -> None:
        retried = upload.final in self._sent
        self._sent.add(upload.final)
        try:
            sftp.posix_rename(upload.temporary, upload.final)
        except FileNotFoundError:
            # The answer to the last try was lost with its connection: done if that try took effect.
            if not (retried and _landed(sftp, upload)):
                raise

    def _discard(self, sftp: paramiko.SFTPClient) -> None:
        uploads = [*self._staged, *([self._manifest] if self._manifest is not None else [])]
        for upload in uploads:
            if upload.final in self._placed or (upload.final in self._sent and _landed(sftp, upload)):
                _remove_all(sftp, [upload.final])
        _remove_all(sftp, [upload.temporary for upload in uploads] + self._leftovers)


def _size_check(sftp: paramiko.SFTPClient, upload: Upload) -> None:
    uploaded = sftp.stat(upload.temporary).st_size
    if uploaded != upload.size:
        raise StorageError(
            f"sftp upload of {upload.final!r}: the server holds {uploaded} bytes of {upload.size}",
            retryable=True,
        )


def _directory_ensure(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        if stat.S_ISDIR(sftp.stat(path).st_mode or 0):
            return
        raise StorageError(
            f"{path!r} exists on the server and is not a directory: remove it or change the base dir"
        )
    except FileNotFoundError:
        pass
    try:
        sftp.mkdir(path)
    except OSError:
        # Another publish may have created it in between; anything else shows on the second look.
        if not stat.S_ISDIR(sftp.stat(path).st_mode or 0):
            raise


def _remove_all(sftp: paramiko.SFTPClient, paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            sftp.remove(path)


def _landed(sftp: paramiko.SFTPClient, upload: Upload) -> bool:
    """Whether a rename of `upload` whose answer was lost took effect: its temporary name is gone and its
    final name holds a file of its size."""
    try:
        sftp.stat(upload.temporary)
        return False
    except FileNotFoundError:
        pass
    try:
        return sftp.stat(upload.final).st_size == upload.size
    except FileNotFoundError:
        return False
