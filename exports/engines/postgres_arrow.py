"""PostgreSQL results as Arrow record batches, decoded in C++ by ADBC (`adbc-driver-postgresql`), not per row in Python.

Why a server-side cursor and not COPY: ADBC streams a query that has no parameters through
`COPY (...) TO STDOUT (FORMAT binary)`, but COPY takes no bound parameters, and ADBC runs a query that has
them as one prepared statement whose whole result it holds in memory (3M rows came back as one batch, 1.3 GB
resident). Our statements always have parameters (the customer, the window) and values never go into the SQL
text. So a read is a transaction holding a cursor declared with the parameters bound
(`DECLARE ... CURSOR FOR <sql with $1..$n>`), then `FETCH FORWARD n` until fewer than n rows come back: ADBC
decodes each FETCH's binary result into Arrow in C++, and memory stays bounded by n rows. A FETCH waits for
its rows, where COPY would stream them, so the next FETCH runs on a thread of its own while the current one
is decoded (`_Fetches`): the server and the client work at the same time, as under COPY.

The session is in autocommit mode, so nothing stays open between reads (no idle transaction), and it is
interrupted from another thread with libpq's cancel request (`adbc_cancel`), sent from a thread of its own so
that cancel() never waits on the network. The next statement waits for that request to be delivered: a
cancel arriving late would otherwise stop a statement nobody canceled.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import adbc_driver_manager
import adbc_driver_postgresql
import adbc_driver_postgresql.dbapi as adbc_postgresql
import pyarrow as pa
from adbc_driver_manager.dbapi import Cursor

from exports.errors import WarehouseError

_CURSOR = "insights_export"
# ADBC's own reading of a result is COPY, which cannot wrap DECLARE, FETCH or EXPLAIN: read the result itself.
_STATEMENT_OPTIONS = {adbc_driver_postgresql.StatementOptions.USE_COPY.value: "false"}
_PLACEHOLDER = re.compile(r"%(.?)", re.DOTALL)

AdbcError = adbc_driver_manager.Error  # every error the driver raises (each carries `sqlstate`, maybe None)


class ArrowSession:
    """One ADBC connection to PostgreSQL, in UTC, read-only unless asked otherwise.

    One caller reads at a time (`cursor_read`, `query`); any thread may `interrupt()` what it runs. A session
    whose connection is gone closes itself (`closed`); the engine then opens a new one."""

    def __init__(self, url: str, *, read_only: bool, connect_timeout: int) -> None:
        self._conn = _connect(url, read_only=read_only, connect_timeout=connect_timeout)
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()  # close() vs. an interrupt in flight (which uses the connection)
        self._interrupted = threading.Condition(self._lock)  # notified when the last interrupt in flight ends
        self._closed = False
        self._interrupts = 0  # interrupts in flight: the last one closes a connection close() left open
        self._close_pending = False

    @property
    def closed(self) -> bool:
        return self._closed or self._close_pending

    @contextlib.contextmanager
    def cursor_read(
        self, sql: str, params: Sequence[Any], *, batch_rows: int
    ) -> Iterator[Iterator[pa.Table]]:
        """A transaction holding a server-side cursor over `sql` ("format" placeholders, `%s`) with `params`
        bound; yields its rows as Arrow tables, one per FETCH of `batch_rows` (fewer only in the last).

        Commits when the block ends; rolls back when it raises or is abandoned (a session that cannot roll
        back has lost its server: it is closed, and the error goes on)."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be positive")
        text, bound = _bindable(sql, params)
        self._interrupts_wait()
        cursors = (
            self._conn.cursor(adbc_stmt_kwargs=_STATEMENT_OPTIONS),
            self._conn.cursor(adbc_stmt_kwargs=_STATEMENT_OPTIONS),
        )
        try:
            cursors[0].execute("BEGIN")
            try:
                cursors[0].execute(f"DECLARE {_CURSOR} NO SCROLL CURSOR FOR {text}", bound)
                fetches = _Fetches(self, cursors, batch_rows=batch_rows)
                try:
                    yield fetches
                finally:
                    fetches.close()
                cursors[0].execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        finally:
            for cursor in cursors:
                with contextlib.suppress(AdbcError):
                    cursor.close()

    def query(self, sql: str, params: Sequence[Any]) -> pa.Table:
        """The whole result of `sql` with `params` bound, for statements with a small answer (EXPLAIN)."""
        text, bound = _bindable(sql, params)
        self._interrupts_wait()
        try:
            with contextlib.closing(self._conn.cursor(adbc_stmt_kwargs=_STATEMENT_OPTIONS)) as cursor:
                cursor.execute(text, bound)
                return cursor.fetch_arrow_table()
        except AdbcError:
            self._rollback()  # in autocommit there is nothing to undo: this only finds out whether it is alive
            raise

    def _rollback(self) -> None:
        self._interrupts_wait()
        try:
            with contextlib.closing(self._conn.cursor()) as cursor:
                cursor.execute("ROLLBACK")
        except AdbcError:
            self.close()

    def interrupt(self) -> None:
        """Ask the server to cancel the running statement (nothing happens to an idle session), without
        waiting for the request to be delivered: a server that cannot be reached must not hold the caller."""
        with self._lock:
            if self.closed:
                return
            self._interrupts += 1
        threading.Thread(target=self._interrupt_send, daemon=True).start()

    def _interrupt_send(self) -> None:
        try:
            with contextlib.suppress(AdbcError):
                self._conn.adbc_cancel()
        finally:
            with self._lock:
                self._interrupts -= 1
                close_now = self._close_pending and not self._interrupts and not self._closed
                self._closed = self._closed or close_now
                self._interrupted.notify_all()
            if close_now:
                _close(self._conn)

    def _interrupts_wait(self) -> None:
        """Until every interrupt in flight is delivered (the server then ignores it: the session is idle), for
        as long as connecting may take: past that the server is out of reach, and the statement will say so."""
        with self._lock:
            self._interrupted.wait_for(lambda: not self._interrupts, timeout=self._connect_timeout)

    def close(self) -> None:
        """Close the connection, or leave that to the last interrupt in flight (it still uses it)."""
        with self._lock:
            if self._closed or self._close_pending:
                return
            if self._interrupts:
                self._close_pending = True
                return
            self._closed = True
        _close(self._conn)


