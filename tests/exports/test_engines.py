"""Warehouse engines through their interface: DuckDB on a temporary file, PostgreSQL and Spark (a Parquet lake in a
temporary directory) on the test servers."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from exports.engines import engine_from_url
from exports.engines import postgres as postgres_module
from exports.engines.base import Statement, WarehouseEngine
from exports.engines.duckdb import DuckDBEngine, duckdb_path
from exports.engines.postgres import PostgresEngine
from exports.errors import QueryCanceled, WarehouseError
from exports.schema import Column, ColumnType, arrow_schema, quote_identifier
from queries.catalog import catalog

COLUMNS = catalog().warehouse_columns()
ALL = (*COLUMNS, Column("_row_id", ColumnType.INTEGER))
_databases = itertools.count()

# One value per type that is easy to get wrong: unicode beyond the BMP, quotes, an empty string (not NULL),
# microseconds, the extremes of BIGINT, a float that only survives an exact round trip.
SAMPLES: dict[ColumnType, list[Any]] = {
    ColumnType.STRING: ["héllo 😀 \"quoted\" 'single', comma\nnewline \\ back", "", None, "ASCII"],
    ColumnType.INTEGER: [-(2**63), 2**63 - 1, None, 0],
    ColumnType.FLOAT: [0.30000000000000004, -1e300, None, 5e-324],
    ColumnType.BOOLEAN: [True, False, None, True],
    ColumnType.TIMESTAMP: [
        datetime(2019, 11, 25, 23, 59, 59, 999999),
        datetime(1970, 1, 1, 0, 0, 0, 1),
        None,
        datetime(2038, 1, 19, 3, 14, 8),
    ],
}


def _rows() -> list[dict[str, Any]]:
    rows = [{c.name: SAMPLES[c.type][i] for c in COLUMNS} for i in range(4)]
    # A lake keeps CustomerId as a directory name, where "" and NULL are one: Spark refuses "" (tested below).
    rows[1]["CustomerId"] = "customer 😀/\\'\"=%"
    return rows


def _table(rows: list[dict[str, Any]], columns: tuple[Column, ...] = COLUMNS) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=arrow_schema(columns))


def _select(
    engine: WarehouseEngine, columns: tuple[Column, ...] = ALL, where: str = "", params: tuple[Any, ...] = ()
) -> Statement:
    names = ", ".join(quote_identifier(c.name) for c in columns)
    return Statement(
        sql=f"SELECT {names} FROM events {where} ORDER BY _row_id",
        params=params,
        columns=columns,
        dialect=engine.dialect.name,
    )


def _fetch(engine: WarehouseEngine, statement: Statement, batch_rows: int = 65_536) -> list[dict[str, Any]]:
    out = []
    for batch in engine.execute(statement, batch_rows=batch_rows):
        assert batch.schema == arrow_schema(statement.columns)
        out.extend(batch.to_pylist())
    return out


@pytest.fixture(params=["duckdb", "postgresql", "spark"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb://{tmp_path / 'warehouse.duckdb'}"
    if request.param == "spark":
        return str(request.getfixturevalue("spark_connect").url)
    server = request.getfixturevalue("postgres")
    return str(server.create_database(f"engines_{next(_databases)}"))


@pytest.fixture
def lake(tmp_path: Path) -> str:
    """The Spark engine's lake (the server runs on this machine); the other engines ignore it."""
    return str(tmp_path / "lake")


@pytest.fixture
def writer(url: str, lake: str) -> Iterator[WarehouseEngine]:
    engine = engine_from_url(url, read_only=False, lake_path=lake)
    engine.ensure_schema(COLUMNS)
    yield engine
    engine.close()


def test_every_type_round_trips_with_nulls(writer: WarehouseEngine) -> None:
    rows = _rows()
    assert writer.load(_table(rows)) == 4
    assert _fetch(writer, _select(writer), batch_rows=3) == [
        {**row, "_row_id": i} for i, row in enumerate(rows, 1)
    ]


def test_bound_parameters_compare_exactly(writer: WarehouseEngine) -> None:
    writer.load(_table(_rows()))
    mark = writer.dialect.placeholder
    where = f'WHERE "Duration" = {mark(1)} AND "TimeStamp" = {mark(2)} AND "Ani" = {mark(3)}'
    params = (0.30000000000000004, SAMPLES[ColumnType.TIMESTAMP][0], SAMPLES[ColumnType.STRING][0])
    assert [row["_row_id"] for row in _fetch(writer, _select(writer, where=where, params=params))] == [1]


