"""A sliced export run by the real runner on DuckDB and on Spark (a real Spark Connect server): the slices, in
whatever order workers take them, publish the same part files byte for byte and the same manifest, and the
rows are those of the export written whole. (The same over HTTP with real Celery workers on PostgreSQL and
DuckDB: tests/test_slices_e2e.py.)"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest

from exports.engines.spark import SparkEngine
from queries.catalog import catalog
from queries.dispatch import SLICE_TASK
from queries.ingest import demo_table
from queries.models import QueryRequest, QuerySlice, QueryStatus
from queries.runner import query_run
from queries.slice_runner import slice_run

pytestmark = pytest.mark.django_db(transaction=True)  # the runner's threads have connections of their own

BODY = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-27T00:00:00Z"},
    "data": {
        "CallEvent": {"fields": ["TimeStamp", "SessionId", "Duration", "DisconnectReason"]},
        "MsgEvent": {"fields": ["TimeStamp", "FlowId"]},
    },
}


@pytest.fixture(params=["duckdb", "spark"])
def engine_warehouse(
    request: pytest.FixtureRequest, settings: Any, local_exports: Path, tmp_path: Path
) -> str:
    """The demo warehouse on the engine, made the service's; small parts, so that slices write several."""
    settings.EXPORT_PART_BYTES = 2048
    if request.param == "duckdb":
        request.getfixturevalue("demo_warehouse")
        return "duckdb"
    server = request.getfixturevalue("spark_connect")
    lake = tmp_path / "lake"
    engine = SparkEngine(server.url, lake_path=str(lake), read_only=False)
    try:
        engine.ensure_schema(catalog().warehouse_columns())
        engine.load(demo_table(customers=["acme", "globex"], sessions=600, seed=5))
    finally:
        engine.close()
    settings.WAREHOUSE_URL, settings.WAREHOUSE_LAKE_PATH = server.url, str(lake)
    return "spark"


def _export(customer: Any, sent: list[tuple[str, tuple, Any]], *, order: str) -> dict[str, Any]:
    """POST the body, run the query, then its slices (if it was cut) in `order`, as one worker would."""
    from queries.services import query_create

    query = query_create(customer=customer, body=BODY)
    sent.clear()
    query_run(query_id=query.pk)
    slices = [args[0] for name, args, _ in sent if name == SLICE_TASK]
    for slice_id in slices if order == "forward" else reversed(slices):
        slice_run(slice_id=slice_id)
    query.refresh_from_db()
    assert query.status == QueryStatus.COMPLETED, query.messages
    root = Path(local_exports_root())
    parts = [(root / entry["path"]).read_bytes() for entry in query.files]
    manifest = json.loads((root / query.manifest_path).read_bytes())
    return {"query": query, "slices": len(slices), "parts": parts, "manifest": manifest}


def local_exports_root() -> str:
    from django.conf import settings

    return str(settings.EXPORT_LOCAL_DIR)


def _rows(export: dict[str, Any]) -> list[str]:
    return [line for part in export["parts"] for line in gzip.decompress(part).decode().splitlines()[1:]]


def _anonymous(export: dict[str, Any]) -> str:
    """The manifest without what names this very query: its guid, its creation time, its parts' epoch."""
    guid = export["query"].guid
    text = json.dumps({**export["manifest"], "created_at": None}).replace(guid, "GUID")
    return re.sub(r"_QueryExport_\d+__", "_QueryExport_MS__", text)


def test_slices_in_any_order_publish_the_same_files_as_one_worker(
    engine_warehouse: str, customer_factory: Any, settings: Any, sent_tasks: list[tuple[str, tuple, Any]]
) -> None:
    customer = customer_factory("acme", max_concurrent_queries=3)
    settings.EXPORT_SPLIT_ROWS = 0
    whole = _export(customer, sent_tasks, order="forward")
    settings.EXPORT_SPLIT_ROWS, settings.EXPORT_MAX_SLICES = 60, 4
    forward = _export(customer, sent_tasks, order="forward")
    backward = _export(customer, sent_tasks, order="backward")
    assert (whole["slices"], forward["slices"], backward["slices"]) == (0, 4, 4), engine_warehouse
    assert len(_rows(whole)) > 240
    assert _rows(forward) == _rows(whole), engine_warehouse
    assert forward["parts"] == backward["parts"], engine_warehouse
    assert _anonymous(forward) == _anonymous(backward), engine_warehouse
    assert forward["manifest"]["rows"] == whole["manifest"]["rows"]
    summary = {**forward["manifest"]["summary"], "call_duration": None}
    assert summary == {**whole["manifest"]["summary"], "call_duration": None}
    # Published: nothing of the slices is left, in the database or beside the result.
    assert not QuerySlice.objects.exists()
    assert not [p for p in Path(local_exports_root()).rglob(".*") if p.is_file()]
    assert QueryRequest.objects.filter(status=QueryStatus.COMPLETED).count() == 3


def test_the_cap_is_the_query_s_not_each_slice_s(
    engine_warehouse: str, customer_factory: Any, settings: Any, sent_tasks: list[tuple[str, tuple, Any]]
) -> None:
    from queries.maintenance import slices_sweep
    from queries.services import query_create

    settings.EXPORT_SPLIT_ROWS, settings.EXPORT_MAX_SLICES = 60, 4
    customer = customer_factory("acme", max_bytes_per_query=12_000)  # each slice below it, all four above
    query = query_create(customer=customer, body=BODY)
    query_run(query_id=query.pk)
    slices = [args[0] for name, args, _ in sent_tasks if name == SLICE_TASK]
    assert len(slices) == 4
    for slice_id in slices:
        slice_run(slice_id=slice_id)
    query.refresh_from_db()
    assert query.status == QueryStatus.FAILED, engine_warehouse
    assert query.messages == [
        "The result is larger than this account's per-query cap of 12000 bytes; narrow the timestamp window, "
        "the fields or the filters."
    ]
    sizes = [piece.bytes for piece in QuerySlice.objects.all()]
    assert max(sizes) < 12_000 < sum(sizes), sizes  # no slice alone went past the cap
    slices_sweep()  # what the reaper's next tick does
    assert not QuerySlice.objects.exists()
    assert not [p for p in Path(local_exports_root()).rglob("*") if p.is_file()]
