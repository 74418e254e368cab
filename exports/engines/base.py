"""The warehouse engine interface: SQL with bound parameters in, Arrow record batches out.

An engine is one module in this package with one class, registered by URL scheme in `exports.engines`.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from exports.errors import QueryCanceled, WarehouseError
from exports.schema import Column

EVENTS_TABLE = "events"
ROW_ID = "_row_id"  # load order; the tie-break that makes output order total and equal on every engine


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between engines in the SQL the compiler writes."""

    name: str
    paramstyle: str  # "qmark" (?), "format" (%s) or "named" (:p1, :p2, ...: the parameter's 1-based position)
    type_names: dict[str, str]  # ColumnType value -> SQL type name
    # A lake partitioned by day: the column holding TimeStamp's UTC date, which the compiler bounds by the
    # window's days too, so that the engine reads only those days' partitions (None: no such column).
    day_partition: str | None = None
    iso_weekday: str = "ISODOW"  # the EXTRACT field of the ISO weekday (1 = Monday)
    # An aggregate: the value of {column} at quantile {fraction} (a float literal), one of the column's values
    # (discrete): where a big export is cut into slices (queries.slicing).
    quantile: str = "quantile_disc({column}, {fraction})"

    def placeholder(self, position: int = 1) -> str:
        """The placeholder of the statement's `position`-th parameter (1-based; only "named" uses it)."""
        if self.paramstyle == "named":
            return f":p{position}"
        return "?" if self.paramstyle == "qmark" else "%s"


@dataclass(frozen=True, slots=True)
class Unordered:
    """A statement without its sort, for an engine that can see its scan already yields rows in sort order.

    `sql` (same parameters as the statement) returns the statement's columns followed by the two sort keys,
    in scan order; `keys_sql` with `keys_params` returns only the two sort keys, in the same scan order.
    """

    sql: str
    keys_sql: str
    keys_params: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Statement:
    """A compiled query: SQL text, its parameters in order (a "named" dialect's `:pN` is `params[N - 1]`) and the
    output columns, in order.

    `unordered`, when present, is the same query without its ORDER BY (see Unordered): an engine may run it
    instead when it can check that the rows come in (TimeStamp, _row_id) order anyway."""

    sql: str
    params: tuple[Any, ...]
    columns: tuple[Column, ...]
    dialect: str
    unordered: Unordered | None = None


class KeyOrderCheck:
    """Whether consecutive batches of (TimeStamp, _row_id) keys are in strictly increasing order, carried
    across batch boundaries. Vectorised: a few Arrow kernel calls per batch."""

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None

    def in_order(self, timestamps: pa.Array, row_ids: pa.Array) -> bool:
        if len(timestamps) == 0:
            return True
        times = timestamps.cast(pa.int64())
        ids = row_ids.cast(pa.int64())
        if times.null_count or ids.null_count:
            return False
        if self._last is not None:
            times = pa.concat_arrays([pa.array([self._last[0]], pa.int64()), times])
            ids = pa.concat_arrays([pa.array([self._last[1]], pa.int64()), ids])
        later, earlier = times.slice(1), times.slice(0, len(times) - 1)
        backwards = pc.less(later, earlier)
        tie_out_of_order = pc.and_(
            pc.equal(later, earlier), pc.less_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
        )
        if pc.any(backwards).as_py() or pc.any(tie_out_of_order).as_py():
            return False
        self._last = (times[-1].as_py(), ids[-1].as_py())
        return True


@dataclass(frozen=True, slots=True)
class Estimate:
    """What the engine expects a statement to read; `rows` may be an upper bound."""

    rows: int
    details: dict[str, Any] = field(default_factory=dict)


class WarehouseEngine(abc.ABC):
    """One warehouse. `execute` streams; `cancel` may be called from another thread while it does."""

    dialect: ClassVar[Dialect]

    @abc.abstractmethod
    def execute(self, statement: Statement, *, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Run the statement and yield record batches whose schema matches statement.columns."""

    @abc.abstractmethod
    def estimate(self, statement: Statement) -> Estimate:
        """How many rows the statement will scan at most, without running it to completion."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop the statement running in execute(), if any; execute() then raises QueryCanceled."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise WarehouseError unless the warehouse can be reached: a cheap check for readiness probes, taking
        a few seconds at most."""

    @abc.abstractmethod
    def ensure_schema(self, columns: Sequence[Column]) -> None:
        """Create the events table (and its indexes) if missing; add missing columns."""

    @abc.abstractmethod
    def load(self, table: pa.Table) -> int:
        """Append rows in one transaction (all or nothing); assigns _row_id. Returns rows loaded."""

    def event_counts_ready(self) -> bool:
        """Whether the warehouse holds the hourly event counts (exports.engines.counts), marked complete, so
        that they are exactly in step with the events table. An engine that keeps none says False (the default)."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def reusable(self) -> bool:
        """Whether the engine may run another call's statements once this call is done: never cancelled,
        so no interrupt can be pending. An engine that cannot tell is closed after each call."""
        return False

    def events_rows_at_most(self) -> int | None:
        """The rows of the events table, when the engine knows them without a scan per call (a warehouse that
        cannot change while it is open); None otherwise. No query can export more."""
        return None


class _Closable(Protocol):
    def close(self) -> None: ...


ConnectionT = TypeVar("ConnectionT", bound=_Closable)


class SessionEngine(WarehouseEngine, Generic[ConnectionT]):
    """An engine holding one connection, opened on first use, and a cancel flag that execute() honours.

    Subclasses open the connection (`_connect`), say whether a held one is still usable (`_usable`) and
    interrupt a running statement (`_interrupt`); cancel() may be called from another thread."""

    def __init__(self) -> None:
        self._conn: ConnectionT | None = None
        self._lock = threading.Lock()  # guards _conn, held only to read or swap it
        self._opening = threading.Lock()  # one opening at a time; close() never waits for it
        self._closings = 0  # close() calls so far: an opening that one overtook is not kept
        self._canceled = threading.Event()  # this statement's cancel (cleared when it ends)
        self._ever_canceled = False  # any cancel in the engine's life: not to be reused

    @abc.abstractmethod
    def _connect(self) -> ConnectionT:
        """A new connection; WarehouseError when it cannot be had."""

    def _usable(self, conn: ConnectionT) -> bool:
        return True

    @abc.abstractmethod
    def _interrupt(self, conn: ConnectionT) -> None:
        """Stop the statement running on `conn`, best effort."""

    def _connection(self) -> ConnectionT:
        with self._opening:
            with self._lock:
                if self._conn is not None and self._usable(self._conn):
                    return self._conn
                self._conn, closings = None, self._closings
            conn = self._connect()  # may take long (a slow server): close() must not wait for it
            with self._lock:
                if self._closings == closings:
                    self._conn = conn
                    return conn
            self._release(
                conn
            )  # the engine was closed meanwhile: what it opened is closed too, not left behind
            raise WarehouseError(
                "the engine was closed while its connection was being opened", retryable=True
            )

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._closings += 1
        if conn is not None:
            self._release(conn)

    def _release(self, conn: ConnectionT) -> None:
        """Close a connection this engine opened."""
        conn.close()

    def _raise_if_canceled(self) -> None:
        if self._canceled.is_set():
            raise QueryCanceled("the query was canceled")

    def reusable(self) -> bool:
        return not self._ever_canceled

    def cancel(self) -> None:
        self._ever_canceled = True
        self._canceled.set()
        conn = self._conn
        if conn is not None:
            self._interrupt(conn)
