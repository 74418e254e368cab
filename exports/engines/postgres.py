"""PostgreSQL: the second warehouse engine (reads through ADBC, writes through psycopg 3).

Layout: see `exports.engines`. Text columns are `COLLATE "C"` so strings compare by code point, as the query
contract demands, whatever the database's locale; btree indexes serve the two access paths, customer + time
range and customer + session (the scope semi-join); a unique index on `_row_id` keeps `max(_row_id)` cheap for
loads. Results stream through a server-side cursor, FETCHed in batches that ADBC decodes into Arrow in C++
(`exports.engines.postgres_arrow`: converting rows in Python cost more than the query); the session time zone
is UTC, so timestamps (stored without a zone, holding UTC) never shift. A worker only reads, so it holds the
one ADBC connection; a loader also opens a psycopg connection, for DDL and COPY FROM.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import adbc_driver_manager
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql as pg_sql

from exports.engines import load_table_conform, statement_check
from exports.engines.base import EVENTS_TABLE, ROW_ID, Dialect, Estimate, SessionEngine, Statement
from exports.engines.counts import (
    COUNTS_TABLE,
    STATE_TABLE,
    event_counts_add,
    event_counts_complete,
    event_counts_ready_on,
    event_counts_rebuild,
    event_counts_table_exists,
)
from exports.engines.postgres_arrow import AdbcError, ArrowSession, batch_conform
from exports.errors import QueryCanceled, WarehouseError
from exports.schema import Column, ColumnType, arrow_schema, quote_identifier

POSTGRES = Dialect(
    name="postgresql",
    paramstyle="format",
    type_names={
        ColumnType.STRING.value: "text",
        ColumnType.INTEGER.value: "bigint",
        ColumnType.FLOAT.value: "double precision",
        ColumnType.BOOLEAN.value: "boolean",
        ColumnType.TIMESTAMP.value: "timestamp",
    },
    quantile="percentile_disc({fraction}) WITHIN GROUP (ORDER BY {column})",
)

# information_schema's data_type -> the Arrow type a loaded column is converted to before COPY.
_ARROW_BY_SQL_TYPE: dict[str, pa.DataType] = {
    "text": pa.string(),
    "bigint": pa.int64(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp without time zone": pa.timestamp("us"),
}
_INDEXES = {  # name -> columns: the access paths (see the module docstring)
    "events_customer_time": ("CustomerId", "TimeStamp"),
    "events_customer_session": ("CustomerId", "SessionId"),
}
_SCHEMA_LOCK = 0x1E5E_E7E5  # advisory lock: concurrent ensure_schema calls must not race CREATE TABLE
_COPY_ROWS = 50_000  # rows per CSV chunk sent to COPY: bounds the loader's memory
# SQLSTATE classes worth another attempt: connection exception, insufficient resources, operator intervention
# (a shutdown; 57014, a statement timeout, is told apart below), system error; and a lock not granted in time.
_RETRYABLE_CLASSES = ("08", "53", "57", "58")
_RETRYABLE_STATES = ("55P03",)
_CONFLICTS = ("40001", "40P01")  # serialization failure, deadlock


class PostgresEngine(SessionEngine[ArrowSession]):
    """One PostgreSQL database: an ADBC session for reading, opened on first use, and for writing (loaders
    only) a psycopg connection, also opened on first use."""

    dialect = POSTGRES

    def __init__(self, url: str, *, read_only: bool = True, connect_timeout: int = 10) -> None:
        super().__init__()
        self.url = url
        self.read_only = read_only
        self.connect_timeout = connect_timeout
        self._writer: psycopg.Connection[Any] | None = None
        self._writer_lock = threading.Lock()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        read_only: bool,
        memory_limit: str | None,
        temp_directory: str | None,
        lake_path: str | None = None,  # a lake engine's setting
    ) -> PostgresEngine:
        # memory_limit / temp_directory bound an embedded engine; the server's own settings govern PostgreSQL.
        return cls(url, read_only=read_only)

    # -- connection ------------------------------------------------------------------------------------------

    def _connect(self) -> ArrowSession:
        try:
            return ArrowSession(self.url, read_only=self.read_only, connect_timeout=self.connect_timeout)
        except AdbcError as exc:
            raise WarehouseError("cannot connect to the warehouse", retryable=True) from exc

    def _write_connection(self) -> psycopg.Connection[Any]:
        """The loader's psycopg connection (COPY FROM, DDL), opened on first use, in UTC."""
        with self._writer_lock:
            if self._writer is not None and (self._writer.closed or self._writer.broken):
                self._writer = None
            if self._writer is None:
                try:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout)
                    conn.execute("SET TIME ZONE 'UTC'")
                except psycopg.Error as exc:
                    raise WarehouseError("cannot connect to the warehouse", retryable=True) from exc
                self._writer = conn
            return self._writer

    def close(self) -> None:
        super().close()
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def ping(self) -> None:
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise WarehouseError("cannot connect to the warehouse", retryable=True) from exc

    def _usable(self, conn: ArrowSession) -> bool:
        return not conn.closed

    def _interrupt(self, conn: ArrowSession) -> None:
        conn.interrupt()  # best effort: the flag still stops execute() at its next batch

    # -- reading ---------------------------------------------------------------------------------------------

    def execute(self, statement: Statement, *, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Stream the result through a server-side cursor, `batch_rows` rows per FETCH and per batch (ADBC
        decodes each FETCH into Arrow while the next one runs; the batch is cast to the statement's types, by
        position), in one transaction (read-only on a read-only engine).

        A cancel() that arrives before the statement starts cancels it as soon as it does; one that arrives
        while it runs interrupts it on the server.
        """
        statement_check(statement, self.dialect.name)
        schema = arrow_schema(statement.columns)
        session = self._connection()
        try:
            self._raise_if_canceled()
            with session.cursor_read(statement.sql, statement.params, batch_rows=batch_rows) as tables:
                for table in tables:
                    self._raise_if_canceled()
                    for batch in table.to_batches():
                        yield batch_conform(batch, schema)
                self._raise_if_canceled()
        except (AdbcError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            if self._canceled.is_set():
                raise QueryCanceled("the query was canceled") from exc
            raise _warehouse_error(exc, connection_lost=session.closed) from exc
        finally:
            self._canceled.clear()

    def estimate(self, statement: Statement) -> Estimate:
        """Rows the table scans are expected to produce, from the planner (EXPLAIN: nothing is read)."""
        statement_check(statement, self.dialect.name)
        session = self._connection()
        try:
            table = session.query("EXPLAIN (FORMAT JSON) " + statement.sql, statement.params)
        except AdbcError as exc:
            raise _warehouse_error(exc, connection_lost=session.closed) from exc
        plans = json.loads(_first_text(table)) if table.num_rows else [{}]
        plan = plans[0].get("Plan", {})
        scans = list(_scan_estimates(plan))
        return Estimate(
            rows=sum(scans),
            details={"engine": "postgresql", "scans": len(scans), "result_rows": plan.get("Plan Rows")},
        )

    # -- writing ---------------------------------------------------------------------------------------------

    def ensure_schema(self, columns: Sequence[Column]) -> None:
        self._require_writable()
        conn = self._write_connection()
        table = quote_identifier(EVENTS_TABLE)
        definitions = [f"{quote_identifier(c.name)} {self._ddl_type(c.type)}" for c in columns]
        definitions.append(f"{quote_identifier(ROW_ID)} bigint NOT NULL")
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(definitions)})")
                existing = self._arrow_types(conn)
                for column in columns:
                    if column.name not in existing:
                        conn.execute(
                            f"ALTER TABLE {table} ADD COLUMN {quote_identifier(column.name)}"
                            f" {self._ddl_type(column.type)}"
                        )
                for name, key in _INDEXES.items():
                    keys = ", ".join(quote_identifier(k) for k in key)
                    conn.execute(f"CREATE INDEX IF NOT EXISTS {quote_identifier(name)} ON {table} ({keys})")
                row_id, row_id_index = quote_identifier(ROW_ID), quote_identifier(f"{EVENTS_TABLE}_row_id")
                conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {row_id_index} ON {table} ({row_id})")
                if not event_counts_complete(conn, self.dialect):  # new, or loaded before the counts existed
                    conn.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")  # loads wait (see load)
                    event_counts_rebuild(conn, self.dialect)
        except psycopg.Error as exc:
            raise _warehouse_error(exc) from exc

    def _ddl_type(self, column_type: ColumnType) -> str:
        name = self.dialect.type_names[column_type.value]
        return f'{name} COLLATE "C"' if column_type is ColumnType.STRING else name

    def load(self, table: pa.Table) -> int:
        """Append `table` (a subset of the warehouse columns; missing ones are NULL) in one transaction.

        `_row_id` continues from the largest one stored, in the input's order; the table lock orders
        concurrent loads so their row ids never collide. Rows travel as CSV written by Arrow (strings always
        quoted, so an empty string stays distinct from NULL) through COPY.
        """
        self._require_writable()
        if table.num_rows == 0:
            return 0
        conn = self._write_connection()
        events = quote_identifier(EVENTS_TABLE)
        try:
            staged = load_table_conform(table, self._arrow_types(conn))
            columns = ", ".join(quote_identifier(name) for name in [*staged.column_names, ROW_ID])
            with conn.transaction():
                conn.execute(f"LOCK TABLE {events} IN SHARE ROW EXCLUSIVE MODE")
                row = conn.execute(
                    f"SELECT coalesce(max({quote_identifier(ROW_ID)}), 0) FROM {events}"
                ).fetchone()
                last = int(row[0]) if row else 0
                # Checked under the lock: a concurrent ensure_schema that makes the counts holds it too.
                if not event_counts_table_exists(conn, self.dialect):
                    raise WarehouseError("the event counts table does not exist: run ensure_schema first")
                staged = staged.append_column(
                    ROW_ID, pa.array(range(last + 1, last + 1 + staged.num_rows), pa.int64())
                )
                copy_sql = pg_sql.SQL(f"COPY {events} ({columns}) FROM STDIN (FORMAT csv)")
                options = pa_csv.WriteOptions(include_header=False)
                with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
                    for batch in staged.to_batches(max_chunksize=_COPY_ROWS):
                        buffer = io.BytesIO()
                        pa_csv.write_csv(batch, buffer, options)
                        copy.write(buffer.getbuffer())
                event_counts_add(
                    conn, self.dialect, first_row_id=last + 1, last_row_id=last + staged.num_rows
                )
        except psycopg.Error as exc:
            raise _warehouse_error(exc) from exc
        return staged.num_rows

    def event_counts_ready(self) -> bool:
        tables = Statement(
            sql="SELECT count(*) AS n FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name IN (%s, %s)",
            params=(COUNTS_TABLE, STATE_TABLE),
            columns=(Column("n", ColumnType.INTEGER),),
            dialect=self.dialect.name,
        )
        return event_counts_ready_on(self, tables)

    def _require_writable(self) -> None:
        if self.read_only:
            raise WarehouseError("the warehouse is open read-only")

    def _arrow_types(self, conn: psycopg.Connection[Any]) -> dict[str, pa.DataType]:
        """The events table's columns and their Arrow types (empty when there is no table yet)."""
        rows = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = %s AND table_schema = current_schema() ORDER BY ordinal_position",
            (EVENTS_TABLE,),
        ).fetchall()
        types = {str(name): _ARROW_BY_SQL_TYPE.get(str(data_type)) for name, data_type in rows}
        return {name: arrow for name, arrow in types.items() if arrow is not None}


