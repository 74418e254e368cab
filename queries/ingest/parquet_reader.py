"""Parquet: typed columns, checked as they are; a problem's "line" is the 1-based row number."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from queries.catalog import Catalog
from queries.ingest.problems import LoadError, Problem
from queries.ingest.raw import RawFile


def parquet_read(path: Path, events_catalog: Catalog) -> RawFile:
    """The file's columns as stored; the catalog is not needed to read them (the checks use it)."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise LoadError(str(path), Problem(None, None, f"not a readable Parquet file: {exc}")) from None
    names = table.column_names
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise LoadError(str(path), Problem(1, duplicates[0], "column appears more than once in the file"))

    def first_value_row(name: str) -> int:
        row = pc.index(pc.is_valid(table.column(name)), True).as_py()
        return row + 1 if row is not None and row >= 0 else 1

    return RawFile.of_table(
        table, empty_string_is_null=False, line_of_row=lambda row: row + 1, header_line=first_value_row
    )
