"""DuckDB: the default, embedded warehouse (one file; one read-write process, any number of read-only ones).

Layout: see `exports.engines`. Rows are inserted sorted by (CustomerId, TimeStamp) so DuckDB's per-row-group
min/max zone maps prune other customers and other days; no ART index (it would slow loads and is not used for
range scans). Workers open the file read-only and connect on first use; a worker's or a web process's idle
engine stays open a couple of seconds for the next call (queries.warm_engines), then closes, so a loader
(queries.ingest.warehouse.warehouse_loader waits for the lock) takes the write lock between queries.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duckdb
import pyarrow as pa

from exports.engines import load_table_conform, statement_check
from exports.engines.base import (
    EVENTS_TABLE,
    ROW_ID,
    Dialect,
    Estimate,
    KeyOrderCheck,
    SessionEngine,
    Statement,
    Unordered,
)
from exports.engines.counts import (
    COUNTS_TABLE,
    STATE_TABLE,
    event_counts_add,
    event_counts_complete,
    event_counts_ready_on,
    event_counts_rebuild,
    event_counts_table_exists,
)
from exports.errors import QueryCanceled, WarehouseError, WarehouseLocked
from exports.schema import Column, ColumnType, arrow_schema, quote_identifier

MEMORY = ":memory:"
_SORT_KEY = ("CustomerId", "TimeStamp")  # the access path every query takes; see the module docstring
_LOAD_VIEW = "_insights_load"
SCAN_MEMORY_LIMIT = "256MB"  # DuckDB's limit while it streams an unsorted scan (see _scan_memory_bounded)
_KEY_BATCH_ROWS = 1_000_000  # sort keys read per batch when checking a scan's order (16 MB)

DUCKDB = Dialect(
    name="duckdb",
    paramstyle="qmark",
    type_names={
        ColumnType.STRING.value: "VARCHAR",
        ColumnType.INTEGER.value: "BIGINT",
        ColumnType.FLOAT.value: "DOUBLE",
        ColumnType.BOOLEAN.value: "BOOLEAN",
        ColumnType.TIMESTAMP.value: "TIMESTAMP",
    },
)

# DuckDB's type names -> the Arrow type a loaded column is converted to before the insert.
_ARROW_BY_SQL_TYPE: dict[str, pa.DataType] = {DUCKDB.type_names[t.value]: t.arrow for t in ColumnType}


def duckdb_path(url: str) -> str:
    """The database path of `duckdb:///abs/path` (or `duckdb://:memory:`); ValueError for anything else."""
    prefix = "duckdb://"
    if not url.lower().startswith(prefix):
        raise ValueError("a DuckDB warehouse URL starts with duckdb://")
    rest = unquote(url[len(prefix) :])
    if rest in (MEMORY, "/" + MEMORY):
        return MEMORY
    if not rest.startswith("/"):
        raise ValueError("a DuckDB warehouse URL needs an absolute path: duckdb:///abs/path.duckdb")
    return "/" + rest.lstrip("/")


class DuckDBEngine(SessionEngine[duckdb.DuckDBPyConnection]):
    """One DuckDB database file, one connection, opened on first use."""

    dialect = DUCKDB

    def __init__(
        self,
        path: str,
        *,
        read_only: bool = True,
        memory_limit: str | None = None,
        temp_directory: str | None = None,
    ) -> None:
        super().__init__()
        self.path = path
        self.read_only = read_only and path != MEMORY  # an in-memory database cannot be opened read-only
        # Without ORDER BY, rows come in insertion order: what lets execute() skip a sort (DuckDB's default,
        # pinned here so that no configuration can turn it off under us).
        self.config: dict[str, str | bool | int | float | list[str]] = {"preserve_insertion_order": True}
        if memory_limit:
            self.config["memory_limit"] = memory_limit
        if temp_directory:
            self.config["temp_directory"] = temp_directory
        # What a read-only connection learns once and keeps (no process can write the file while it is open);
        # forgotten whenever a connection is opened.
        self._events_rows: int | None = None
        self._counts_ready: bool | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        read_only: bool,
        memory_limit: str | None,
        temp_directory: str | None,
        lake_path: str | None = None,  # a lake engine's setting
    ) -> DuckDBEngine:
        return cls(
            duckdb_path(url), read_only=read_only, memory_limit=memory_limit, temp_directory=temp_directory
        )

    # -- connection ------------------------------------------------------------------------------------------

    def _connect(self) -> duckdb.DuckDBPyConnection:
        self._events_rows = self._counts_ready = None
        if not self.read_only and self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = duckdb.connect(self.path, read_only=self.read_only, config=self.config)
            conn.execute("SET enable_progress_bar = false")  # a worker's stdout is a log, not a terminal
        except duckdb.Error as exc:
            raise _warehouse_error(exc) from exc
        return conn

    def _interrupt(self, conn: duckdb.DuckDBPyConnection) -> None:
        conn.interrupt()

    def ping(self) -> None:
        """The database file exists. It is not opened: a loader may hold it (DuckDB allows one writer process),
        and a probe must not take a lock a worker or a loader needs."""
        if self.path != MEMORY and not Path(self.path).is_file():
            raise WarehouseError("the warehouse file does not exist")

    # -- reading ---------------------------------------------------------------------------------------------

    def execute(self, statement: Statement, *, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Stream the result in batches of at most `batch_rows`, cast to the statement's Arrow schema.

        A cancel() that arrives before the statement starts cancels it as soon as it does. When the statement
        has an unordered form and a read of its sort keys shows the scan yields them in order (DuckDB keeps
        insertion order without ORDER BY), the sort is skipped: most of the query's CPU time on wide rows.
        """
        statement_check(statement, self.dialect.name)
        schema = arrow_schema(statement.columns)
        conn = self._connection()
        try:
            self._raise_if_canceled()
            unordered = statement.unordered
            if unordered is not None and self._scan_is_in_order(conn, unordered):
                batches = self._scan_memory_bounded(
                    conn, self._unsorted(conn, unordered.sql, statement.params, batch_rows, schema)
                )
            else:
                batches = self._batches(conn, statement.sql, statement.params, batch_rows)
            for batch in batches:
                self._raise_if_canceled()
                yield batch if batch.schema.equals(schema) else batch.cast(schema)
            self._raise_if_canceled()
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            # An interrupt surfaces as a DuckDB error before the first batch and as an OSError from the Arrow
            # stream after it; either way our own flag tells a cancel from any other failure.
            if self._canceled.is_set():
                raise QueryCanceled("the query was canceled") from exc
            raise _warehouse_error(exc) from exc
        finally:
            self._canceled.clear()

    def _batches(
        self, conn: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any], batch_rows: int
    ) -> Generator[pa.RecordBatch, None, None]:
        with conn.sql(sql, params=list(params)).to_arrow_reader(batch_rows) as reader:
            yield from reader

    def _scan_memory_bounded(
        self, conn: duckdb.DuckDBPyConnection, batches: Generator[pa.RecordBatch, None, None]
    ) -> Iterator[pa.RecordBatch]:
        """`batches` under a smaller memory limit: a scan needs no working memory beyond a few row groups,
        and DuckDB would otherwise keep the table blocks it read cached up to the full limit, so the
        worker's memory would grow with the result up to that limit instead of staying flat."""
        conn.execute(f"SET memory_limit = '{SCAN_MEMORY_LIMIT}'")
        try:
            yield from batches
        finally:
            batches.close()
            configured = self.config.get("memory_limit")
            conn.execute(f"SET memory_limit = '{configured}'" if configured else "RESET memory_limit")

    def _scan_is_in_order(self, conn: duckdb.DuckDBPyConnection, unordered: Unordered) -> bool:
        """Whether the rows come out of the scan in sort order already: then the sort can be skipped.

        Reads only the two sort keys (a small fraction of the rows' bytes). Tables loaded in time order, as
        loaders append events, are in that order; anything else falls back to the sort.
        """
        check = KeyOrderCheck()
        keys = self._batches(conn, unordered.keys_sql, unordered.keys_params, _KEY_BATCH_ROWS)
        with contextlib.closing(keys):  # the connection takes no other query while a result is open
            for batch in keys:
                self._raise_if_canceled()
                if not check.in_order(batch.column(0), batch.column(1)):
                    return False
        return True

    def _unsorted(
        self,
        conn: duckdb.DuckDBPyConnection,
        sql: str,
        params: Sequence[Any],
        batch_rows: int,
        schema: pa.Schema,
    ) -> Generator[pa.RecordBatch, None, None]:
        """The statement's rows in scan order, checked again as they stream (the last two columns are the sort
        keys, dropped here): a scan that stopped being in order fails the query rather than misorder it."""
        check = KeyOrderCheck()
        width = len(schema)
        for batch in self._batches(conn, sql, params, batch_rows):
            if not check.in_order(batch.column(width), batch.column(width + 1)):
                raise WarehouseError(
                    "the warehouse changed while the query ran; run it again", retryable=True
                )
            yield pa.RecordBatch.from_arrays(batch.columns[:width], names=schema.names)

    def estimate(self, statement: Statement) -> Estimate:
        """Rows the table scans are expected to produce, from the optimizer (EXPLAIN: nothing is read)."""
        statement_check(statement, self.dialect.name)
        conn = self._connection()
        try:
            rows = conn.execute("EXPLAIN (FORMAT JSON) " + statement.sql, list(statement.params)).fetchall()
        except (duckdb.Error, UnicodeError) as exc:
            raise _warehouse_error(exc) from exc
        scans = list(_scan_estimates(json.loads(rows[0][1])))
        return Estimate(rows=sum(scans), details={"engine": "duckdb", "scans": len(scans)})

    def events_rows_at_most(self) -> int | None:
        """The events table's rows, counted once per connection when the file is open read-only: no other
        process can write it while this one holds it (DuckDB's file lock), so the count stays true."""
        if not self.read_only:
            return None
        conn = self._connection()
        if self._events_rows is None:
            try:
                counted = conn.execute(f"SELECT count(*) FROM {quote_identifier(EVENTS_TABLE)}").fetchall()
            except duckdb.Error as exc:
                raise _warehouse_error(exc) from exc
            self._events_rows = int(counted[0][0])
        return self._events_rows

    # -- writing ---------------------------------------------------------------------------------------------

    def ensure_schema(self, columns: Sequence[Column]) -> None:
        self._require_writable()
        conn = self._connection()
        table = quote_identifier(EVENTS_TABLE)
        definitions = [f"{quote_identifier(c.name)} {self.dialect.type_names[c.type.value]}" for c in columns]
        definitions.append(f"{quote_identifier(ROW_ID)} BIGINT NOT NULL")
        try:
            conn.begin()
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(definitions)})")
            existing = self._arrow_types(conn)
            for column in columns:
                if column.name not in existing:
                    sql_type = self.dialect.type_names[column.type.value]
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote_identifier(column.name)} {sql_type}")
            if not event_counts_complete(conn, self.dialect):  # new, or loaded before the counts existed
                event_counts_rebuild(conn, self.dialect)
            conn.commit()
        except duckdb.Error as exc:
            conn.rollback()
            raise _warehouse_error(exc) from exc

    def load(self, table: pa.Table) -> int:
        """Append `table` (a subset of the warehouse columns; missing ones are NULL) in one transaction.

        `_row_id` continues from the largest one stored, in the input's order; the rows are stored sorted by
        (CustomerId, TimeStamp, _row_id) for the zone maps, and so that a customer's rows loaded in time order
        need no sort when they are exported (see `execute`).
        """
        self._require_writable()
        if table.num_rows == 0:
            return 0
        conn = self._connection()
        try:
            events, row_id = quote_identifier(EVENTS_TABLE), quote_identifier(ROW_ID)
            staged = load_table_conform(table, self._arrow_types(conn))
            if not event_counts_table_exists(conn, self.dialect):
                raise WarehouseError("the event counts table does not exist: run ensure_schema first")
            columns = ", ".join(quote_identifier(name) for name in [*staged.column_names, ROW_ID])
            # _row_id last: ties in time stay in row-id order, so a query's scan is already in its sort order.
            order = ", ".join(
                quote_identifier(name)
                for name in [*_SORT_KEY, ROW_ID]
                if name in [*staged.column_names, ROW_ID]
            )
            conn.begin()
            try:
                ((last,),) = conn.execute(f"SELECT coalesce(max({row_id}), 0) FROM {events}").fetchall()
                row_ids = pa.array(range(last + 1, last + 1 + staged.num_rows), pa.int64())
                conn.register(_LOAD_VIEW, staged.append_column(ROW_ID, row_ids))
                conn.execute(
                    f"INSERT INTO {events} ({columns}) SELECT {columns} FROM {_LOAD_VIEW}"
                    + (f" ORDER BY {order}" if order else "")
                )
                event_counts_add(
                    conn, self.dialect, first_row_id=last + 1, last_row_id=last + staged.num_rows
                )
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                conn.unregister(_LOAD_VIEW)
        except duckdb.Error as exc:
            raise _warehouse_error(exc) from exc
        return staged.num_rows

    def event_counts_ready(self) -> bool:
        """Asked once per connection when the file is open read-only (no process can write it meanwhile: a warm
        engine answers a dry run without the two catalog reads), at every call otherwise."""
        self._connection()  # opening a connection forgets the last one's answer
        if self.read_only and self._counts_ready is not None:
            return self._counts_ready
        # duckdb_tables(): a third of information_schema's time, which matters on a dry run's path.
        tables = Statement(
            sql="SELECT count(*) AS n FROM duckdb_tables() WHERE database_name = current_database()"
            " AND schema_name = current_schema() AND table_name IN (?, ?)",
            params=(COUNTS_TABLE, STATE_TABLE),
            columns=(Column("n", ColumnType.INTEGER),),
            dialect=self.dialect.name,
        )
        ready = event_counts_ready_on(self, tables)
        self._counts_ready = ready
        return ready

    def _require_writable(self) -> None:
        if self.read_only:
            raise WarehouseError("the warehouse is open read-only")

    def _arrow_types(self, conn: duckdb.DuckDBPyConnection) -> dict[str, pa.DataType]:
        """The events table's columns and their Arrow types (empty when there is no table yet)."""
        rows = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = ? AND table_schema = current_schema() ORDER BY ordinal_position",
            [EVENTS_TABLE],
        ).fetchall()
        types = {str(name): _ARROW_BY_SQL_TYPE.get(str(data_type)) for name, data_type in rows}
        return {name: arrow for name, arrow in types.items() if arrow is not None}


