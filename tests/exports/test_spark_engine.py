"""What only the Spark engine has: a partitioned Parquet lake (pruning, commit markers) behind Spark Connect.

The engine contract itself (types, loads, cancel, errors) runs on Spark in test_engines.py."""

from __future__ import annotations

import os
import signal
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from exports.engines import engine_from_url
from exports.engines import spark as spark_module
from exports.engines.base import Statement
from exports.engines.spark import SparkEngine
from exports.errors import QueryCanceled, WarehouseError
from exports.schema import Column, ColumnType
from queries.catalog import catalog
from queries.compiler import query_compile
from queries.validation import query_validate

COLUMNS = catalog().warehouse_columns()
DAY = datetime(2024, 3, 1)


def _events(customer: str, days: int, per_day: int = 3) -> list[dict[str, Any]]:
    return [
        {
            "CustomerId": customer,
            "EventName": "CallEvent",
            "SessionId": f"{customer}-{d}",
            "TimeStamp": DAY + timedelta(days=d, hours=h),
            "Duration": float(h),
        }
        for d in range(days)
        for h in range(per_day)
    ]


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    names = ("CustomerId", "EventName", "SessionId", "TimeStamp", "Duration")
    schema = pa.schema([pa.field(c.name, c.type.arrow) for c in COLUMNS if c.name in names])
    return pa.Table.from_pylist(rows, schema=schema)


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def writer(spark_connect: Any, lake: Path) -> Any:
    engine = engine_from_url(spark_connect.url, read_only=False, lake_path=str(lake))
    assert isinstance(engine, SparkEngine)
    engine.ensure_schema(COLUMNS)
    yield engine
    engine.close()


def _one_day_query(engine: SparkEngine, customer: str) -> Statement:
    body = {
        "timestamp": {"$gte": "2024-03-02T00:00:00Z", "$lt": "2024-03-03T00:00:00Z"},
        "data": {"CallEvent": {"fields": ["SessionId", "Duration"]}},
    }
    return query_compile(query_validate(body), customer_id=customer, dialect=engine.dialect)


def _rows(engine: SparkEngine, statement: Statement) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for batch in engine.execute(statement) for r in batch.to_pylist()]


def test_a_query_reads_only_its_customers_partitions_for_its_days(writer: SparkEngine, lake: Path) -> None:
    writer.load(_table(_events("acme", days=4) + _events("globex", days=4)))
    statement = _one_day_query(writer, "acme")
    plan = writer.explain(statement)
    partition_filters = next(line for line in plan.splitlines() if "PartitionFilters" in line)
    assert "CustomerId" in partition_filters and "_event_date" in partition_filters, plan
    # The plan says so; the files prove it: every other partition's files are now garbage, and the query
    # still runs, because it never opens them.
    others = [p for p in (lake / "events").rglob("*.parquet") if "acme/_event_date=2024-03-02" not in str(p)]
    assert len(others) >= 7
    for path in others:
        path.write_bytes(b"not parquet")
    assert _rows(writer, statement) == [("acme-1", 0.0), ("acme-1", 1.0), ("acme-1", 2.0)]


def test_an_empty_customer_id_is_refused_before_anything_is_written(writer: SparkEngine, lake: Path) -> None:
    with pytest.raises(WarehouseError, match="empty CustomerId"):
        writer.load(_table([{**_events("acme", 1)[0], "CustomerId": ""}]))
    assert not (lake / "events").exists()


