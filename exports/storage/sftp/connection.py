"""Connecting to the SFTP server: to the pinned host key only, within `connect_timeout` from the TCP connect
to the started SFTP session, with a large receive window and fast ciphers first; and telling a lost
connection from an answer of the server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import paramiko

from exports.errors import StorageError
from exports.storage.sftp.errors import connect_error
from exports.storage.sftp.keys import HOST_KEY_ALGORITHMS, PinnedHostKeyPolicy
from exports.storage.sftp.reading import READ_WINDOW_SIZE

# Receive side: paramiko's 2 MiB window would let only half a read window be in flight on a slow link.
RECEIVE_WINDOW_SIZE = 2 * READ_WINDOW_SIZE

# Fastest first where both ends have AES instructions; the rest of paramiko's list follows, unchanged.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
PREFERRED_MACS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com")


@dataclass(frozen=True, kw_only=True)
class Connector:
    """Where the server is and how to log in to it; every `connect()` opens a new connection."""

    host: str
    port: int
    username: str
    host_key: paramiko.PKey
    password: str | None = field(repr=False)  # never in a repr
    pkey: paramiko.PKey | None = field(repr=False)
    connect_timeout: float
    io_timeout: float

    def connect(self) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
        """A new authenticated connection and its SFTP session within `connect_timeout`; StorageError
        saying what to fix."""
        client = paramiko.SSHClient()
        client.get_host_keys().add(self._host_key_name(), self.host_key.get_name(), self.host_key)
        client.set_missing_host_key_policy(PinnedHostKeyPolicy())
        # paramiko bounds the TCP connect, key exchange and authentication, but waits without end for the
        # answers that start the SFTP session: a server frozen there would hang the caller. Closing the
        # client wakes every wait.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            client.close()

        watchdog = threading.Timer(self.connect_timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            try:
                sftp = self._session_open(client)
            finally:
                watchdog.cancel()
            if expired.is_set():
                raise TimeoutError
        except Exception as exc:
            client.close()
            raise self._error(TimeoutError() if expired.is_set() else exc) from exc
        return client, sftp

    def _session_open(self, client: paramiko.SSHClient) -> paramiko.SFTPClient:
        client.connect(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            pkey=self.pkey,
            timeout=self.connect_timeout,
            banner_timeout=self.connect_timeout,
            auth_timeout=self.connect_timeout,
            channel_timeout=self.connect_timeout,
            allow_agent=False,
            look_for_keys=False,
            transport_factory=self._transport_make,
        )
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(self.io_timeout)
        return sftp

    def _transport_make(self, sock: socket.socket, **options: Any) -> paramiko.Transport:
        """paramiko's Transport with a larger receive window, fast ciphers first, and only the host key
        algorithms the pinned key can verify (so the server cannot pick another of its keys)."""
        transport = paramiko.Transport(sock, default_window_size=RECEIVE_WINDOW_SIZE, **options)
        security = transport.get_security_options()
        security.ciphers = preferred_first(security.ciphers, PREFERRED_CIPHERS)
        security.digests = preferred_first(security.digests, PREFERRED_MACS)
        security.key_types = HOST_KEY_ALGORITHMS[self.host_key.get_name()]
        return transport

    def _host_key_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _error(self, exc: Exception) -> StorageError:
        return connect_error(
            exc,
            host=self.host,
            port=self.port,
            username=self.username,
            key_type=self.host_key.get_name(),
            timeout=self.connect_timeout,
        )


def connection_lost(client: paramiko.SSHClient | None, exc: BaseException) -> bool:
    """Whether `exc` came from the connection rather than from the SFTP server's answer."""
    if client is None or not _transport_active(client):
        return True
    return isinstance(exc, TimeoutError | EOFError | paramiko.SSHException | ConnectionError)


def _transport_active(client: paramiko.SSHClient) -> bool:
    transport = client.get_transport()
    return transport is not None and transport.is_active()


def preferred_first(available: Sequence[str], preferred: Sequence[str]) -> tuple[str, ...]:
    first = [name for name in preferred if name in available]
    return tuple(first + [name for name in available if name not in first])