class _Fetches:
    """The cursor's rows, FETCH by FETCH, with the next FETCH already running on a thread of its own.

    ADBC's execute only receives a FETCH's result (libpq holds it); reading it converts it to Arrow, which
    needs no connection. So while this thread converts FETCH k, FETCH k+1 runs on the other cursor: the
    server produces rows while the client decodes, as it would under COPY. At most two FETCHes are held
    (the one converting, the one arriving): memory stays bounded by a few batches."""

    def __init__(self, session: ArrowSession, cursors: tuple[Cursor, Cursor], *, batch_rows: int) -> None:
        self._session = session
        self._cursors = cursors
        self._batch_rows = batch_rows
        self._sql = f"FETCH FORWARD {int(batch_rows)} FROM {_CURSOR}"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="insights-fetch")
        self._turn = 0
        self._pending: Future[int] | None = self._pool.submit(self._fetch, cursors[0])

    def _fetch(self, cursor: Cursor) -> int:
        cursor.execute(self._sql)
        return int(cursor.rowcount)  # FETCH's own count of the rows it returned

    def __iter__(self) -> Iterator[pa.Table]:
        return self

    def __next__(self) -> pa.Table:
        if self._pending is None:
            raise StopIteration
        rows = self._pending.result()  # the FETCH's error, if it failed
        current = self._cursors[self._turn]
        self._turn ^= 1
        # Only a full FETCH can have rows behind it; the other cursor's last result was read already.
        more = rows == self._batch_rows
        self._pending = self._pool.submit(self._fetch, self._cursors[self._turn]) if more else None
        return current.fetch_arrow_table()

    def close(self) -> None:
        """Stop: a FETCH still running is interrupted (it may wait on a long scan) and waited for."""
        pending, self._pending = self._pending, None
        if pending is not None:
            if not pending.done():
                self._session.interrupt()
            with contextlib.suppress(Exception):  # the reader's own error, if any, is already on its way
                pending.result()
        self._pool.shutdown(wait=True)


