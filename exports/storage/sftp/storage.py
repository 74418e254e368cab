"""SftpStorage: keys are paths under a base dir on an SFTP server. One cached session serves reads, deletes
and a publication's main connection, and is replaced when it is found dead."""

from __future__ import annotations

import functools
import io
import logging
import posixpath
import stat
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import BinaryIO, TypeVar, cast

import paramiko

from exports.errors import ObjectNotFound, StorageError
from exports.storage.base import ObjectStat, Publication, Storage, key_validate, range_check
from exports.storage.sftp.connection import Connector, connection_lost
from exports.storage.sftp.errors import operation_error
from exports.storage.sftp.keys import host_key_parse, private_key_load
from exports.storage.sftp.publication import SftpPublication
from exports.storage.sftp.reading import WindowedReader

logger = logging.getLogger(__name__)
T = TypeVar("T")


class SftpStorage(Storage):
    """Keys are relative paths under `base_dir` on an SFTP server, reached over SSH with a pinned host key.

    `host_key` is the server's public key as in known_hosts or a `.pub` file (`ssh-ed25519 AAAA...`, an
    optional host name before it and comment after it) or its bare base64 blob. Authentication is by
    `private_key` (the text of an OpenSSH or PEM private key: ed25519, ECDSA or RSA) or by `password`.
    `connections` caps the parallel connections a large upload uses; 1 uploads over a single connection.
    """

    kind = "sftp"

    def __init__(
        self,
        *,
        host: str,
        username: str,
        host_key: str,
        port: int = 22,
        password: str | None = None,
        private_key: str | None = None,
        private_key_passphrase: str | None = None,
        base_dir: str = ".",
        connect_timeout: float = 10.0,
        io_timeout: float = 60.0,
        connections: int = 3,
    ) -> None:
        if not host or not username:
            raise StorageError("sftp storage needs a host and a username")
        if not password and not private_key:
            raise StorageError("sftp storage needs a private key or a password")
        if not 1 <= int(port) <= 65535:
            raise StorageError(f"sftp port must be between 1 and 65535, not {port}")
        self.host = host
        self.port = int(port)
        self.username = username
        self.base_dir = base_dir.rstrip("/") or ("/" if base_dir.startswith("/") else ".")
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self.connections = max(1, int(connections))
        self._connector = Connector(
            host=self.host,
            port=self.port,
            username=self.username,
            host_key=host_key_parse(host_key),
            password=password,
            pkey=private_key_load(private_key, private_key_passphrase) if private_key else None,
            connect_timeout=connect_timeout,
            io_timeout=io_timeout,
        )
        self._client: paramiko.SSHClient | None = None
        self._sftp_client: paramiko.SFTPClient | None = None

    def __repr__(self) -> str:  # never the password or the key
        return f"SftpStorage(sftp://{self.username}@{self.host}:{self.port}/{self.base_dir})"

    def publication(self) -> Publication:
        return SftpPublication(self)

    # -- reading ------------------------------------------------------------------------------------------

    def open(self, key: str, start: int | None = None, end: int | None = None) -> BinaryIO:
        first, stop = range_check(start, end)
        path = self._path(key)

        def open_remote(sftp: paramiko.SFTPClient) -> tuple[paramiko.SFTPAttributes, paramiko.SFTPFile]:
            attributes = sftp.stat(path)
            if not stat.S_ISREG(attributes.st_mode or 0):
                raise ObjectNotFound(f"no object under {key!r}")
            return attributes, sftp.open(path, "rb")

        try:
            attributes, remote = self._attempt(open_remote)
        except StorageError:
            raise
        except Exception as exc:
            raise self._error(exc, "open", key) from exc
        size = attributes.st_size or 0
        last = size if stop is None else min(stop, size)
        reader = WindowedReader(remote, min(first, last), last, self._error)
        return cast(BinaryIO, io.BufferedReader(reader, buffer_size=256 * 1024))

    def stat(self, key: str) -> ObjectStat:
        path = self._path(key)
        try:
            attributes = self._attempt(lambda sftp: sftp.stat(path))
        except StorageError:
            raise
        except Exception as exc:
            raise self._error(exc, "stat", key) from exc
        if not stat.S_ISREG(attributes.st_mode or 0):
            raise ObjectNotFound(f"no object under {key!r}")
        size, modified = attributes.st_size or 0, int(attributes.st_mtime or 0)
        # SFTP v3 has no inode number and whole-second times: size and time are all there is to compare.
        return ObjectStat(
            size=size, modified=datetime.fromtimestamp(modified, tz=UTC), etag=f"{size:x}-{modified:x}"
        )

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key)
            try:
                self._attempt(functools.partial(_remove, path=path))
            except FileNotFoundError:
                continue
            except StorageError:
                raise
            except Exception as exc:
                raise self._error(exc, "delete", key) from exc

    def move(self, source: str, key: str) -> None:
        """A rename on the server (posix-rename@openssh.com: replaces `key` atomically)."""
        try:
            self._attempt(functools.partial(_rename, source=self._path(source), target=self._path(key)))
        except FileNotFoundError:
            self._moved_already(source, key)
        except StorageError:
            raise
        except Exception as exc:
            raise self._error(exc, "move", key) from exc

    def close(self) -> None:
        client, self._client, self._sftp_client = self._client, None, None
        if client is not None:
            client.close()

    # -- the cached session -------------------------------------------------------------------------------

    def _sftp(self) -> paramiko.SFTPClient:
        """The cached SFTP session, (re)connected when there is none or its transport has died."""
        client, sftp = self._client, self._sftp_client
        transport = client.get_transport() if client is not None else None
        if sftp is None or transport is None or not transport.is_active():
            self.close()
            self._client, self._sftp_client = self._connector.connect()
        assert self._sftp_client is not None
        return self._sftp_client

    def _attempt(self, operation: Callable[[paramiko.SFTPClient], T]) -> T:
        """Run an idempotent operation on the cached session. A cached connection can die while idle
        (a server restart, a NAT timeout) unnoticed until used: then it is replaced and the operation run
        once more. Errors are passed on as raised."""
        reused = self._sftp_client is not None
        sftp = self._sftp()
        try:
            return operation(sftp)
        except Exception as exc:
            if not reused or not connection_lost(self._client, exc):
                raise
        self.close()
        return operation(self._sftp())

    def _quietly(self, cleanup: Callable[[paramiko.SFTPClient], None]) -> bool:
        """Best-effort cleanup after a failed publish, over a fresh connection if the old one is gone; whether
        it went through (failures are logged, never raised)."""
        for _try in range(2):
            try:
                cleanup(self._sftp())
                return True
            except Exception as exc:
                logger.warning(
                    "sftp %s: could not remove unpublished files (%s)", self.host, type(exc).__name__
                )
                self.close()
        return False

    def _path(self, key: str) -> str:
        return posixpath.join(self.base_dir, key_validate(key))

    def _error(self, exc: Exception, action: str, key: str | None = None) -> StorageError:
        """A failed operation on a connected server as StorageError; a lost connection is retryable."""
        if isinstance(exc, StorageError):
            return exc
        lost = connection_lost(self._client, exc)
        if lost:
            self.close()  # whatever state the session was in, the next call starts afresh
        return operation_error(exc, action=action, key=key, host=self.host, username=self.username, lost=lost)


def _remove(sftp: paramiko.SFTPClient, path: str) -> None:
    sftp.remove(path)


def _rename(sftp: paramiko.SFTPClient, source: str, target: str) -> None:
    sftp.posix_rename(source, target)
