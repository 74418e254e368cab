"""The PostgreSQL engine's reads through ADBC (exports.engines.postgres_arrow), on the test server: types as the
engine reports them, NULLs and text, large results in bounded batches, cancel mid-stream, lost and failed
statements, bound parameters that never reach the SQL text, and the read-only transaction."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from exports.engines.base import Statement
from exports.engines.postgres import PostgresEngine
from exports.engines.postgres_arrow import ArrowSession, numbered_placeholders, url_with_connect_timeout
from exports.errors import QueryCanceled, WarehouseError
from exports.schema import Column, ColumnType, arrow_schema, quote_identifier
from queries.catalog import catalog

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = catalog().warehouse_columns()
_databases = itertools.count()

# Text that is easy to get wrong: beyond the BMP, combining marks, right-to-left, a BOM, every ASCII control
# character but NUL (PostgreSQL text holds none), quotes, backslashes, CSV and COPY delimiters, a long value.
TEXTS = [
    "😀👍🏽 \U0001d518\U0001d52b \U0010fffd",  # emoji with a skin tone, Fraktur letters, a last-plane code point
    "e\u0301 n\u0303 \u200d\u200b zero-width",
    "עברית العربية",
    "\ufeffBOM",
    "".join(chr(c) for c in range(1, 32)) + "\x7f",
    "quote \" ' `, comma; pipe | tab\t backslash \\ \\N \\. end",
    "",
    "x" * 1_000_000,
]


@pytest.fixture
def url(postgres: Any) -> str:
    return str(postgres.create_database(f"postgres_arrow_{next(_databases)}"))


@pytest.fixture
def engine(url: str) -> Iterator[PostgresEngine]:
    engine = PostgresEngine(url, read_only=False)
    engine.ensure_schema(COLUMNS)
    yield engine
    engine.close()


def _statement(sql: str, columns: tuple[Column, ...], params: tuple[Any, ...] = ()) -> Statement:
    return Statement(sql=sql, params=params, columns=columns, dialect="postgresql")


def _rows(engine: PostgresEngine, statement: Statement, batch_rows: int = 65_536) -> list[dict[str, Any]]:
    out = []
    for batch in engine.execute(statement, batch_rows=batch_rows):
        assert batch.schema == arrow_schema(statement.columns)
        out.extend(batch.to_pylist())
    return out


def _series(rows: int, where: str = "g > %s", *, ordered: bool = True) -> Statement:
    """1..rows with their md5. The series is in the select list, where PostgreSQL streams it (in FROM it would
    be stored whole first); `ordered=False` leaves the sort out too (the series comes in order anyway), so the
    first rows of an endless series come at once."""
    order = " ORDER BY g" if ordered else ""
    series = f"(SELECT generate_series(1, {rows}::bigint) AS g) AS series"
    return _statement(
        f'SELECT g AS "g", md5(g::text) AS "s" FROM {series} WHERE {where}{order}',
        (Column("g", ColumnType.INTEGER), Column("s", ColumnType.STRING)),
        (0,) if "%s" in where else (),
    )


def _md5(n: int) -> str:
    return hashlib.md5(str(n).encode(), usedforsecurity=False).hexdigest()


PID = _statement('SELECT pg_backend_pid() AS "pid"', (Column("pid", ColumnType.INTEGER),))


def _pid(engine: PostgresEngine) -> int:
    return int(_rows(engine, PID)[0]["pid"])


def test_batches_carry_the_types_the_engine_reports_for_its_columns(engine: PostgresEngine) -> None:
    """Every stored column reads back as the Arrow type the engine maps its SQL type to (`_arrow_types`, what a
    load converts to), which is the catalog's type: the schema a writer receives is the one it was told."""
    stored = engine._arrow_types(engine._write_connection())
    columns = (*COLUMNS, Column("_row_id", ColumnType.INTEGER))
    names = ", ".join(quote_identifier(c.name) for c in columns)
    statement = _statement(f"SELECT {names} FROM events ORDER BY _row_id", columns)
    engine.load(pa.Table.from_pylist([{"CustomerId": "c"}], schema=arrow_schema(COLUMNS)))
    (batch,) = list(engine.execute(statement))
    assert {field.name: field.type for field in batch.schema} == stored
    assert all(stored[c.name] == c.type.arrow for c in COLUMNS)


