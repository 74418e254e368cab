"""The hourly event counts (exports.engines.counts) on DuckDB (a temporary file) and PostgreSQL (the test server):
every load keeps them exactly the rows of `events` per customer, event and hour, a failed load changes neither,
and `ensure_schema` gives a warehouse loaded before they existed (or not marked complete) its counts.

The expected counts are made here in Python from the rows read back, hours by Python's own calendar, so that
they are a reading independent of the engines' date_trunc."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pytest

from exports.engines import engine_from_url
from exports.engines import postgres as postgres_module
from exports.engines.base import Statement, WarehouseEngine
from exports.engines.counts import COUNTS_TABLE, STATE_TABLE
from exports.errors import WarehouseError
from exports.schema import Column, ColumnType, arrow_schema
from queries.catalog import catalog

COLUMNS = catalog().warehouse_columns()
_databases = itertools.count()
HOURS = [
    datetime(1969, 12, 31, 23),
    datetime(2019, 11, 25, 0),
    datetime(2019, 11, 25, 1),
    datetime(2024, 2, 29, 23),
]
OFFSETS = [
    timedelta(0),
    timedelta(microseconds=1),
    timedelta(minutes=30),
    timedelta(hours=1, microseconds=-1),
]
INSTANTS = [hour + offset for hour in HOURS for offset in OFFSETS]


@pytest.fixture(params=["duckdb", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb://{tmp_path / 'warehouse.duckdb'}"
    return str(request.getfixturevalue("postgres").create_database(f"counts_{next(_databases)}"))


@pytest.fixture
def writer(url: str) -> Iterator[WarehouseEngine]:
    engine = engine_from_url(url, read_only=False)
    engine.ensure_schema(COLUMNS)
    yield engine
    engine.close()


def _rows(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Rows on and beside hour boundaries, a NULL in a key now and then (never counted)."""
    return [
        {
            "CustomerId": rng.choice(["c1", "c2", "c2", None]),
            "EventName": rng.choice(["CallEvent", "DtmfEvent", "MsgEvent", None]),
            "TimeStamp": rng.choice([*INSTANTS, None]),
            "Ani": rng.choice(["x", None]),
        }
        for _ in range(count)
    ]


def _table(
    rows: list[dict[str, Any]], names: tuple[str, ...] = ("CustomerId", "EventName", "TimeStamp", "Ani")
) -> pa.Table:
    columns = tuple(c for c in COLUMNS if c.name in names)
    return pa.Table.from_pylist(
        [{n: row.get(n) for n in names} for row in rows], schema=arrow_schema(columns)
    )


def _select(engine: WarehouseEngine, sql: str, columns: tuple[Column, ...]) -> list[tuple[Any, ...]]:
    statement = Statement(sql=sql, params=(), columns=columns, dialect=engine.dialect.name)
    return [tuple(row.values()) for batch in engine.execute(statement) for row in batch.to_pylist()]


def _stored_counts(engine: WarehouseEngine) -> Counter[tuple[Any, ...]]:
    columns = (
        Column("CustomerId", ColumnType.STRING),
        Column("EventName", ColumnType.STRING),
        Column("Hour", ColumnType.TIMESTAMP),
        Column("Rows", ColumnType.INTEGER),
    )
    rows = _select(engine, f'SELECT "CustomerId", "EventName", "Hour", "Rows" FROM "{COUNTS_TABLE}"', columns)
    assert all(count > 0 for *_, count in rows)
    return Counter({tuple(key): count for *key, count in rows})


def _expected_counts(engine: WarehouseEngine) -> Counter[tuple[Any, ...]]:
    """From the events themselves, hours by Python's calendar."""
    columns = (
        Column("CustomerId", ColumnType.STRING),
        Column("EventName", ColumnType.STRING),
        Column("TimeStamp", ColumnType.TIMESTAMP),
    )
    events = _select(engine, 'SELECT "CustomerId", "EventName", "TimeStamp" FROM "events"', columns)
    return Counter(
        (customer, event, stamp.replace(minute=0, second=0, microsecond=0))
        for customer, event, stamp in events
        if customer is not None and event is not None and stamp is not None
    )


def test_every_load_keeps_the_counts_exact(writer: WarehouseEngine) -> None:
    rng = random.Random(16)
    assert writer.event_counts_ready() and _stored_counts(writer) == Counter()
    for size in (1, 40, 200, 7):
        writer.load(_table(_rows(rng, size)))
        assert _stored_counts(writer) == _expected_counts(writer)
    # A load of some columns only (the others are NULL: such rows count only if their keys are all there).
    writer.load(_table(_rows(rng, 30), names=("CustomerId", "TimeStamp", "Ani")))
    writer.load(_table(_rows(rng, 30), names=("TimeStamp", "EventName", "CustomerId")))
    stored = _stored_counts(writer)
    assert stored == _expected_counts(writer) and sum(stored.values()) > 100
    assert writer.event_counts_ready()


