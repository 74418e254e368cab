"""Hourly event counts: how many rows `events` holds per (CustomerId, hour of TimeStamp, EventName), kept exact.

What they are for: a dry run's exact count (queries.row_counts) of a query made only of a customer, a window
and events (no condition, no scope) adds up the whole hours inside its window here and counts in `events` only
the partial hours at its two edges, which the zone maps (DuckDB) or the (CustomerId, TimeStamp) index
(PostgreSQL) make cheap: a few thousand small rows read instead of every row of the window.

Tables, beside `events` (see `exports.engines`; a lake engine such as Spark has neither and counts `events`):

    event_counts        "CustomerId", "EventName", "Hour" (= date_trunc('hour', "TimeStamp")), "Rows";
                        primary key the first three. A row whose CustomerId, TimeStamp or EventName is NULL is
                        in no query's result, so it is not counted.
    event_counts_state  "complete": one row, TRUE when event_counts is exactly in step with events. Readers
                        trust the counts only then (`WarehouseEngine.event_counts_ready`).

How they stay exact: an engine's `load` adds the counts of the rows it appends in the same transaction
(`event_counts_add`); `ensure_schema` rebuilds them from `events` when they are missing or not marked complete,
which is how a warehouse loaded before they existed gets them. A writer that appends to `events` by SQL of its
own (bench.export) calls `event_counts_rebuild` in the same transaction. Anything else that changes `events`
(a DELETE, an UPDATE of a key) must do the same, or the counts would be wrong while marked complete.
"""

from __future__ import annotations

from typing import Any, Protocol

from exports.engines.base import EVENTS_TABLE, ROW_ID, Dialect, Statement, WarehouseEngine
from exports.schema import Column, ColumnType, quote_identifier

COUNTS_TABLE = "event_counts"
STATE_TABLE = "event_counts_state"
CUSTOMER, EVENT, TIME = "CustomerId", "EventName", "TimeStamp"  # the columns of `events` they count by
HOUR, ROWS, COMPLETE = "Hour", "Rows", "complete"
_KEY = (CUSTOMER, EVENT, HOUR)  # the primary key: a customer's event, then its hours (a range)


class SqlConnection(Protocol):
    """A DB-API-like connection of a loader (DuckDB's, psycopg's): `execute(sql, params)`, then `fetchall()` on
    what it returns."""

    def execute(self, query: Any, parameters: Any = ..., /) -> Any: ...


def event_counts_rebuild(conn: SqlConnection, dialect: Dialect) -> None:
    """Make the counts from `events` again and mark them complete; creates the tables if missing.

    Runs in the caller's transaction, which it does not commit: `events` must not change under it (PostgreSQL:
    hold `SHARE ROW EXCLUSIVE` on `events`, the lock `load` takes, so that a concurrent load waits)."""
    for table in (COUNTS_TABLE, STATE_TABLE):
        conn.execute(f"DROP TABLE IF EXISTS {quote_identifier(table)}")
    _tables_create(conn, dialect)
    # Sorted by customer and hour: DuckDB's zone maps then prune other customers in the counts too.
    conn.execute(_counts_insert_sql(dialect, rows_between=False) + " ORDER BY 1, 3")
    conn.execute(f"INSERT INTO {quote_identifier(STATE_TABLE)} ({quote_identifier(COMPLETE)}) VALUES (TRUE)")


def event_counts_add(conn: SqlConnection, dialect: Dialect, *, first_row_id: int, last_row_id: int) -> None:
    """Add the counts of the rows of `events` whose `_row_id` is between the two (those a load just appended),
    in the caller's transaction (the load's own, so that rows and counts commit together)."""
    table = quote_identifier(COUNTS_TABLE)
    rows = quote_identifier(ROWS)
    keys = ", ".join(quote_identifier(name) for name in _KEY)
    conn.execute(
        _counts_insert_sql(dialect, rows_between=True)
        + f" ON CONFLICT ({keys}) DO UPDATE SET {rows} = {table}.{rows} + EXCLUDED.{rows}",
        (first_row_id, last_row_id),
    )