def test_narrower_and_opaque_server_types_become_the_statement_types(engine: PostgresEngine) -> None:
    """What an expression may give beside the stored types (int2/int4, float4, numeric, varchar, an aware
    timestamp, an untyped NULL) arrives as the statement's declared Arrow type, values intact."""
    columns = (
        Column("i2", ColumnType.INTEGER),
        Column("i4", ColumnType.INTEGER),
        Column("num", ColumnType.INTEGER),
        Column("f4", ColumnType.FLOAT),
        Column("numf", ColumnType.FLOAT),
        Column("v", ColumnType.STRING),
        Column("tz", ColumnType.TIMESTAMP),
        Column("nothing", ColumnType.STRING),
    )
    sql = (
        "SELECT 7::int2, (2^31 - 1)::int4, 9223372036854775807::numeric, 0.5::float4, 2.25::numeric,"
        " 'varchar'::varchar(10), '2020-01-02 03:04:05.123456+02'::timestamptz, NULL"
    )
    assert _rows(engine, _statement(sql, columns)) == [
        {
            "i2": 7,
            "i4": 2**31 - 1,
            "num": 2**63 - 1,
            "f4": 0.5,
            "numf": 2.25,
            "v": "varchar",
            "tz": datetime(2020, 1, 2, 1, 4, 5, 123456),  # naive UTC
            "nothing": None,
        }
    ]


def test_a_value_that_does_not_fit_its_declared_type_is_a_statement_error(engine: PostgresEngine) -> None:
    for sql, columns in (
        ("SELECT 'abc'::text", (Column("n", ColumnType.INTEGER),)),
        ("SELECT 1, 2", (Column("n", ColumnType.INTEGER),)),
    ):
        with pytest.raises(WarehouseError) as caught:
            _rows(engine, _statement(sql, columns))
        assert not caught.value.retryable
    assert _rows(engine, _series(3)) == [{"g": n, "s": _md5(n)} for n in (1, 2, 3)]  # still usable


def test_text_nulls_and_empty_strings_round_trip(engine: PostgresEngine) -> None:
    values = [*TEXTS, None]
    engine.load(pa.table({"CustomerId": ["c"] * len(values), "Passthrough": pa.array(values, pa.string())}))
    column = Column("Passthrough", ColumnType.STRING)  # not indexed: a btree entry holds no 1 MB value
    statement = _statement('SELECT "Passthrough" FROM events ORDER BY _row_id', (column,))
    assert [row["Passthrough"] for row in _rows(engine, statement, batch_rows=3)] == values


def test_a_column_of_nulls_of_every_type(engine: PostgresEngine) -> None:
    engine.load(pa.table({"CustomerId": ["only the customer"] * 5}))
    names = ", ".join(quote_identifier(c.name) for c in COLUMNS if c.name != "CustomerId")
    columns = tuple(c for c in COLUMNS if c.name != "CustomerId")
    rows = _rows(engine, _statement(f"SELECT {names} FROM events", columns), batch_rows=2)
    assert rows == [dict.fromkeys((c.name for c in columns), None)] * 5


def test_parameters_of_every_kind_bind_exactly(engine: PostgresEngine) -> None:
    """Each Python type the compiler binds compares exactly with its column; an aware datetime is its UTC
    instant; `%%` is a percent sign, as in psycopg's reading of the same text."""
    row = {
        "CustomerId": TEXTS[0],
        "EventVersion": -(2**63),
        "SipResponseCode": 2**63 - 1,
        "Duration": 0.30000000000000004,
        "IsTriggerAction": False,
        "TimeStamp": datetime(2019, 11, 25, 23, 59, 59, 999999),
        "Ani": "100%",
    }
    engine.load(pa.Table.from_pylist([row, {"CustomerId": "other"}]))
    where = " AND ".join(
        [
            '"CustomerId" = %s',
            '"EventVersion" = %s',
            '"SipResponseCode" = %s',
            '"Duration" = %s',
            '"IsTriggerAction" = %s',
            '"TimeStamp" = %s',
            '"TimeStamp" = %s',
            '"Ani" LIKE \'%%\\%%\' AND "Ani" = %s',
        ]
    )
    aware = datetime(2019, 11, 26, 1, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2)))
    params = (*list(row.values())[:6], aware, "100%")
    statement = _statement(
        f"SELECT _row_id FROM events WHERE {where}", (Column("_row_id", ColumnType.INTEGER),), params
    )
    assert _rows(engine, statement) == [{"_row_id": 1}]


def test_placeholders_must_match_the_parameters(engine: PostgresEngine) -> None:
    one = (Column("n", ColumnType.INTEGER),)
    for sql, params in (("SELECT %s::bigint", ()), ("SELECT 1", (1,)), ("SELECT %d", (1,))):
        with pytest.raises(WarehouseError) as caught:
            _rows(engine, _statement(sql, one, params))
        assert not caught.value.retryable


def test_numbered_placeholders_read_the_text_as_psycopg_does() -> None:
    assert numbered_placeholders("SELECT %s, %s WHERE x LIKE 'a%%'") == ("SELECT $1, $2 WHERE x LIKE 'a%'", 2)
    assert numbered_placeholders("SELECT 1") == ("SELECT 1", 0)
    for bad in ("SELECT %d", "SELECT 100%"):
        with pytest.raises(WarehouseError):
            numbered_placeholders(bad)