def test_a_load_failing_half_way_leaves_files_nobody_reads(
    writer: SparkEngine, lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All or nothing by the commit marker: the failed load's first chunk is on disk, yet no query sees it,
    and the next load's row ids continue from the last committed one."""
    writer.load(_table(_events("acme", days=1)))
    monkeypatch.setattr(spark_module, "_LOAD_ROWS", 2)
    real_write, calls = SparkEngine._write_rows, []

    def write_then_fail(self: SparkEngine, *args: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the cluster went away mid-load")
        real_write(self, *args)

    monkeypatch.setattr(SparkEngine, "_write_rows", write_then_fail)
    with pytest.raises(WarehouseError):
        writer.load(_table(_events("globex", days=2)))
    assert any("globex" in str(p) for p in (lake / "events").rglob("*.parquet"))
    monkeypatch.undo()

    everything = Statement(
        sql='SELECT "CustomerId", "_row_id" FROM "events" ORDER BY "_row_id"',
        params=(),
        columns=(Column("CustomerId", ColumnType.STRING), Column("_row_id", ColumnType.INTEGER)),
        dialect="spark",
    )
    assert _rows(writer, everything) == [("acme", 1), ("acme", 2), ("acme", 3)]
    writer.load(_table(_events("initech", days=1, per_day=1)))
    assert _rows(writer, everything)[-1] == ("initech", 4)


def _count(sql: str) -> Statement:
    return Statement(
        sql=f'SELECT count(*) AS "n" FROM {sql} WHERE id = :p1',
        params=(-1,),
        columns=(Column("n", ColumnType.INTEGER),),
        dialect="spark",
    )


# Two tasks of 5 * 10^11 rows each: a quarter of an hour or more of both local[2] cores, were they left to run.
_HOLDS_BOTH_CORES = _count("range(1000000000000)")
_NEEDS_A_CORE = _count("range(0, 4000000, 1, 4)")  # four small tasks: about a second on a free core
_FREED_WITHIN_SECONDS = 180  # a liveness bound, far below what the canceled tasks would hold the cores for


class _ReadWentOn(BaseException):
    """Raised in the reading thread when a stop did not end the read (a BaseException: no engine turns it into
    one of its own errors)."""


@pytest.mark.parametrize("stop", ["cancel", "soft_time_limit"])
def test_a_stopped_statement_frees_the_executor_cores_for_the_next_query(
    writer: SparkEngine, spark_connect: Any, lake: Path, stop: str
) -> None:
    """However an export stops, its statement's running tasks are killed, not only the wait for them, so
    another worker's query (a session of its own) gets the cores at once instead of waiting for the stopped
    tasks to end on their own. `cancel`: what the worker's supervisor does on a DELETE, a lost lease or the
    time limit (the operation is interrupted by its tag; Spark Connect runs jobs with interruptOnCancel).
    `soft_time_limit`: Celery's backstop, SIGUSR1 to the pool process, whose handler raises
    SoftTimeLimitExceeded inside the engine's read; it must reach the runner as itself (a time limit, not a
    warehouse failure), and the server's work must stop all the same."""
    from celery.exceptions import SoftTimeLimitExceeded
    from pyspark.sql.connect.shell.progress import ProgressHandler

    both_cores_busy = threading.Event()

    class Progress(ProgressHandler):
        def __call__(self, stages: Any, inflight_tasks: int, operation_id: Any, done: bool) -> None:
            if inflight_tasks >= 2 and not done:
                both_cores_busy.set()

    def soft_time_limit(signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded()

    def read_went_on(signum: int, frame: Any) -> None:
        raise _ReadWentOn("the export was stopped, yet its read went on")

    busy: list[bool] = []
    read_ended = threading.Event()

    def stop_once_busy() -> None:
        busy.append(both_cores_busy.wait(120))
        if stop == "cancel":
            writer.cancel()
        else:
            os.kill(os.getpid(), signal.SIGUSR1)
        if not read_ended.wait(60):  # fail now rather than when the statement ends by itself
            os.kill(os.getpid(), signal.SIGUSR2)

    writer._connection().registerProgressHandler(Progress())
    handlers = {signal.SIGUSR1: soft_time_limit, signal.SIGUSR2: read_went_on}
    previous = {number: signal.signal(number, handler) for number, handler in handlers.items()}
    stopper = threading.Thread(target=stop_once_busy, daemon=True)
    stopper.start()
    try:
        with pytest.raises(QueryCanceled if stop == "cancel" else SoftTimeLimitExceeded):
            for _ in writer.execute(_HOLDS_BOTH_CORES):  # in this (the main) thread, as in a pool process
                pass
    finally:
        read_ended.set()
        stopper.join()
        for number, handler in previous.items():
            signal.signal(number, handler)
    assert busy == [True], "the statement never held both cores"

    other = SparkEngine(spark_connect.url, lake_path=str(lake))
    answers: list[list[tuple[Any, ...]]] = []
    querying = threading.Thread(target=lambda: answers.append(_rows(other, _NEEDS_A_CORE)), daemon=True)
    querying.start()
    querying.join(_FREED_WITHIN_SECONDS)
    other.close()
    assert answers == [[(0,)]], "the stopped statement's tasks still hold the executor's cores"


def test_ping_answers_on_a_live_server(spark_connect: Any, lake: Path) -> None:
    SparkEngine(spark_connect.url, lake_path=str(lake)).ping()


def test_a_lost_server_is_a_retryable_error_naming_no_address(lake: Path) -> None:
    engine = engine_from_url("sc://127.0.0.1:1/;token=hunter2", lake_path=str(lake))
    statement = _one_day_query(engine, "acme")  # type: ignore[arg-type]
    with pytest.raises(WarehouseError) as caught:
        list(engine.execute(statement))
    assert caught.value.retryable
    with pytest.raises(WarehouseError) as pinged:
        engine.ping()
    assert pinged.value.retryable
    for error in (caught.value, pinged.value):
        assert "hunter2" not in str(error) and "127.0.0.1" not in str(error)


def test_the_engine_is_chosen_by_the_sc_scheme_and_needs_a_lake(tmp_path: Path) -> None:
    assert isinstance(engine_from_url("sc://spark:15002", lake_path=str(tmp_path)), SparkEngine)
    with pytest.raises(ValueError, match="WAREHOUSE_LAKE_PATH"):
        engine_from_url("sc://spark:15002")


def test_the_compiler_binds_named_parameters_and_bounds_the_days() -> None:
    statement = _one_day_query(SparkEngine("sc://spark:15002", lake_path="/lake"), "acme")
    assert "acme" not in statement.sql and "2024" not in statement.sql
    assert '"_event_date" >= :p4 AND "_event_date" <= :p5' in statement.sql
    assert statement.params[0] == "acme" and statement.params[5] == "CallEvent"
    assert statement.params[3:5] == (DAY.date() + timedelta(days=1),) * 2  # $lt midnight: not the next day
    assert statement.unordered is None  # named positions would shift in the keys-only form
