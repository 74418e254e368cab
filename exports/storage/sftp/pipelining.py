"""Pipelined SFTP reads and writes: many requests in flight on one session, every answer checked.

This is the one module that calls paramiko's private API: `SFTPClient._async_request` (send a request
without waiting) and `SFTPClient._read_response` (wait for the answer to one request). paramiko's public
ways to pipeline fall short: `SFTPFile.set_pipelined` checks write acknowledgements only now and then and
drops those it reads while waiting for another answer (a refused write, a full disk, would go unnoticed),
and its read-ahead (`readv`, `prefetch`) sends from a thread of its own that dies with a traceback when the
connection drops. Private API can change in any release, which is why paramiko is pinned (5.1.0 in
requirements.txt): before moving the pin, run tests/exports/test_sftp_storage.py and test_sftp_faults.py.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

import paramiko
from paramiko.sftp import CMD_DATA, CMD_READ, CMD_STATUS, CMD_WRITE, int64

from exports.errors import StorageError

# OpenSSH's sftp-server refuses messages over 256 KiB (SFTP_MAX_MSG_LENGTH), header included.
WRITE_REQUEST_SIZE = 255 * 1024
# Write requests in flight per connection: 4 MiB, more than the 2 MiB SSH window OpenSSH grants a session.
WRITE_DEPTH = 16
# OpenSSH's sftp-server answers reads of up to 255 KiB; servers answering less are asked again for the rest.
READ_REQUEST_SIZE = 255 * 1024


def read_pipelined(remote: paramiko.SFTPFile, offset: int, length: int) -> bytes:
    """Bytes [offset, offset + length) of an open remote file, all requests sent before any answer is read,
    in the caller's thread."""
    sftp = remote.sftp
    requests = []
    for start in range(offset, offset + length, READ_REQUEST_SIZE):
        size = min(READ_REQUEST_SIZE, offset + length - start)
        number = sftp._async_request(type(None), CMD_READ, remote.handle, int64(start), size)
        requests.append((number, start, size))
    answers = []
    try:
        # Every answer is collected before anything else is asked: paramiko drops answers it reads while
        # waiting for another request's.
        for number, start, size in requests:
            kind, message = sftp._read_response(number)
            if kind != CMD_DATA:
                raise StorageError(f"sftp read: unexpected answer {kind} from the server", retryable=True)
            answers.append((start, size, message.get_string()))
        parts = []
        for start, size, data in answers:
            if len(data) < size:  # a server may answer with fewer bytes than asked: ask for the rest
                remote.seek(start + len(data))
                data += remote.read(size - len(data))
            if len(data) != size:
                raise EOFError
            parts.append(data)
    except EOFError:  # paramiko's word for SFTP's end-of-file status; a dropped connection is an SSHException
        raise StorageError("sftp read: the file shrank while it was read", retryable=True) from None
    return b"".join(parts)


def write_pipelined(
    sftp: paramiko.SFTPClient,
    remote: paramiko.SFTPFile,
    position: int,
    chunks: Iterable[bytes],
    stop: threading.Event,
) -> None:
    """Write `chunks` (each at most WRITE_REQUEST_SIZE) one after the other into `remote` from `position`,
    at most WRITE_DEPTH requests unacknowledged, each acknowledgement checked: a refused write (disk full,
    quota) fails the upload. Returns early, unacknowledged, once `stop` is set."""
    pending: deque[int] = deque()
    for chunk in chunks:
        if stop.is_set():
            return
        pending.append(sftp._async_request(type(None), CMD_WRITE, remote.handle, int64(position), chunk))
        position += len(chunk)
        if len(pending) > WRITE_DEPTH:
            _write_acknowledged(sftp, pending.popleft())
    while pending:
        _write_acknowledged(sftp, pending.popleft())


def _write_acknowledged(sftp: paramiko.SFTPClient, request: int) -> None:
    kind, _ = sftp._read_response(request)  # raises IOError for an error status
    if kind != CMD_STATUS:
        raise StorageError(f"sftp write: unexpected answer {kind} from the server", retryable=True)