def _connect(url: str, *, read_only: bool, connect_timeout: int) -> adbc_postgresql.Connection:
    """A connection in autocommit mode whose session runs in UTC (timestamps are stored without a zone,
    holding UTC) and, when `read_only`, refuses every write whatever the statement."""
    conn = adbc_postgresql.connect(url_with_connect_timeout(url, connect_timeout), autocommit=True)
    try:
        with contextlib.closing(conn.cursor()) as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
            if read_only:
                cursor.execute("SET default_transaction_read_only = on")
    except BaseException:
        _close(conn)
        raise
    return conn


def _close(conn: adbc_postgresql.Connection) -> None:
    with contextlib.suppress(
        AdbcError, RuntimeError
    ):  # a connection whose server is gone may not close cleanly
        conn.close()


def url_with_connect_timeout(url: str, seconds: int) -> str:
    """`url` with libpq's `connect_timeout` parameter, unless the URL sets one itself."""
    parts = urlsplit(url)
    if any(key == "connect_timeout" for key, _ in parse_qsl(parts.query)):
        return url
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=f"{query}connect_timeout={int(seconds)}"))


def _bindable(sql: str, params: Sequence[Any]) -> tuple[str, pa.RecordBatch | None]:
    text, count = numbered_placeholders(sql)
    if count != len(params):
        raise WarehouseError(f"the statement has {count} placeholders for {len(params)} parameters")
    return text, parameters_batch(params) if params else None


def numbered_placeholders(sql: str) -> tuple[str, int]:
    """ "format"-style SQL (`%s` a parameter, `%%` a percent sign: the compiler's paramstyle, and psycopg's) in
    PostgreSQL's own numbered style (`$1`, `$2`, ...), and the number of parameters. The text is read as psycopg
    reads it (placeholders are not told apart from text inside quotes), so a statement means the same on both."""
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(1) == "%":
            return "%"
        if match.group(1) != "s":
            raise WarehouseError("a statement takes only %s placeholders (and %% for a percent sign)")
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(replace, sql), count


def parameters_batch(params: Sequence[Any]) -> pa.RecordBatch:
    """The statement's parameters as the one-row batch ADBC binds, each typed as its column compares with it:
    bool, BIGINT, DOUBLE PRECISION, text, timestamp (an aware datetime becomes naive UTC: the session's zone)."""
    arrays = [_parameter_array(value) for value in params]
    return pa.RecordBatch.from_arrays(arrays, names=[f"p{n}" for n in range(1, len(arrays) + 1)])


def _parameter_array(value: Any) -> pa.Array:
    try:
        if isinstance(value, bool):  # before int: a bool is an int
            return pa.array([value], pa.bool_())
        if isinstance(value, int):
            return pa.array([value], pa.int64())
        if isinstance(value, float):
            return pa.array([value], pa.float64())
        if isinstance(value, str):
            return pa.array([value], pa.string())
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            return pa.array([value], pa.timestamp("us"))
        if isinstance(value, date):
            return pa.array([value], pa.date32())
    except UnicodeError as exc:
        raise WarehouseError("a query value is not valid text for the warehouse") from exc
    except (OverflowError, pa.ArrowInvalid) as exc:
        raise WarehouseError("a query value is out of the warehouse's range") from exc
    raise WarehouseError(f"cannot bind a {type(value).__name__} value")


def batch_conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """`batch` with the statement's column names and Arrow types, by position (a narrower integer or float
    widens; an aware timestamp is read as naive UTC; a type ADBC leaves opaque, such as numeric, is cast from its
    text). Arrow's casts are checked: a value that does not fit raises pa.ArrowInvalid."""
    if batch.num_columns != len(schema):
        raise WarehouseError("the warehouse returned another number of columns than the statement's")
    arrays = []
    for column, field in zip(batch.columns, schema, strict=True):
        if isinstance(column.type, pa.ExtensionType):
            column = column.storage
        if column.type != field.type:
            if pa.types.is_timestamp(column.type) and column.type.tz is not None:
                column = column.cast(pa.timestamp(column.type.unit))  # an instant in UTC: its naive reading
            column = column.cast(field.type)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
