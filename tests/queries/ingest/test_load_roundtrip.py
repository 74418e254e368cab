"""load_events and seed_demo against real warehouses: what goes in comes back through a query, unchanged.

Rows start as Python values (demo sessions), are written to files here by hand, loaded by the command, and
read back through the service's own path: a POST-like body, `query_validate`, `query_compile`, the engine.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from exports.engines import engine_from_url
from exports.engines.base import Statement
from exports.schema import Column, ColumnType, arrow_schema
from queries.catalog import catalog
from queries.compiler import query_compile
from queries.ingest import SEED_FLOW_ID, demo_table
from queries.validation import query_validate
from tests.servers import PostgresServer, SparkServer

WINDOW = {"$gte": "2019-11-01T00:00:00Z", "$lt": "2019-12-01T00:00:00Z"}


@pytest.fixture
def duckdb_url(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"


@pytest.fixture(scope="module")
def source_rows() -> list[dict[str, Any]]:
    """Realistic rows of every event and every field type, two customers."""
    return demo_table(customers=["acme", "globex"], sessions=40, seed=21).to_pylist()


def query_rows(url: str, customer: str, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """What `customer` gets back for `body` (default: every field of every event over November 2019)."""
    if body is None:
        data = {name: {"fields": list(event.fields)} for name, event in catalog().events.items()}
        body = {"timestamp": WINDOW, "data": data}
    engine = engine_from_url(url, lake_path=django_settings.WAREHOUSE_LAKE_PATH)
    try:
        statement = query_compile(query_validate(body), customer_id=customer, dialect=engine.dialect)
        batches = list(engine.execute(statement))
    finally:
        engine.close()
    return pa.Table.from_batches(batches, schema=arrow_schema(statement.columns)).to_pylist()


def row_count(url: str) -> int:
    engine = engine_from_url(url, lake_path=django_settings.WAREHOUSE_LAKE_PATH)
    try:
        statement = Statement(
            sql='SELECT count(*) AS "n" FROM "events"',
            params=(),
            columns=(Column("n", ColumnType.INTEGER),),
            dialect=engine.dialect.name,
        )
        return int(next(iter(engine.execute(statement))).column(0)[0].as_py())
    finally:
        engine.close()


def expected_for(rows: list[dict[str, Any]], customer: str) -> list[dict[str, Any]]:
    """The rows a customer sees, in the service's order: TimeStamp, then load order (a stable sort)."""
    return sorted((r for r in rows if r["CustomerId"] == customer), key=lambda r: r["TimeStamp"])