def test_load_takes_a_subset_of_columns_and_continues_row_ids(writer: WarehouseEngine) -> None:
    subset = (Column("CustomerId", ColumnType.STRING), Column("TimeStamp", ColumnType.TIMESTAMP))
    writer.load(_table([{"CustomerId": "b", "TimeStamp": datetime(2020, 1, 2)}], subset))
    writer.load(_table([{"CustomerId": "a", "TimeStamp": datetime(2020, 1, 1)}] * 2, subset))
    columns = (*subset, Column("Duration", ColumnType.FLOAT), Column("_row_id", ColumnType.INTEGER))
    assert _fetch(writer, _select(writer, columns)) == [
        {"CustomerId": "b", "TimeStamp": datetime(2020, 1, 2), "Duration": None, "_row_id": 1},
        {"CustomerId": "a", "TimeStamp": datetime(2020, 1, 1), "Duration": None, "_row_id": 2},
        {"CustomerId": "a", "TimeStamp": datetime(2020, 1, 1), "Duration": None, "_row_id": 3},
    ]


def test_aware_timestamps_load_as_naive_utc(writer: WarehouseEngine) -> None:
    column = Column("TimeStamp", ColumnType.TIMESTAMP)
    aware = pa.table({"TimeStamp": pa.array([datetime(2020, 1, 1, 12)], pa.timestamp("us", tz="UTC"))})
    writer.load(aware)
    assert _fetch(writer, _select(writer, (column,))) == [{"TimeStamp": datetime(2020, 1, 1, 12)}]


def test_a_load_of_unknown_or_unconvertible_columns_changes_nothing(writer: WarehouseEngine) -> None:
    writer.load(_table(_rows()[:1]))
    with pytest.raises(WarehouseError, match="unknown columns: Nope"):
        writer.load(pa.table({"CustomerId": ["x"], "Nope": [1]}))
    with pytest.raises(WarehouseError, match="does not convert"):
        writer.load(pa.table({"CustomerId": ["x", "y"], "TimeStamp": ["2020-01-01", "not a date"]}))
    assert [row["_row_id"] for row in _fetch(writer, _select(writer))] == [1]