def event_counts_complete(conn: SqlConnection, dialect: Dialect) -> bool:
    """Whether both tables exist and the counts are marked complete (a loader's check, through the portable
    information_schema; readers have `WarehouseEngine.event_counts_ready`)."""
    mark = dialect.placeholder()
    ((tables,),) = conn.execute(
        "SELECT count(*) FROM information_schema.tables"
        f" WHERE table_schema = current_schema() AND table_name IN ({mark}, {mark})",
        (COUNTS_TABLE, STATE_TABLE),
    ).fetchall()
    if int(tables) != 2:
        return False
    ((complete,),) = conn.execute(_complete_sql()).fetchall()
    return int(complete) > 0


def event_counts_table_exists(conn: SqlConnection, dialect: Dialect) -> bool:
    """Whether the counts table exists: a load needs it (`ensure_schema` makes it)."""
    ((tables,),) = conn.execute(
        "SELECT count(*) FROM information_schema.tables"
        f" WHERE table_schema = current_schema() AND table_name = {dialect.placeholder()}",
        (COUNTS_TABLE,),
    ).fetchall()
    return int(tables) == 1


def event_counts_ready_on(engine: WarehouseEngine, tables: Statement) -> bool:
    """`WarehouseEngine.event_counts_ready` through the engine's reads: `tables` (the engine's own catalog query,
    one INTEGER: how many of COUNTS_TABLE and STATE_TABLE exist) says 2, then the state says complete. Two
    statements: a table that does not exist cannot be named in a statement without failing it."""
    if _single(engine, tables) != 2:
        return False
    complete = Statement(
        sql=_complete_sql(),
        params=(),
        columns=(Column("n", ColumnType.INTEGER),),
        dialect=engine.dialect.name,
    )
    return _single(engine, complete) > 0


def _single(engine: WarehouseEngine, statement: Statement) -> int:
    values = [value for batch in engine.execute(statement) for value in batch.column(0).to_pylist()]
    return int(values[0] or 0) if values else 0


def _complete_sql() -> str:
    return f'SELECT count(*) AS "n" FROM {quote_identifier(STATE_TABLE)} WHERE {quote_identifier(COMPLETE)}'


def _tables_create(conn: SqlConnection, dialect: Dialect) -> None:
    text, timestamp, integer, boolean = (
        dialect.type_names[t.value]
        for t in (ColumnType.STRING, ColumnType.TIMESTAMP, ColumnType.INTEGER, ColumnType.BOOLEAN)
    )
    if dialect.name == "postgresql":  # as the events columns: strings compare by code point
        text = f'{text} COLLATE "C"'
    types = {CUSTOMER: text, EVENT: text, HOUR: timestamp, ROWS: integer}
    columns = ", ".join(f"{quote_identifier(name)} {sql_type} NOT NULL" for name, sql_type in types.items())
    keys = ", ".join(quote_identifier(name) for name in _KEY)
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(COUNTS_TABLE)} ({columns}, PRIMARY KEY ({keys}))"
    )
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(STATE_TABLE)} ({quote_identifier(COMPLETE)} {boolean} NOT NULL)"
    )


def _counts_insert_sql(dialect: Dialect, *, rows_between: bool) -> str:
    """INSERT INTO event_counts the counts of `events` (of a range of `_row_id`s: two parameters)."""
    customer, event, time = (quote_identifier(name) for name in (CUSTOMER, EVENT, TIME))
    where = [f"{customer} IS NOT NULL", f"{event} IS NOT NULL", f"{time} IS NOT NULL"]
    if rows_between:
        mark = dialect.placeholder()
        where.append(f"{quote_identifier(ROW_ID)} BETWEEN {mark} AND {mark}")
    keys = ", ".join(quote_identifier(name) for name in (*_KEY, ROWS))
    return (
        f"INSERT INTO {quote_identifier(COUNTS_TABLE)} ({keys})"
        f" SELECT {customer}, {event}, date_trunc('hour', {time}), count(*)"
        f" FROM {quote_identifier(EVENTS_TABLE)} WHERE {' AND '.join(where)} GROUP BY 1, 2, 3"
    )
