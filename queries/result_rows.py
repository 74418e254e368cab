"""The first rows of a finished result, read back from its first part for the admin's query page.

Read from the query's storage (wherever the result was published), never from the warehouse: an operator sees
what the customer got. Text parts (CSV and NDJSON, gzipped or not) are shown; xlsx and parquet are not (their
rows sit behind a zip directory or a footer at the end of the file). A part that is gone, unreadable or not
what its name says is a note on the page, never an error: the page must open whatever became of the files.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from exports.errors import StorageError
from exports.storage.base import RangeReader
from queries.delivery import query_storage
from queries.models import QueryRequest

FIRST_ROWS = 20
# At most this many bytes of the part (compressed) are fetched: 20 rows fit many times over.
MAX_BYTES_READ = 4 << 20
MAX_LINE_CHARS = 1 << 20
MAX_CELL_CHARS = 200


@dataclass(frozen=True)
class FirstRows:
    """Column names and up to FIRST_ROWS rows as text; or, when nothing can be shown, `note` says why."""

    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def result_first_rows(query: QueryRequest, *, limit: int = FIRST_ROWS) -> FirstRows:
    """The first `limit` rows of the query's first part."""
    if not query.files:
        return FirstRows(note="no result files")
    key = str(query.files[0]["path"])
    kind, compressed = part_kind(key)
    if kind not in ("csv", "ndjson"):
        return FirstRows(note=f"not shown for {kind}")
    try:
        with query_storage(query) as storage, storage.open(key, 0, MAX_BYTES_READ) as stream:
            raw = io.BufferedReader(RangeReader(stream, MAX_BYTES_READ))
            text: IO[str] = (
                gzip.open(raw, "rt", encoding="utf-8-sig", newline="")
                if compressed
                else io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            )
            return (csv_first_rows if kind == "csv" else ndjson_first_rows)(text, limit)
    except StorageError as error:
        return FirstRows(note=f"the file cannot be read: {error}")
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, ValueError) as error:
        # A truncated gzip, bytes that are not UTF-8, a line that is not JSON: the part is not what it says.
        return FirstRows(note=f"the file could not be read as {kind}: {type(error).__name__}: {error}")


def part_kind(key: str) -> tuple[str, bool]:
    """The format a part's name says (csv, ndjson, xlsx, parquet, ...) and whether it is gzipped."""
    name = key.rsplit("/", 1)[-1].lower()
    compressed = name.endswith(".gz")
    stem = name.removesuffix(".gz")
    return (stem.rsplit(".", 1)[-1] if "." in stem else "unknown"), compressed


def csv_first_rows(text: IO[str], limit: int) -> FirstRows:
    """A CSV part: its header line, then `limit` records (quoted newlines included; every dialect we write
    parses with the csv module's defaults)."""
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        return FirstRows(note="the file is empty")
    rows = [_cells(row) for _, row in zip(range(limit), reader, strict=False)]
    return FirstRows(columns=_cells(header), rows=rows)


def ndjson_first_rows(text: IO[str], limit: int) -> FirstRows:
    """An NDJSON part: one object a line; the columns are the first object's keys, in its order."""
    records = [record for _, record in zip(range(limit), _json_lines(text), strict=False)]
    if not records:
        return FirstRows(note="the file holds no rows")
    columns = list(records[0])
    rows = [_cells(_shown(record.get(column)) for column in columns) for record in records]
    return FirstRows(columns=_cells(columns), rows=rows)


def _json_lines(text: IO[str]) -> Iterator[dict[str, object]]:
    while line := text.readline(MAX_LINE_CHARS):
        if not line.endswith("\n") and len(line) == MAX_LINE_CHARS:
            raise ValueError(f"a line is longer than {MAX_LINE_CHARS} characters")
        if line.strip():
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("a line is not a JSON object")
            yield record


def _shown(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _cells(values: Iterable[object]) -> list[str]:
    """Cells as text, each cut to MAX_CELL_CHARS (a page of 20 rows stays a page)."""
    cells = (str(value) for value in values)
    return [cell if len(cell) <= MAX_CELL_CHARS else cell[: MAX_CELL_CHARS - 1] + "…" for cell in cells]