def _first_text(table: pa.Table) -> str:
    """The first value of the first column, as text (EXPLAIN's json arrives as Arrow's JSON extension type)."""
    column = table.column(0).combine_chunks()
    if isinstance(column, pa.ExtensionArray):
        column = column.storage
    return str(column[0].as_py())


def _scan_estimates(node: dict[str, Any]) -> Iterator[int]:
    """The planned rows of every node that reads a table (it names a relation), depth first."""
    if "Relation Name" in node:
        yield int(node.get("Plan Rows", 0))
    for child in node.get("Plans", []):
        yield from _scan_estimates(child)


def _warehouse_error(exc: BaseException, *, connection_lost: bool = False) -> WarehouseError:
    """A WarehouseError naming the failure's kind and SQLSTATE only: server and driver text may quote SQL or
    paths. Read from the SQLSTATE, so that ADBC's errors (reads) and psycopg's (writes) mean the same.

    `connection_lost`: the session is gone after the error, whatever the driver called it (a backend
    terminated mid-FETCH can surface without a SQLSTATE, or as psycopg's InternalError "received 2 results"):
    the server went away, worth a retry."""
    if isinstance(exc, UnicodeError):
        return WarehouseError("a query value is not valid text for the warehouse")
    if isinstance(exc, pa.ArrowInvalid | pa.ArrowNotImplementedError):
        return WarehouseError("the warehouse returned a value that does not fit its column's type")
    state = getattr(exc, "sqlstate", None) or ""
    suffix = f" (SQLSTATE {state})" if state else ""
    if connection_lost:
        return WarehouseError("the warehouse connection was lost" + suffix, retryable=True)
    if state == "57014":  # query_canceled, not by us (cancel() sets the flag): statement_timeout
        return WarehouseError("the warehouse query timed out" + suffix, retryable=True)
    if state in _CONFLICTS:
        return WarehouseError(
            "the warehouse transaction conflicted with another one" + suffix, retryable=True
        )
    if state[:2] in _RETRYABLE_CLASSES or state in _RETRYABLE_STATES or _is_unavailable(exc, state):
        return WarehouseError("the warehouse is unavailable" + suffix, retryable=True)
    if state == "42P01":  # undefined_table
        return WarehouseError("the warehouse has no events table: load events first" + suffix)
    if state[:2] == "22":  # data exception
        return WarehouseError("a value cannot be stored or compared by the warehouse" + suffix)
    return WarehouseError("the warehouse query failed" + suffix)


def _is_unavailable(exc: BaseException, state: str) -> bool:
    """What each driver files as operational: psycopg's OperationalError (whatever the SQLSTATE, as this
    engine always read it), ADBC's when it carries no SQLSTATE (it could not talk to the server)."""
    if isinstance(exc, psycopg.OperationalError):
        return True
    return not state and isinstance(exc, adbc_driver_manager.OperationalError)
