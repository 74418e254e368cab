"""Ranged reads of a remote file, a window of read requests in flight at a time."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import paramiko

from exports.errors import StorageError
from exports.storage.sftp.pipelining import read_pipelined

# A download reads this much per batch of concurrent requests: bounded memory, few round trips.
READ_WINDOW_SIZE = 4 * 1024 * 1024

ReadError = Callable[[Exception, str], StorageError]


class WindowedReader(io.RawIOBase):
    """Bytes [start, end) of a remote file, READ_WINDOW_SIZE at a time with every read request of a window
    in flight at once: one round trip per window instead of one per request. `error` turns what a read
    raised into StorageError (the storage's, which also drops a lost connection)."""

    def __init__(self, remote: paramiko.SFTPFile, start: int, end: int, error: ReadError) -> None:
        super().__init__()
        self._remote = remote
        self._position = start
        self._end = end
        self._error = error
        self._window = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._window:
            length = min(READ_WINDOW_SIZE, self._end - self._position)
            if length <= 0:
                return 0
            try:
                data = read_pipelined(self._remote, self._position, length)
            except StorageError:
                raise
            except Exception as exc:
                raise self._error(exc, "read") from exc
            self._position += length
            self._window = memoryview(data)
        view = memoryview(buffer).cast("B")
        count = min(len(view), len(self._window))
        view[:count] = self._window[:count]
        self._window = self._window[count:]
        return count

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._remote.close()
        super().close()
