"""The service over HTTP on the Spark shape: gunicorn and a real Celery worker whose warehouse is the session's
Spark Connect server (WAREHOUSE_URL=sc://..., a Parquet lake under WAREHOUSE_LAKE_PATH), with PostgreSQL
metadata and a Redis broker. The lake is seeded by `manage.py seed_demo` through the Spark engine; a DuckDB file
seeded by the same command and arguments holds the same rows, and each result downloaded from the service must
be, byte for byte, the CSV of the same query run on DuckDB."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exports.engines import engine_from_url
from exports.writers.csv_gzip import csv_header, csv_rows
from queries.compiler import query_compile
from queries.ingest import DEMO_CUSTOMER_KEYS
from queries.validation import query_validate
from tests.seed_requests import REQUEST_1, REQUEST_2
from tests.service import DEMO_SEED, Service, service_running, spark_shape

DAY = {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-26T00:00:00Z"}
MULTI_EVENT: dict[str, Any] = {
    "timestamp": DAY,
    "data": {
        "ApplicationExitEvent": {"fields": ["ExitReason", "FlowId", "EndTime"]},
        "DtmfEvent": {"fields": ["DtmfInput", "SessionId"]},
        "CallEvent": {"fields": ["Ani", "FlowId", "Duration", "SipResponseCode", "IsTriggerAction"]},
        "MsgEvent": {"fields": ["To", "MessageType", "Segments"]},
    },
}
SCOPED: dict[str, Any] = {
    "timestamp": DAY,
    "data": {
        "CallEvent": {"fields": ["SessionId", "DisconnectReason", "Duration"]},
        "ApplicationExitEvent": {"fields": ["SessionId", "ExitReason"]},
    },
    "scope": {"filters": {"DtmfEvent": {"DtmfInput": {"$in": ["1", "2"]}}}, "scope": "SessionId"},
    "filters": {"ApplicationExitEvent": {"ExitReason": {"$ne": "Normal"}}},
}
CALLS: dict[str, Any] = {
    "timestamp": DAY,
    "data": {"CallEvent": {"fields": ["SessionId", "DisconnectReason", "Duration"]}},
    "filters": {"CallEvent": {"Duration": {"$gte": 5}}},
}
QUERIES = {
    "request-1": (REQUEST_1, DEMO_CUSTOMER_KEYS[0]),
    "request-2": (REQUEST_2, DEMO_CUSTOMER_KEYS[0]),
    "multi-event": (MULTI_EVENT, DEMO_CUSTOMER_KEYS[1]),
    "scoped": (SCOPED, DEMO_CUSTOMER_KEYS[0]),
}


@pytest.fixture(scope="module")
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    var_dir = tmp_path_factory.mktemp("service-spark")
    shape = spark_shape(
        request.getfixturevalue("postgres"),
        request.getfixturevalue("redis"),
        request.getfixturevalue("spark_connect"),
        var_dir,
        "spark_e2e",
    )
    # A preview runs in the web process: its first Spark session there takes seconds on a busy machine.
    with service_running(
        shape=shape, var_dir=var_dir, extra_env={"PREVIEW_TIME_LIMIT_SECONDS": "120"}
    ) as running:
        running.worker_start()
        yield running


@pytest.fixture(scope="module")
def duckdb_url(service: Service) -> str:
    """The same demo rows in a DuckDB file: the command and arguments that seeded the lake."""
    url = f"duckdb:///{service.var_dir / 'reference.duckdb'}"
    service.manage(*DEMO_SEED, "--warehouse", url)
    return url


@pytest.fixture(scope="module")
def keys(service: Service) -> dict[str, str]:
    return {customer: service.customer_create(customer) for customer in DEMO_CUSTOMER_KEYS[:2]}


def duckdb_csv(url: str, body: dict[str, Any], customer: str) -> str:
    """The CSV the writer makes of `body`'s rows for `customer`, read from DuckDB (header row first)."""
    engine = engine_from_url(url)
    try:
        statement = query_compile(query_validate(body), customer_id=customer, dialect=engine.dialect)
        lines = [csv_header([column.name for column in statement.columns]).decode()]
        for batch in engine.execute(statement):
            lines += csv_rows(batch, statement.columns).to_pylist()
    finally:
        engine.close()
    return "".join(lines)