def _scan_estimates(nodes: Any) -> Iterator[int]:
    """The "Estimated Cardinality" of every table scan in an EXPLAIN (FORMAT JSON) plan."""
    for node in nodes if isinstance(nodes, list) else [nodes]:
        value = str(node.get("extra_info", {}).get("Estimated Cardinality", ""))
        if node.get("name", "").strip() in ("SEQ_SCAN", "TABLE_SCAN") and value.isdigit():
            yield int(value)
        yield from _scan_estimates(node.get("children", []))


def _warehouse_error(exc: BaseException) -> WarehouseError:
    """A WarehouseError naming the kind of failure only: DuckDB's own text may quote SQL or paths."""
    text = str(exc)
    if isinstance(exc, duckdb.IOException) and "lock" in text.lower():
        return WarehouseLocked("the warehouse file is locked by another process", retryable=True)
    if isinstance(exc, duckdb.IOException):
        return WarehouseError("the warehouse file cannot be opened or read")
    if isinstance(exc, duckdb.OutOfMemoryException) or "Out of Memory" in text:
        return WarehouseError("the warehouse ran out of memory for this query")
    if isinstance(exc, duckdb.InterruptException) or "INTERRUPT" in text:
        return WarehouseError("the warehouse query was interrupted", retryable=True)
    if isinstance(exc, duckdb.TransactionException):
        return WarehouseError("the warehouse transaction conflicted with another one", retryable=True)
    return WarehouseError(f"the warehouse query failed ({type(exc).__name__})")
