"""SessionEngine's connection handling, with a connection whose opening the test controls."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from exports.engines.base import Estimate, SessionEngine, Statement
from exports.errors import WarehouseError
from exports.schema import Column


class _Connection:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class _SlowToConnect(SessionEngine[_Connection]):
    """Opening a connection waits for `proceed` (a server that is slow to answer a new session)."""

    def __init__(self) -> None:
        super().__init__()
        self.connecting = threading.Event()
        self.proceed = threading.Event()
        self.opened: list[_Connection] = []

    def _connect(self) -> _Connection:
        self.connecting.set()
        self.proceed.wait(30)
        connection = _Connection()
        self.opened.append(connection)
        return connection

    def _interrupt(self, conn: _Connection) -> None:
        pass

    def execute(self, statement: Statement, *, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def estimate(self, statement: Statement) -> Estimate:
        raise NotImplementedError

    def ping(self) -> None:
        pass

    def ensure_schema(self, columns: Sequence[Column]) -> None:
        pass

    def load(self, table: pa.Table) -> int:
        return 0


def _in_thread(call: Any) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def test_close_does_not_wait_for_a_connection_being_opened() -> None:
    """close() from another thread (a test's or a supervisor's clean-up) while a session is being opened must
    return at once: it used to wait on the lock held for the whole opening, forever when the server never
    answered. The connection opened meanwhile is closed as soon as it is there (the engine was closed: nothing
    may be left open), and the caller that asked for it gets a retryable error."""
    engine = _SlowToConnect()
    failures: list[BaseException] = []

    def connect() -> None:
        try:
            engine._connection()
        except BaseException as exc:
            failures.append(exc)

    connecting = _in_thread(connect)
    assert engine.connecting.wait(10)

    closing = _in_thread(engine.close)
    closing.join(5)
    closed_while_connecting = not closing.is_alive()
    engine.proceed.set()
    connecting.join(10)

    assert closed_while_connecting, "close() waited for the connection being opened"
    assert len(engine.opened) == 1 and engine.opened[0].closed
    assert len(failures) == 1 and isinstance(failures[0], WarehouseError) and failures[0].retryable
    assert engine._conn is None
    engine.proceed.clear()
    engine.proceed.set()
    assert engine._connection() is engine.opened[1]  # a later call opens anew


def test_threads_asking_for_the_connection_at_once_share_one() -> None:
    engine = _SlowToConnect()
    got: list[_Connection] = []
    first = _in_thread(lambda: got.append(engine._connection()))
    assert engine.connecting.wait(10)
    second = _in_thread(lambda: got.append(engine._connection()))
    engine.proceed.set()
    first.join(10)
    second.join(10)

    assert len(engine.opened) == 1
    assert got == [engine.opened[0], engine.opened[0]]
