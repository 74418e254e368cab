"""paramiko's and the SFTP server's failures as StorageError: what to fix in the destination, and whether
trying again may help. Messages never quote a password or a key."""

from __future__ import annotations

import socket

import paramiko

from exports.errors import ObjectNotFound, StorageError
from exports.storage.sftp.keys import HostKeyRejected


def connect_error(
    exc: Exception, *, host: str, port: int, username: str, key_type: str, timeout: float
) -> StorageError:
    """Why connecting to `host:port` as `username` failed (`key_type`: the pinned host key's type)."""
    where = f"{host}:{port}"
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, HostKeyRejected | paramiko.BadHostKeyException):
        return StorageError(
            f"the host key of {where} does not match the pinned host key: if the server's key really "
            "changed, update the destination's host key"
        )
    if isinstance(exc, paramiko.IncompatiblePeer) or "no acceptable host key" in str(exc):
        return StorageError(
            f"{where} has no {key_type} host key, the type of the pinned one, or shares "
            "no algorithms with us: check the destination's host key"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return StorageError(
            f"authentication as {username!r} on {where} failed: check the destination's username "
            "and its key or password"
        )
    if isinstance(exc, socket.gaierror):
        return StorageError(
            f"cannot resolve host {host!r}: check the destination's host",
            retryable=exc.errno == socket.EAI_AGAIN,
        )
    if isinstance(exc, TimeoutError):
        return StorageError(
            f"timed out connecting to {where} (no SFTP session after {timeout:g}s)",
            retryable=True,
        )
    if isinstance(exc, ConnectionRefusedError | paramiko.ssh_exception.NoValidConnectionsError):
        return StorageError(
            f"connection to {where} refused: check the destination's host and port", retryable=True
        )
    if isinstance(exc, paramiko.ChannelException | paramiko.SSHException | EOFError | OSError):
        return StorageError(f"could not open an SFTP session on {where}: {describe(exc)}", retryable=True)
    return StorageError(f"could not connect to {where}: {describe(exc)}", retryable=True)


def operation_error(
    exc: Exception, *, action: str, key: str | None, host: str, username: str, lost: bool
) -> StorageError:
    """A failed operation on a connected server; `lost`: the connection itself failed (always retryable)."""
    if isinstance(exc, StorageError):
        return exc
    subject = f"sftp {action}{f' {key!r}' if key is not None else ''} on {host}"
    if lost:
        return StorageError(f"{subject}: connection lost ({describe(exc)})", retryable=True)
    if isinstance(exc, FileNotFoundError):
        if action in ("open", "stat"):
            return ObjectNotFound(f"no object under {key!r}")
        return StorageError(
            f"{subject} failed: no such file or directory ({exc.strerror or exc}); check the "
            "destination's base dir"
        )
    if isinstance(exc, PermissionError):
        return StorageError(
            f"{subject} failed: permission denied ({exc.strerror or exc}); let {username!r} read and "
            "write under the destination's base dir"
        )
    if "unsupported" in str(exc).lower():
        return StorageError(
            f"{subject} failed: the server does not support an operation we need "
            "(posix-rename@openssh.com); use an OpenSSH-compatible SFTP server"
        )
    # SFTP's generic failure covers a full disk and a server hiccup alike: worth another try.
    if isinstance(exc, OSError) and exc.errno is None:
        return StorageError(
            f"{subject} failed: the server said {exc.strerror or exc} without details (a full disk or "
            "a quota on the destination is the usual cause)",
            retryable=True,
        )
    return StorageError(f"{subject} failed: {describe(exc)}", retryable=True)


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