def test_postgres_load_failing_mid_copy_leaves_the_table_unchanged(
    postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = PostgresEngine(postgres.create_database("engines_mid_copy"), read_only=False)
    engine.ensure_schema(COLUMNS)
    engine.load(_table(_rows()[:1]))
    monkeypatch.setattr(postgres_module, "_COPY_ROWS", 2)  # several COPY chunks reach the server first
    rows = [{"CustomerId": "c", "Ani": f"ok {i}"} for i in range(7)] + [
        {"CustomerId": "c", "Ani": "nul \x00"}
    ]
    with pytest.raises(WarehouseError) as caught:
        engine.load(_table(rows))
    assert "nul" not in str(caught.value)
    assert [row["_row_id"] for row in _fetch(engine, _select(engine))] == [1]
    assert engine.load(_table(rows[:1])) == 1  # the engine is usable again, row ids continue
    assert [row["_row_id"] for row in _fetch(engine, _select(engine))] == [1, 2]
    engine.close()


def test_read_only_engine_reads_and_refuses_to_write(url: str, lake: str) -> None:
    writer = engine_from_url(url, read_only=False, lake_path=lake)
    writer.ensure_schema(COLUMNS)
    writer.load(_table(_rows()))
    writer.close()  # DuckDB: one read-write process per file

    reader = engine_from_url(url, lake_path=lake)  # read-only by default
    try:
        assert len(_fetch(reader, _select(reader))) == 4
        with pytest.raises(WarehouseError, match="read-only"):
            reader.load(_table(_rows()))
        with pytest.raises(WarehouseError, match="read-only"):
            reader.ensure_schema(COLUMNS)
        # Not only our guard: the connection itself cannot write.
        insert = Statement(
            sql="INSERT INTO events (\"CustomerId\", _row_id) VALUES ('x', 99) RETURNING _row_id",
            params=(),
            columns=(Column("_row_id", ColumnType.INTEGER),),
            dialect=reader.dialect.name,
        )
        with pytest.raises(WarehouseError):
            _fetch(reader, insert)
        assert len(_fetch(reader, _select(reader))) == 4
    finally:
        reader.close()


def _long_statement(engine: WarehouseEngine) -> Statement:
    """A statement that would run for hours: a 10^12-row cross join (DuckDB) or a 10^11-row series; on Spark
    2 * 10^10 rows (seconds to a minute on local[2]): a canceled job's running tasks may finish their work
    before they notice, and the engine's next statement would wait for the cores they hold."""
    mark = engine.dialect.placeholder()
    if engine.dialect.name == "duckdb":
        sql = (
            f'SELECT count(*) AS "n" FROM range(1000000) a, range(1000000) b WHERE a.range + b.range = {mark}'
        )
    elif engine.dialect.name == "spark":
        sql = f'SELECT count(*) AS "n" FROM range(20000000000) WHERE id = {mark}'
    else:
        sql = f'SELECT count(*) AS "n" FROM generate_series(1, 100000000000) a WHERE a = {mark}'
    return Statement(
        sql=sql, params=(-1,), columns=(Column("n", ColumnType.INTEGER),), dialect=engine.dialect.name
    )


def test_cancel_stops_a_running_statement(writer: WarehouseEngine) -> None:
    started = threading.Event()

    def cancel_once_running() -> None:
        started.wait()
        # The statement would run for hours, so after a moment it is surely running; were it not, cancel() is
        # remembered and execute() stops anyway, so the pause only decides which path is exercised.
        time.sleep(0.3)
        writer.cancel()

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    try:
        with pytest.raises(QueryCanceled):
            batches = writer.execute(_long_statement(writer))
            started.set()
            next(batches)
    finally:
        started.set()
        canceller.join()
    writer.load(_table(_rows()))  # the engine works after a cancel
    assert len(_fetch(writer, _select(writer))) == 4


def test_cancel_before_execute_cancels_it(writer: WarehouseEngine) -> None:
    writer.cancel()
    with pytest.raises(QueryCanceled):
        _fetch(writer, _select(writer))
    assert _fetch(writer, _select(writer)) == []


def test_errors_carry_no_sql_and_say_whether_to_retry(writer: WarehouseEngine) -> None:
    bad = Statement(
        sql='SELECT "NoSuchColumn" FROM events WHERE "CustomerId" = ' + writer.dialect.placeholder(),
        params=("secret-value",),
        columns=(Column("NoSuchColumn", ColumnType.STRING),),
        dialect=writer.dialect.name,
    )
    with pytest.raises(WarehouseError) as caught:
        _fetch(writer, bad)
    assert "NoSuchColumn" not in str(caught.value) and "SELECT" not in str(caught.value)
    assert not caught.value.retryable


def test_a_statement_of_another_dialect_is_refused(writer: WarehouseEngine) -> None:
    other = "postgresql" if writer.dialect.name == "duckdb" else "duckdb"
    statement = Statement(
        sql="SELECT 1", params=(), columns=(Column("x", ColumnType.INTEGER),), dialect=other
    )
    with pytest.raises(WarehouseError, match="compiled for"):
        _fetch(writer, statement)


def test_estimate_counts_the_rows_the_scan_expects(writer: WarehouseEngine) -> None:
    writer.load(_table(_rows() * 50))
    if isinstance(writer, PostgresEngine):
        with psycopg.connect(writer.url, autocommit=True) as conn:
            conn.execute("ANALYZE events")  # the planner estimates from statistics
    mark = writer.dialect.placeholder()
    estimate = writer.estimate(_select(writer, where=f'WHERE "CustomerId" <> {mark}', params=("nobody",)))
    # 150 of the 200 rows match (NULL CustomerIds do not); an optimizer's guess, but never more than the table.
    assert 0 < estimate.rows <= 200


def test_unreachable_postgres_is_a_retryable_error() -> None:
    engine = engine_from_url("postgresql://nobody:hunter2@127.0.0.1:1/db")
    with pytest.raises(WarehouseError) as caught:
        _fetch(engine, _select(engine))
    assert caught.value.retryable
    assert "hunter2" not in str(caught.value) and "127.0.0.1" not in str(caught.value)


def test_missing_duckdb_file_read_only_is_an_error_without_its_path(tmp_path: Path) -> None:
    engine = engine_from_url(f"duckdb://{tmp_path / 'absent.duckdb'}")
    with pytest.raises(WarehouseError) as caught:
        _fetch(engine, _select(engine))
    assert str(tmp_path) not in str(caught.value)


def test_engine_from_url_picks_the_engine_by_scheme(tmp_path: Path) -> None:
    assert isinstance(engine_from_url(f"duckdb://{tmp_path}/w.duckdb"), DuckDBEngine)
    assert isinstance(engine_from_url("duckdb://:memory:"), DuckDBEngine)
    assert isinstance(engine_from_url("postgresql://u@h/db"), PostgresEngine)
    assert isinstance(engine_from_url("postgres://u@h/db"), PostgresEngine)
    with pytest.raises(ValueError, match="'mysql'") as caught:
        engine_from_url("mysql://user:hunter2@host/db")
    assert "hunter2" not in str(caught.value)


def test_duckdb_urls_need_an_absolute_path() -> None:
    assert duckdb_path("duckdb:///var/w.duckdb") == "/var/w.duckdb"
    assert duckdb_path("duckdb:////var/w.duckdb") == "/var/w.duckdb"  # f"duckdb:///{absolute path}"
    assert duckdb_path("duckdb://:memory:") == ":memory:"
    with pytest.raises(ValueError, match="absolute"):
        duckdb_path("duckdb://relative.duckdb")


def test_a_postgres_session_terminated_mid_stream_is_retryable(postgres) -> None:
    """However the driver reports a backend terminated while rows stream (AdminShutdown 57P01, an
    OperationalError without a SQLSTATE, or psycopg's InternalError "received 2 results" when it lands inside
    a FETCH), the server went away: worth another attempt. The termination lands at several moments after the
    engine's session opened its transaction (before that, only the driver's own catalog lookup may be running:
    ADBC reads the server's types on a connection of its own, then closes it)."""
    statement = Statement(
        sql="SELECT g, repeat('x', 200) AS s FROM generate_series(1, 3000000) AS g",
        params=(),
        columns=(Column("g", ColumnType.INTEGER), Column("s", ColumnType.STRING)),
        dialect="postgresql",
    )
    url = postgres.create_database("terminated_mid_stream")
    causes = set()
    for delay in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9):
        engine = engine_from_url(url, read_only=True)
        killer = threading.Thread(target=_backends_terminate_once_reading, args=(url, delay))
        killer.start()
        with pytest.raises(WarehouseError) as caught:
            for _ in engine.execute(statement, batch_rows=65_536):
                pass
        killer.join()
        engine.close()
        assert caught.value.retryable, (delay, caught.value, type(caught.value.__cause__))
        causes.add(type(caught.value.__cause__).__name__)
    assert causes


