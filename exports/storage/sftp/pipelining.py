"""Pipelined SFTP reads and writes: many requests in flight on one session, every answer checked.

This is the one module that calls paramiko's private API: `SFTPClient._async_request` (send a request
without waiting), `SFTPClient._read_response` (wait for the answer to one request), and for writes the
request numbering behind `_async_request` (`_lock`, `request_number`, `_expecting`). paramiko's public
ways to pipeline fall short: `SFTPFile.set_pipelined` checks write acknowledgements only now and then and
drops those it reads while waiting for another answer (a refused write, a full disk, would go unnoticed),
and its read-ahead (`readv`, `prefetch`) sends from a thread of its own that dies with a traceback when the
connection drops. Private API can change in any release, which is why paramiko is pinned (5.1.0 in
requirements.txt): before moving the pin, run tests/exports/test_sftp_storage.py and test_sftp_faults.py.

Write requests are framed here rather than by `_async_request`, for the CPU they save: paramiko copies a
255 KiB request into a Message, out of it, into a length-prefixed packet, and then once more after every
32 KiB SSH packet it sends (what is left of the request, `out = out[n:]`): about seven copies of every
byte before encryption. Here a request's header rides in the first SSH packet with the start of its data
and the rest goes out a packet's worth at a time: one copy. The bytes on the wire are the same.
"""

from __future__ import annotations

import struct
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
        pending.append(_write_send(sftp, remote.handle, position, chunk))
        position += len(chunk)
        if len(pending) > WRITE_DEPTH:
            _write_acknowledged(sftp, pending.popleft())
    while pending:
        _write_acknowledged(sftp, pending.popleft())


def _write_send(sftp: paramiko.SFTPClient, handle: bytes, position: int, data: bytes) -> int:
    """Send one SSH_FXP_WRITE request without waiting for its answer; returns its request number (what
    `_async_request(type(None), CMD_WRITE, handle, int64(position), data)` does, with one copy of `data`)."""
    with sftp._lock:  # numbering, as _async_request does it: the answer is then read by _read_response
        number = sftp.request_number
        sftp._expecting[number] = type(None)
        sftp.request_number += 1
    # uint32 length, byte type, uint32 id, string handle, uint64 offset, string data (SFTP v3, section 6.4)
    length = 1 + 4 + 4 + len(handle) + 8 + 4 + len(data)
    header = struct.pack(">IBII", length, CMD_WRITE, number, len(handle)) + handle
    header += struct.pack(">QI", position, len(data))
    channel = sftp.sock
    packet = max(1024, channel.out_max_packet_size - 64)  # the most paramiko puts in one SSH packet
    first = packet - len(header)
    view = memoryview(data)  # slices of a view copy nothing until they become a packet's bytes
    _channel_send(channel, header + view[:first])
    for start in range(first, len(data), packet):
        _channel_send(channel, bytes(view[start : start + packet]))
    return number


def _channel_send(channel: paramiko.Channel, piece: bytes) -> None:
    """Send all of `piece` (at most one SSH packet, or a few while the window is nearly shut)."""
    while piece:
        sent = channel.send(piece)
        if sent <= 0:
            raise EOFError("the SFTP channel is closed")
        piece = piece[sent:]


def _write_acknowledged(sftp: paramiko.SFTPClient, request: int) -> None:
    kind, _ = sftp._read_response(request)  # raises IOError for an error status
    if kind != CMD_STATUS:
        raise StorageError(f"sftp write: unexpected answer {kind} from the server", retryable=True)