def test_connect_timeout_joins_the_url_unless_it_has_one() -> None:
    assert url_with_connect_timeout("postgresql://u@h/db", 10) == "postgresql://u@h/db?connect_timeout=10"
    assert (
        url_with_connect_timeout("postgresql://u:p%40ss@h:5/db?sslmode=require", 3)
        == "postgresql://u:p%40ss@h:5/db?sslmode=require&connect_timeout=3"
    )
    kept = "postgres://u@h/db?connect_timeout=1"
    assert url_with_connect_timeout(kept, 10) == kept


def test_values_travel_as_parameters_never_in_the_sql_text(engine: PostgresEngine) -> None:
    """The server's own record of the running statement (the session's open cursor, read by the statement
    itself) holds a placeholder where the value was; the value reached the server apart, bound."""
    secret = "secret-value-😀"
    statement = _statement(
        'SELECT statement AS "text", %s AS "value" FROM pg_cursors',
        (Column("text", ColumnType.STRING), Column("value", ColumnType.STRING)),
        (secret,),
    )
    rows = _rows(engine, statement)
    assert rows and all(row["value"] == secret for row in rows)
    declared = [
        row["text"] for row in rows if "pg_cursors" in row["text"]
    ]  # (beside it: the FETCH reading it)
    assert declared and all("$1" in text and "secret-value" not in text for text in declared), rows


def test_a_large_result_streams_in_ordered_batches_of_batch_rows(engine: PostgresEngine) -> None:
    rows = 200_003
    batches = list(engine.execute(_series(rows), batch_rows=10_000))
    assert [b.num_rows for b in batches] == [10_000] * 20 + [3]
    ids = pa.concat_arrays([b.column("g") for b in batches]).to_pylist()
    assert ids == list(range(1, rows + 1))
    assert batches[-1].column("s").to_pylist()[-1] == _md5(rows)
    # An exact multiple: the last full FETCH is followed by an empty one, which yields nothing.
    assert [b.num_rows for b in engine.execute(_series(30_000), batch_rows=10_000)] == [10_000] * 3


@pytest.mark.timeout(120)  # a stream that does not stream never returns: fail, not hang
def test_an_endless_result_yields_its_first_batches_and_stops_when_dropped(engine: PostgresEngine) -> None:
    """10^11 rows: only a stream can hand over its first batches (a driver holding the whole result would
    never return); dropping the stream ends the statement and the session reads on."""
    batches = engine.execute(_series(100_000_000_000, ordered=False), batch_rows=1_000)
    assert isinstance(batches, Generator)
    first = [next(batches) for _ in range(3)]
    batches.close()
    assert [b.num_rows for b in first] == [1_000] * 3
    assert first[2].column("g")[-1].as_py() == 3_000
    assert _rows(engine, _series(2)) == [{"g": 1, "s": _md5(1)}, {"g": 2, "s": _md5(2)}]