def exported_csv(service: Service, key: str, body: dict[str, Any]) -> tuple[str, str]:
    """POST `body`, poll until it ends, download its one part: (guid, the CSV)."""
    posted = service.request("POST", "/_rest/v4/dwh/Q", key=key, body=body)
    assert posted.status == 201, posted.body
    guid = posted.json()["id"]
    status = service.wait_terminal(guid, key, timeout=300)
    assert status["status"] == "Completed", status
    files = service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=key).json()["files"]
    assert len(files) == 1, files  # a part holds 1 GB by default
    download = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/download/0", key=key)
    assert download.status == 200, download.body[:300]
    return guid, gzip.decompress(download.body).decode("utf-8")


@pytest.mark.parametrize("name", list(QUERIES))
def test_an_export_through_spark_equals_the_same_query_on_duckdb(
    service: Service, duckdb_url: str, keys: dict[str, str], name: str
) -> None:
    body, customer = QUERIES[name]
    expected = duckdb_csv(duckdb_url, body, customer)
    assert expected.count("\n") > 1, "the demo rows must answer the query"

    _, exported = exported_csv(service, keys[customer], body)

    assert exported == expected


def test_preview_and_summaries_through_spark_agree_with_the_export(
    service: Service, duckdb_url: str, keys: dict[str, str]
) -> None:
    """The preview and the warehouse-computed summary run in the web process, on its own Spark session; the
    export's summary is counted by the worker over the batches it wrote."""
    key = keys[DEMO_CUSTOMER_KEYS[0]]
    guid, exported = exported_csv(service, key, CALLS)
    assert exported == duckdb_csv(duckdb_url, CALLS, DEMO_CUSTOMER_KEYS[0])
    lines = [line.split(",") for line in exported.splitlines()]

    preview = service.request("POST", "/_rest/v4/dwh/Q/preview", key=key, body={**CALLS, "limit": "5"})
    assert preview.status == 200, preview.body
    assert [row["SessionId"] for row in preview.json()["data"]] == [line[0] for line in lines[1:6]]

    counted = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/summary", key=key)
    computed = service.request("POST", "/_rest/v4/dwh/summary", key=key, body=CALLS)
    assert counted.status == computed.status == 200, (counted.body, computed.body)
    summary, warehouse = counted.json(), computed.json()
    assert summary["rows"] == len(lines) - 1 == warehouse["rows"]
    assert summary["call_duration"]["sum"] == pytest.approx(warehouse["call_duration"]["sum"], rel=1e-12)
    for figures in (summary, warehouse):
        figures["call_duration"].pop("sum"), figures["call_duration"].pop("mean")
    assert summary == warehouse
    assert summary["unique_sessions_count"] == len({line[0] for line in lines[1:]})


def test_the_lake_holds_each_customers_rows_under_its_own_days(service: Service) -> None:
    """seed_demo wrote through the Spark engine: one directory per customer, one per UTC day under it, and
    one committed load per batch."""
    lake = Path(service.env["WAREHOUSE_LAKE_PATH"])
    customers = sorted(p.name for p in (lake / "events").iterdir() if p.is_dir())
    assert customers == [f"CustomerId={key}" for key in sorted(DEMO_CUSTOMER_KEYS[:3])]
    days = sorted(p.name for p in (lake / "events" / f"CustomerId={DEMO_CUSTOMER_KEYS[0]}").iterdir())
    assert days == ["_event_date=2019-11-25", "_event_date=2019-11-26"]
    assert list((lake / "loads").glob("*.parquet"))
