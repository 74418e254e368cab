"""Reading one events file (CSV, NDJSON or Parquet, told apart by name) into the warehouse's table.

A file becomes either one Arrow table with the warehouse's columns, ready for a single `engine.load`, or a
`LoadError` naming its first problem as `file:line: field: problem`; never part of one, so a caller can load
each file all or nothing.

What a file may hold: columns named after catalog fields (`EventName` included, required on every row, with
`TimeStamp` and `CustomerId`). A row may only fill the fields of its own event.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pyarrow as pa

from queries.catalog import Catalog, catalog
from queries.ingest.checks import raw_check
from queries.ingest.csv_reader import csv_read
from queries.ingest.ndjson_reader import ndjson_read
from queries.ingest.parquet_reader import parquet_read
from queries.ingest.problems import LoadError, Problem

# File kinds by name ending; the longest matching ending wins (".csv.gz" before ".gz").
FILE_KINDS: dict[str, str] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".ndjson": "ndjson",
    ".ndjson.gz": "ndjson",
    ".jsonl": "ndjson",
    ".jsonl.gz": "ndjson",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_READERS = {"csv": csv_read, "ndjson": ndjson_read, "parquet": parquet_read}


def file_kind(path: str | Path) -> str | None:
    """The kind of file by its name (csv, ndjson or parquet), or None for a name we do not read."""
    name = Path(path).name.lower()
    endings = sorted((e for e in FILE_KINDS if name.endswith(e)), key=len, reverse=True)
    return FILE_KINDS[endings[0]] if endings else None


def events_file_read(path: str | Path, *, events_catalog: Catalog | None = None) -> pa.Table:
    """Read one events file and check all of it; the table has exactly `warehouse_schema()`.

    Raises LoadError (and returns nothing) if anything in the file is wrong.
    """
    source = str(path)
    kind = file_kind(path)
    if kind is None:
        endings = ", ".join(FILE_KINDS)
        raise LoadError(
            source, Problem(None, None, f"unknown file type: the name must end in one of {endings}")
        )
    if not Path(path).is_file():
        raise LoadError(source, Problem(None, None, "no such file"))
    cat = events_catalog or catalog()
    try:
        raw = _READERS[kind](Path(path), cat)
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, truncated or corrupt (gzip) file
        raise LoadError(source, Problem(None, None, f"unreadable file: {exc}")) from None
    return raw_check(raw, source=source, events_catalog=cat)