def _backends_terminate_once_reading(url: str, delay: float) -> None:
    """`delay` seconds after a session on the database (not the driver's catalog lookup) opened a transaction,
    terminate every session there."""
    with psycopg.connect(url, autocommit=True) as admin:
        for _ in range(1000):
            reading = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
                " AND query NOT LIKE '%pg_catalog.pg_type%'"  # the driver's catalog lookup
            ).fetchone()
            if reading and reading[0]:
                break
            time.sleep(0.01)
    time.sleep(delay)
    _backends_terminate(url)


def _backends_terminate(url: str) -> None:
    """Every other session on the database (the engine's, here)."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )


def test_any_driver_error_that_leaves_the_session_gone_is_retryable() -> None:
    from exports.engines.postgres import _warehouse_error

    odd = psycopg.InternalError("received 2 results from command 'FETCH FORWARD 65536'")
    assert _warehouse_error(odd, connection_lost=True).retryable
    assert not _warehouse_error(odd, connection_lost=False).retryable


def test_a_postgres_warehouse_with_no_events_table_says_so(postgres) -> None:
    engine = engine_from_url(postgres.create_database("no_events_yet"))
    statement = Statement(
        sql='SELECT "Ani" FROM "events"',
        params=(),
        columns=(Column("Ani", ColumnType.STRING),),
        dialect="postgresql",
    )
    with pytest.raises(WarehouseError, match="no events table: load events first"):
        list(engine.execute(statement))
    engine.close()