def load(*args: str) -> tuple[str, str, CommandError | None]:
    """load_events' output, error output and the CommandError it ended with, if any."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("load_events", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue(), exc
    return out.getvalue(), err.getvalue(), None


# -- writing files from Python values (independently of the loader's parser) --------------------------


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds") + "Z"
    return repr(value) if isinstance(value, float) else str(value)


def csv_write(path: Path, rows: list[dict[str, Any]]) -> Path:
    names = list(rows[0])
    lines = [",".join(names)]
    for r in rows:
        cells = ["" if r[n] is None else _text(r[n]) for n in names]
        lines.append(",".join('"' + c.replace('"', '""') + '"' if set(c) & set(',"\n') else c for c in cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ndjson_write(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for r in rows:
            document = {
                k: (_text(v) if isinstance(v, datetime) else v) for k, v in r.items() if v is not None
            }
            handle.write(json.dumps(document) + "\n")
    return path


def parquet_write(path: Path, rows: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


WRITERS = {"csv": csv_write, "ndjson": ndjson_write, "parquet": parquet_write}


# -- DuckDB ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(WRITERS))
def test_loaded_rows_come_back_unchanged(
    tmp_path: Path, duckdb_url: str, source_rows: list[dict[str, Any]], kind: str
) -> None:
    path = WRITERS[kind](tmp_path / f"events.{kind}", source_rows)

    out, err, failure = load(str(path), "--warehouse", duckdb_url)

    assert (out.strip(), err, failure) == (f"loaded {len(source_rows)} rows from {path}", "", None)
    for customer in ("acme", "globex"):
        assert query_rows(duckdb_url, customer) == expected_for(source_rows, customer)


def test_a_bad_file_loads_nothing_while_a_good_one_loads(
    tmp_path: Path, duckdb_url: str, source_rows: list[dict[str, Any]]
) -> None:
    good = csv_write(tmp_path / "good.csv", source_rows[:10])
    broken = {**source_rows[10], "TimeStamp": "not a time"}  # on the file's last line
    bad = csv_write(tmp_path / "bad.csv", [*source_rows[10:], broken])
    bad_line = 1 + len(source_rows[10:]) + 1  # the header, the good rows, then the broken one

    out, err, failure = load(str(bad), str(good), "--warehouse", duckdb_url)

    assert str(failure) == f"1 of 2 files rejected: {bad}"
    assert err.startswith(f"rejected {bad}: {bad}:{bad_line}: TimeStamp: not an ISO 8601 timestamp")
    assert out.strip() == f"loaded 10 rows from {good}"
    assert row_count(duckdb_url) == 10
    for customer in ("acme", "globex"):
        assert query_rows(duckdb_url, customer) == expected_for(source_rows[:10], customer)


def test_the_command_exits_non_zero_without_a_traceback(tmp_path: Path, duckdb_url: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("EventName,Colour\n")
    manage = Path(__file__).resolve().parents[3] / "manage.py"
    done = subprocess.run(
        [sys.executable, str(manage), "load_events", str(bad), "--warehouse", duckdb_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert f"rejected {bad}: {bad}:1: Colour: not a field of any event in the catalog" in done.stderr
    assert "Traceback" not in done.stderr


def test_seeded_rows_come_back_and_answer_the_seed_documents_example(duckdb_url: str) -> None:
    out = io.StringIO()
    call_command("seed_demo", "--sessions", "60", "--seed", "3", "--warehouse", duckdb_url, stdout=out)

    generated = demo_table(sessions=60, seed=3).to_pylist()
    assert out.getvalue().startswith(f"loaded {len(generated)} rows: 60 sessions of acme, globex, initech")
    for customer in ("acme", "globex", "initech"):
        assert query_rows(duckdb_url, customer) == expected_for(generated, customer)
    example = {
        "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
        "data": {"ApplicationExitEvent": {"fields": ["FlowId", "ExitReason"]}},
        "filters": {"ApplicationExitEvent": {"FlowId": {"$eq": SEED_FLOW_ID}}},
    }
    exits = query_rows(duckdb_url, "acme", example)
    assert exits and {r["FlowId"] for r in exits} == {SEED_FLOW_ID}


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("seed_demo", ["--sessions", "-1"], "--sessions must be 0 or more"),
        ("seed_demo", ["--sessions", "1", "--days", "0"], "--days must be 1 or more"),
        ("seed_demo", ["--sessions", "1", "--start", "25/11/2019"], "--start: '25/11/2019' is not a date"),
        ("seed_demo", ["--sessions", "1", "--customer-keys", "a,a"], "each key may appear only once"),
        ("seed_demo", ["--sessions", "1", "--customers", "2", "--customer-keys", "a"], "does not match"),
        ("seed_demo", ["--sessions", "1", "--warehouse", "oracle://x"], "unsupported warehouse URL scheme"),
        ("load_events", ["x.csv", "--warehouse", "oracle://x"], "unsupported warehouse URL scheme"),
        ("load_events", [], "the following arguments are required: PATH"),
    ],
)
def test_usage_errors_are_command_errors(command: str, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command(command, *args, stdout=io.StringIO(), stderr=io.StringIO())


def test_customer_keys_override_the_demo_customers(duckdb_url: str) -> None:
    call_command(
        "seed_demo",
        "--sessions",
        "20",
        "--customer-keys",
        "north,south",
        "--warehouse",
        duckdb_url,
        stdout=io.StringIO(),
    )
    assert query_rows(duckdb_url, "north") and query_rows(duckdb_url, "south")
    assert query_rows(duckdb_url, "acme") == []


@pytest.mark.django_db
def test_create_customers_adds_the_missing_ones_once(duckdb_url: str) -> None:
    from insights.models import Customer

    for _ in range(2):
        args = ["--sessions", "5", "--customers", "2", "--create-customers", "--warehouse", duckdb_url]
        call_command("seed_demo", *args, stdout=io.StringIO())
    assert list(Customer.objects.order_by("key").values_list("key", "name")) == [
        ("acme", "Acme Corporation"),
        ("globex", "Globex Corporation"),
    ]


# -- PostgreSQL -----------------------------------------------------------------------------------------


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    yield postgres.create_database("load_roundtrip")


@pytest.mark.postgres
def test_postgres_loads_all_or_nothing_and_gives_rows_back(
    tmp_path: Path, postgres_url: str, source_rows: list[dict[str, Any]]
) -> None:
    good = ndjson_write(tmp_path / "good.ndjson", source_rows)
    bad = ndjson_write(tmp_path / "bad.ndjson", [*source_rows[:5], {**source_rows[0], "Ani": "\x00"}])

    _, err, failure = load(str(good), str(bad), "--warehouse", postgres_url)

    assert str(failure) == f"1 of 2 files rejected: {bad}"
    assert err.startswith(f"rejected {bad}: {bad}:6: Ani: contains a NUL character")
    assert row_count(postgres_url) == len(source_rows)
    for customer in ("acme", "globex"):
        assert query_rows(postgres_url, customer) == expected_for(source_rows, customer)


# -- Spark: a Parquet lake behind the session's Spark Connect server --------------------------------------


@pytest.fixture
def spark_url(spark_connect: SparkServer, settings: Any, tmp_path: Path) -> str:
    """The Spark Connect server's URL, with a lake of this test's own: the commands take the lake from
    WAREHOUSE_LAKE_PATH, as a deployment configures it."""
    settings.WAREHOUSE_LAKE_PATH = str(tmp_path / "lake")
    return spark_connect.url


def test_spark_loads_files_all_or_nothing_and_gives_rows_back(
    tmp_path: Path, spark_url: str, source_rows: list[dict[str, Any]]
) -> None:
    """load_events through the Spark engine: a rejected file loads nothing; the good file's rows come back
    unchanged, each customer's under partitions of its own, one per UTC day."""
    good = parquet_write(tmp_path / "good.parquet", source_rows)
    bad = ndjson_write(tmp_path / "bad.ndjson", [*source_rows[:5], {**source_rows[0], "CustomerId": ""}])

    out, err, failure = load(str(bad), str(good), "--warehouse", spark_url)

    assert str(failure) == f"1 of 2 files rejected: {bad}"
    assert err.startswith(f"rejected {bad}: {bad}:6: CustomerId: required, but empty")
    assert out.strip() == f"loaded {len(source_rows)} rows from {good}"
    assert row_count(spark_url) == len(source_rows)
    for customer in ("acme", "globex"):
        assert query_rows(spark_url, customer) == expected_for(source_rows, customer)
        days = {r["TimeStamp"].date().isoformat() for r in source_rows if r["CustomerId"] == customer}
        partitions = Path(django_settings.WAREHOUSE_LAKE_PATH) / "events" / f"CustomerId={customer}"
        assert {p.name for p in partitions.iterdir()} == {f"_event_date={day}" for day in days}


def test_spark_seed_demo_loads_once_and_answers_the_seed_documents_example(spark_url: str) -> None:
    out, again = io.StringIO(), io.StringIO()
    args = ["--sessions", "30", "--seed", "3", "--if-empty", "--warehouse", spark_url]

    call_command("seed_demo", *args, stdout=out)  # the lake is empty: it loads
    call_command("seed_demo", *args, stdout=again)  # what `make run` does on each start

    generated = demo_table(sessions=30, seed=3).to_pylist()
    assert out.getvalue().startswith(f"loaded {len(generated)} rows: 30 sessions of acme, globex, initech")
    assert again.getvalue().strip() == "the warehouse already holds events: nothing loaded"
    assert row_count(spark_url) == len(generated)
    for customer in ("acme", "globex", "initech"):
        assert query_rows(spark_url, customer) == expected_for(generated, customer)
    example = {
        "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
        "data": {"ApplicationExitEvent": {"fields": ["FlowId", "ExitReason"]}},
        "filters": {"ApplicationExitEvent": {"FlowId": {"$eq": SEED_FLOW_ID}}},
    }
    exits = query_rows(spark_url, "acme", example)
    assert exits and {r["FlowId"] for r in exits} == {SEED_FLOW_ID}
