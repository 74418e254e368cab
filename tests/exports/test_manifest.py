"""The export manifest and the result's file names (docs/DESIGN.md §5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from exports.results import ResultNames
from exports.schema import Column, ColumnType
from exports.writers import PartFile, manifest_build, manifest_bytes, manifest_schema

GUID = "0123456789abcdef0123456789abcdef"
QUERY = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    # Event order sets the column order: the manifest must not sort it away.
    "data": {"MsgEvent": {"fields": ["From"]}, "CallEvent": {"fields": ["Ani"]}},
    "filters": {"CallEvent": {"Ani": {"$eq": "Zoë"}}},
}
COLUMNS = [
    Column("EventName", ColumnType.STRING),
    Column("From", ColumnType.STRING),
    Column("Ani", ColumnType.STRING),
]


def parts() -> list[PartFile]:
    names = [
        ResultNames.report(customer_key="acme", guid=GUID, epoch_ms=1579194142011).part(i) for i in range(2)
    ]
    return [
        PartFile(names[0], Path("/tmp/a"), rows=10, bytes=1000, compressed_bytes=300, sha256="a" * 64),
        PartFile(names[1], Path("/tmp/b"), rows=3, bytes=120, compressed_bytes=90, sha256="b" * 64),
    ]


def build(**overrides):
    arguments: dict[str, Any] = {
        "parts": parts(),
        "query": QUERY,
        "fingerprint": "f" * 64,
        "schema": manifest_schema(COLUMNS),
        "created_at": datetime(2020, 1, 16, 17, 2, 22, 11999, tzinfo=UTC),
        "guid": GUID,
    } | overrides
    return manifest_build(**arguments)


def test_file_names_follow_the_original_service():
    names = ResultNames.report(customer_key="acme", guid=GUID, epoch_ms=1579194142011)
    assert names.part(0) == f"{GUID}_QueryExport_1579194142011__000000000000.csv.gz"
    assert names.key(names.part(0)) == f"reports/acme/{GUID}_QueryExport_1579194142011__000000000000.csv.gz"
    assert names.part(12).endswith("__000000000012.csv.gz")
    assert names.key(names.manifest) == f"reports/acme/{GUID}_manifest.json"
    with pytest.raises(ValueError):
        names.part(10**12)


def test_manifest_lists_every_part_with_the_query_and_schema():
    manifest = build(output={"format": "csv", "compression": "gzip", "dialect": "rfc4180", "header": "names"})
    assert manifest == {
        "version": 1,
        "guid": GUID,
        "created_at": "2020-01-16T17:02:22.011Z",
        "fingerprint": "f" * 64,
        "query": QUERY,
        "output": {"format": "csv", "compression": "gzip", "dialect": "rfc4180", "header": "names"},
        "schema": [
            {"name": "EventName", "type": "STRING"},
            {"name": "From", "type": "STRING"},
            {"name": "Ani", "type": "STRING"},
        ],
        "rows": 13,
        "bytes": 1120,
        "parts": [
            {
                "name": f"{GUID}_QueryExport_1579194142011__000000000000.csv.gz",
                "rows": 10,
                "bytes": 1000,
                "compressed_bytes": 300,
                "sha256": "a" * 64,
            },
            {
                "name": f"{GUID}_QueryExport_1579194142011__000000000001.csv.gz",
                "rows": 3,
                "bytes": 120,
                "compressed_bytes": 90,
                "sha256": "b" * 64,
            },
        ],
    }


def test_manifest_bytes_are_stable_utf8_json_in_insertion_order():
    content = manifest_bytes(build())
    assert content == manifest_bytes(build())
    assert content.endswith(b"}\n")
    assert "Zoë".encode() in content  # not \u escaped
    parsed = json.loads(content.decode("utf-8"))
    assert parsed == build()
    assert list(parsed["query"]["data"]) == ["MsgEvent", "CallEvent"]
    assert list(parsed)[:3] == ["version", "guid", "created_at"]


def test_created_at_is_written_in_utc_truncated_to_the_millisecond():
    paris = timezone(timedelta(hours=1))
    manifest = build(created_at=datetime(2020, 1, 1, 0, 30, 0, 999999, tzinfo=paris))
    assert manifest["created_at"] == "2019-12-31T23:30:00.999Z"


def test_naive_created_at_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        build(created_at=datetime(2020, 1, 1))


def test_a_query_that_is_not_json_is_refused_when_serialised():
    with pytest.raises(TypeError):
        manifest_bytes(build(query={"when": datetime(2020, 1, 1, tzinfo=UTC)}))
    with pytest.raises(ValueError):
        manifest_bytes(build(query={"x": float("nan")}))