def test_a_failed_load_changes_neither_events_nor_counts(writer: WarehouseEngine) -> None:
    writer.load(_table(_rows(random.Random(1), 50)))
    before = _stored_counts(writer)
    with pytest.raises(WarehouseError, match="does not convert"):
        writer.load(
            pa.table(
                {"CustomerId": ["c1", "c1"], "EventName": ["CallEvent"] * 2, "TimeStamp": ["2020-01-01", "x"]}
            )
        )
    assert _stored_counts(writer) == before == _expected_counts(writer)


@pytest.mark.postgres
def test_a_postgres_load_failing_mid_copy_adds_no_counts(
    postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_from_url(postgres.create_database("counts_mid_copy"), read_only=False)
    engine.ensure_schema(COLUMNS)
    engine.load(_table(_rows(random.Random(2), 20)))
    before = _stored_counts(engine)
    monkeypatch.setattr(postgres_module, "_COPY_ROWS", 2)  # several COPY chunks reach the server first
    rows = [{"CustomerId": "c1", "EventName": "CallEvent", "TimeStamp": HOURS[1], "Ani": "ok"}] * 7
    rows.append({"CustomerId": "c1", "EventName": "CallEvent", "TimeStamp": HOURS[1], "Ani": "nul \x00"})
    with pytest.raises(WarehouseError):
        engine.load(_table(rows))
    assert _stored_counts(engine) == before == _expected_counts(engine)
    engine.close()


def _sql(url: str, *statements: str) -> None:
    """Statements of our own, outside the engine (an older warehouse, a hand-made change)."""
    if url.startswith("duckdb"):
        with duckdb.connect(url.removeprefix("duckdb://")) as conn:
            for sql in statements:
                conn.execute(sql)
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)


def test_ensure_schema_gives_a_warehouse_without_counts_its_counts(url: str) -> None:
    engine = engine_from_url(url, read_only=False)
    engine.ensure_schema(COLUMNS)
    engine.load(_table(_rows(random.Random(3), 120)))
    engine.close()
    # A warehouse loaded before the counts existed: the events table alone.
    _sql(url, f'DROP TABLE "{COUNTS_TABLE}"', f'DROP TABLE "{STATE_TABLE}"')
    engine = engine_from_url(url, read_only=False)
    try:
        assert not engine.event_counts_ready()
        with pytest.raises(WarehouseError, match="run ensure_schema first"):  # never a load they would miss
            engine.load(_table(_rows(random.Random(4), 5)))
        engine.ensure_schema(COLUMNS)
        assert engine.event_counts_ready()
        assert _stored_counts(engine) == _expected_counts(engine) and sum(_stored_counts(engine).values()) > 0
    finally:
        engine.close()


def test_counts_not_marked_complete_are_made_again(url: str) -> None:
    engine = engine_from_url(url, read_only=False)
    engine.ensure_schema(COLUMNS)
    engine.load(_table(_rows(random.Random(5), 120)))
    engine.close()
    _sql(
        url,
        f'UPDATE "{COUNTS_TABLE}" SET "Rows" = "Rows" + 1000',
        f'UPDATE "{STATE_TABLE}" SET "complete" = FALSE',
    )
    engine = engine_from_url(url, read_only=False)
    try:
        assert not engine.event_counts_ready()
        engine.ensure_schema(COLUMNS)
        assert engine.event_counts_ready() and _stored_counts(engine) == _expected_counts(engine)
    finally:
        engine.close()


def test_a_read_only_engine_sees_the_counts_ready(url: str) -> None:
    writer = engine_from_url(url, read_only=False)
    writer.ensure_schema(COLUMNS)
    writer.load(_table(_rows(random.Random(6), 10)))
    writer.close()  # DuckDB: one read-write process per file
    reader = engine_from_url(url)
    try:
        assert reader.event_counts_ready()
    finally:
        reader.close()


def test_a_read_only_duckdb_engine_asks_once_per_connection(tmp_path: Path) -> None:
    """Nothing can write a DuckDB file a process holds open: the answer holds for the connection's life, and a
    new connection (after a loader changed the file) asks again."""
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    writer = engine_from_url(url, read_only=False)
    writer.ensure_schema(COLUMNS)
    writer.close()
    reader = engine_from_url(url)
    statements: list[str] = []
    real = reader.execute

    def execute(statement, **kwargs):
        statements.append(statement.sql)
        return real(statement, **kwargs)

    reader.execute = execute  # type: ignore[method-assign]
    try:
        assert reader.event_counts_ready() and reader.event_counts_ready()
        assert len(statements) == 2  # the two catalog reads, once
        reader.close()
        _sql(url, f'UPDATE "{STATE_TABLE}" SET "complete" = FALSE')
        assert not reader.event_counts_ready()  # a new connection: asked again
    finally:
        reader.close()
