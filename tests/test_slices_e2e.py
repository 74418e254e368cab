"""One query, many workers, over HTTP on both shapes: an export cut into slices that several real Celery worker
processes write at once is the export one worker writes whole (the same rows in the same order, the same
summary), and its parts and manifest are byte for byte the same whether one worker process or four ran the
slices."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from queries.ingest import DEMO_CUSTOMER_KEYS
from tests.service import SHAPES, Service, service_of_shape

CALLS = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-27T00:00:00Z"},
    "data": {
        "CallEvent": {"fields": ["TimeStamp", "SessionId", "Duration", "DisconnectReason"]},
        "ApplicationExitEvent": {"fields": ["TimeStamp", "FlowId"]},
    },
}
SLICED = {"EXPORT_SPLIT_ROWS": "40", "EXPORT_MAX_SLICES": "4", "LOG_LEVEL": "INFO"}  # INFO: "cut into"
WHOLE = {"EXPORT_SPLIT_ROWS": "0", "LOG_LEVEL": "INFO"}


@pytest.fixture(scope="module", params=SHAPES)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # Small parts, so that each slice writes several and the numbering across slices is exercised.
    with service_of_shape(
        request,
        tmp_path_factory,
        "slices",
        extra_env={"EXPORT_PART_BYTES": "4096"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def acme(service: Service) -> str:
    return service.customer_create(DEMO_CUSTOMER_KEYS[0])


def _export(
    service: Service, key: str, *, workers: int, concurrency: int, env: dict[str, str]
) -> dict[str, Any]:
    """POST the query with `workers` worker processes of `concurrency` each running; its status, part files
    (bytes, in order), summary and manifest (as published)."""
    for _ in range(workers):
        service.worker_start(concurrency, extra_env=env)
    try:
        response = service.request("POST", "/_rest/v4/dwh/Q", key=key, body=CALLS)
        assert response.status == 201, response.body
        guid = response.json()["id"]
        status = service.wait_terminal(guid, key, timeout=120)
        assert status["status"] == "Completed", status
    finally:
        service.workers_stop()
    detail = service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=key).json()
    parts = []
    for n in range(len(detail["files"])):
        download = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/download/{n}", key=key)
        assert download.status == 200, download.body[:300]
        parts.append(download.body)
    summary = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/summary", key=key).json()
    return {
        "guid": guid,
        "files": detail["files"],
        "parts": parts,
        "summary": summary,
        "manifest": _manifest(service, detail),
    }


def _manifest(service: Service, detail: dict[str, Any]) -> dict[str, Any]:
    """The published manifest, read where the default (local) destination keeps it."""
    first = detail["files"][0]["path"]
    manifest = Path(service.var_dir, "exports", re.sub(r"_QueryExport_.*$", "_manifest.json", first))
    return dict(json.loads(manifest.read_bytes()))


def _rows(export: dict[str, Any]) -> list[str]:
    """Every part's CSV lines after its header, in part order: the result's rows."""
    lines: list[str] = []
    for part in export["parts"]:
        lines += gzip.decompress(part).decode().splitlines()[1:]
    return lines


def _without_identity(manifest: dict[str, Any], guid: str) -> str:
    """The manifest with what names this very query (its guid, creation time, part names) taken out."""
    text = json.dumps({**manifest, "created_at": None}).replace(guid, "GUID")
    return re.sub(r"_QueryExport_\d{13}__", "_QueryExport_MS__", text)


def _slices_cut(service: Service, guid: str) -> int:
    """How many slices the workers' logs say the query was cut into (0: exported whole)."""
    for _ in range(50):
        for log in service.var_dir.glob("worker-*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if guid in line and "cut into" in line:
                    return int(re.search(r"cut into (\d+) slices", line).group(1))  # type: ignore[union-attr]
        time.sleep(0.1)
    return 0


def test_an_export_cut_into_slices_is_the_export_of_one_worker(service: Service, acme: str) -> None:
    whole = _export(service, acme, workers=1, concurrency=1, env=WHOLE)
    many = _export(service, acme, workers=2, concurrency=2, env=SLICED)
    one = _export(service, acme, workers=1, concurrency=1, env=SLICED)
    assert _slices_cut(service, whole["guid"]) == 0
    assert _slices_cut(service, many["guid"]) == _slices_cut(service, one["guid"]) == 4
    # Sliced or not: the same rows in the same order, and the same summary.
    assert len(_rows(whole)) > 160
    assert _rows(many) == _rows(one) == _rows(whole)
    for figures in (many["summary"], one["summary"]):
        assert figures["call_duration"]["sum"] == pytest.approx(
            whole["summary"]["call_duration"]["sum"], rel=1e-12
        )
    # (The duration's sum adds slice sums: equal to the last bits only when summed in the same order.)
    unsummed = [{**s["summary"], "call_duration": None} for s in (whole, many, one)]
    assert unsummed[1] == unsummed[2] == unsummed[0]
    assert many["summary"] == one["summary"]
    # However many workers ran the slices: the same part files, byte for byte, and the same manifest.
    assert len(many["parts"]) > 4
    assert many["parts"] == one["parts"]
    assert [(f["size"], f["rows"], f["sha256"]) for f in many["files"]] == [
        (f["size"], f["rows"], f["sha256"]) for f in one["files"]
    ]
    assert _without_identity(many["manifest"], many["guid"]) == _without_identity(
        one["manifest"], one["guid"]
    )
    assert many["manifest"]["rows"] == len(_rows(whole))
    # Nothing of the slices is left beside the result.
    exports = Path(service.var_dir, "exports")
    assert not [p.name for p in exports.rglob(".*") if p.is_file()]