def test_peak_memory_does_not_follow_the_row_count(url: str) -> None:
    """1.5M rows of 256-character text (~380 MB as Arrow, more as libpq's result) read in a process of its own:
    its peak resident memory grows by a few batches' worth, not by the result."""
    script = f"""
import json
from exports.engines.base import Statement
from exports.engines.postgres import PostgresEngine
from exports.schema import Column, ColumnType

def rss_mb(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith(field + ":"))

engine = PostgresEngine({url!r})
statement = Statement(
    sql="SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 1500000) AS g WHERE g > %s ORDER BY g",
    params=(0,), columns=(Column("g", ColumnType.INTEGER), Column("s", ColumnType.STRING)), dialect="postgresql",
)
batches = engine.execute(statement)
rows = next(batches).num_rows
baseline = rss_mb("VmHWM")
rows += sum(batch.num_rows for batch in batches)
print(json.dumps({{"rows": rows, "baseline": baseline, "peak": rss_mb("VmHWM")}}))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["rows"] == 1_500_000
    assert figures["peak"] - figures["baseline"] < 150, figures


@pytest.mark.timeout(120)  # a FETCH left running would hold the session for minutes: fail, not hang
def test_dropping_a_stream_stops_the_fetch_running_ahead(engine: PostgresEngine) -> None:
    """The next FETCH runs while the current batch is read; here it waits on a scan that would take minutes.
    Dropping the stream after the first batch interrupts it, and the same session reads on at once."""
    before = _pid(engine)
    slow_after_five = _series(100_000_000_000, where="g <= 5 OR g %% 100000000000 = 0", ordered=False)
    batches = engine.execute(slow_after_five, batch_rows=5)
    assert isinstance(batches, Generator)
    assert next(batches).num_rows == 5
    batches.close()
    assert _pid(engine) == before
    assert len(_rows(engine, _series(10))) == 10


@pytest.mark.timeout(120)  # a stream that does not stream never returns: fail, not hang
def test_cancel_interrupts_a_fetch_mid_stream(engine: PostgresEngine) -> None:
    """The first batch arrives; the second FETCH waits on a scan that would take minutes; cancel() from another
    thread stops it on the server, execute() raises QueryCanceled, and the same session reads on."""
    before = _pid(engine)
    statement = _series(100_000_000_000, where="g <= 5 OR g %% 100000000000 = 0", ordered=False)
    batches = engine.execute(statement, batch_rows=5)
    assert next(batches).num_rows == 5
    canceller = threading.Timer(0.3, engine.cancel)
    canceller.start()
    try:
        with pytest.raises(QueryCanceled):
            next(batches)
    finally:
        canceller.join()
    assert _pid(engine) == before  # the same session, not a new connection
    assert len(_rows(engine, _series(70_000))) == 70_000


def test_cancel_between_batches_stops_before_the_next_fetch(engine: PostgresEngine) -> None:
    batches = engine.execute(_series(100_000), batch_rows=1_000)
    assert next(batches).num_rows == 1_000
    engine.cancel()
    with pytest.raises(QueryCanceled):
        next(batches)
    assert len(_rows(engine, _series(10))) == 10


def test_a_statement_failing_mid_stream_is_not_retryable_and_the_session_reads_on(
    engine: PostgresEngine,
) -> None:
    """Division by zero at row 150,000: some batches arrive, then the error; the session is the same after."""
    before = _pid(engine)
    statement = _statement(
        'SELECT 1 / (150000 - g) AS "x" FROM generate_series(1, 300000) AS g WHERE g > %s',
        (Column("x", ColumnType.INTEGER),),
        (0,),
    )
    received = 0
    with pytest.raises(WarehouseError) as caught:
        for batch in engine.execute(statement, batch_rows=10_000):
            received += batch.num_rows
    assert received > 0
    assert not caught.value.retryable
    assert "SQLSTATE 22012" in str(caught.value) and "SELECT" not in str(caught.value)
    assert _pid(engine) == before


def test_a_lost_session_is_retryable_and_the_next_read_reconnects(engine: PostgresEngine, url: str) -> None:
    before = _pid(engine)
    batches = engine.execute(_series(1_000_000), batch_rows=1_000)
    next(batches)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (before,))
    with pytest.raises(WarehouseError) as caught:
        for _ in batches:
            pass
    assert caught.value.retryable
    assert _pid(engine) != before


def test_reads_run_in_a_read_only_transaction_on_a_read_only_engine(url: str, engine: PostgresEngine) -> None:
    setting = _statement(
        "SELECT current_setting('transaction_read_only') AS \"ro\"", (Column("ro", ColumnType.STRING),)
    )
    reader = PostgresEngine(url)
    try:
        assert _rows(reader, setting) == [{"ro": "on"}]
        assert _rows(engine, setting) == [{"ro": "off"}]  # a loader's engine reads read-write
    finally:
        reader.close()


def test_interrupt_and_close_from_two_threads_leave_nothing_behind(url: str) -> None:
    """An interrupt in flight while the session closes: the connection closes once, after the interrupt."""
    for _ in range(20):
        session = ArrowSession(url, read_only=True, connect_timeout=5)
        session.interrupt()
        session.close()
        session.interrupt()  # after close: nothing to interrupt
        assert session.closed
    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as admin:
        while time.monotonic() < deadline:
            (left,) = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            ).fetchone() or (0,)
            if left == 0:
                break
            time.sleep(0.1)
    assert left == 0


def test_timestamps_are_naive_utc_whatever_the_server_zone(url: str) -> None:
    """The database's own TimeZone is not UTC: the engine's session still is, so nothing shifts."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {quote_identifier(url.rsplit('/', 1)[1])} SET TimeZone = 'Asia/Tokyo'")
    engine = PostgresEngine(url, read_only=False)
    try:
        engine.ensure_schema(COLUMNS)
        instant = datetime(2020, 2, 29, 23, 30, tzinfo=UTC)
        engine.load(pa.table({"TimeStamp": pa.array([instant], pa.timestamp("us", tz="UTC"))}))
        column = Column("TimeStamp", ColumnType.TIMESTAMP)
        statement = _statement(
            'SELECT "TimeStamp" FROM events WHERE "TimeStamp" = %s',
            (column,),
            (instant.replace(tzinfo=None),),
        )
        assert _rows(engine, statement) == [{"TimeStamp": datetime(2020, 2, 29, 23, 30)}]
    finally:
        engine.close()
