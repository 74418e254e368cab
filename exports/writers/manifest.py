"""The export's manifest (docs/DESIGN.md §5; file names: exports.results).

The manifest is published last, next to the parts, as `<guid>_manifest.json`: it lists every part (name, rows,
uncompressed bytes, sha256 of the gzip file) with the query, its fingerprint, the output schema and the
creation time, so a customer can check a download without asking the API.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from exports.schema import Column
from exports.writers.parts import PartFile

MANIFEST_VERSION = 1


def manifest_schema(columns: Sequence[Column]) -> list[dict[str, str]]:
    """The schema entry of a manifest: one {"name", "type"} per CSV column, in file order."""
    return [{"name": column.name, "type": column.type.value} for column in columns]


def manifest_build(
    *,
    parts: Sequence[PartFile],
    query: object,
    fingerprint: str,
    output: dict[str, str] | None = None,
    schema: list[dict[str, Any]],
    created_at: datetime,
    guid: str,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest as a JSON-able dict; keys are inserted in a fixed order, which manifest_bytes keeps.

    `query` must be JSON-able (the normalised request body); `output` is the export's output options;
    `summary` the result's summary figures (exports.summary), or None when they were not counted.
    `created_at` must be timezone-aware; it is written in UTC as `YYYY-MM-DDTHH:MM:SS.mmmZ`, like the CSV
    timestamps.
    """
    return {
        "version": MANIFEST_VERSION,
        "guid": guid,
        "created_at": _utc_iso(created_at),
        "fingerprint": fingerprint,
        "query": query,
        "output": output or {},
        "schema": schema,
        "rows": sum(part.rows for part in parts),
        "bytes": sum(part.bytes for part in parts),
        "parts": [
            {
                "name": part.name,
                "rows": part.rows,
                "bytes": part.bytes,
                "compressed_bytes": part.compressed_bytes,
                "sha256": part.sha256,
            }
            for part in parts
        ],
        **({} if summary is None else {"summary": summary}),
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """Stable UTF-8 JSON: the dict's own key order (never sorted: the order of events in a query's `data`
    sets the column order), two-space indent, non-ASCII kept as is, one trailing newline."""
    return (json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("created_at must be timezone-aware")
    # isoformat truncates to the millisecond (like the CSV writer) and always pads the year to four digits.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
