"""CSV: a header row, then records; pyarrow parses every column as text and the checks type them.

An empty cell, quoted or not, is NULL: CSV cannot tell an empty string from a missing value.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.csv as pa_csv

from queries.catalog import Catalog
from queries.ingest.problems import LoadError, Problem
from queries.ingest.raw import RawFile, binary_open


def csv_read(path: Path, events_catalog: Catalog) -> RawFile:
    """The file's columns as text; its header is checked first, before a large file is parsed for nothing."""
    header = _header(path)
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise LoadError(str(path), Problem(1, duplicates[0], "column appears more than once in the header"))
    known = {column.name for column in events_catalog.warehouse_columns()}
    unknown = [name for name in header if name not in known]
    if unknown:  # before parsing what may be a very large file
        raise LoadError(str(path), Problem(1, unknown[0], "not a field of any event in the catalog"))
    try:
        table = pa_csv.read_csv(
            path,
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                # An empty cell, quoted or not, is NULL (the one reading CSV allows), and nothing else is.
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise LoadError(str(path), _problem_locate(path, len(header), exc)) from None
    return RawFile.of_table(table, empty_string_is_null=True, line_of_row=lambda row: _line_of_row(path, row))


def _text_open(path: Path) -> IO[str]:
    """The file as text with universal quoting rules; gzip by name; a UTF-8 byte-order mark is skipped."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _header(path: Path) -> list[str]:
    """The column names, from the first line alone (read raw: decoding further could fail on a later line)."""
    try:
        with binary_open(path) as handle:
            first = handle.readline()
        text = first.decode("utf-8-sig")
        header = next(csv.reader([text]), None)
    except UnicodeDecodeError:
        raise LoadError(str(path), Problem(1, None, "not valid UTF-8")) from None
    except (OSError, EOFError, csv.Error) as exc:
        raise LoadError(str(path), Problem(1, None, f"unreadable header row: {exc}")) from None
    if not header:
        raise LoadError(str(path), Problem(1, None, "no header row: the first line must name the columns"))
    return header


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of every non-blank record after the header, as pyarrow counts them."""
    with _text_open(path) as handle:
        reader = csv.reader(handle)
        next(reader, None)
        line = reader.line_num + 1
        for record in reader:
            if record:
                yield line, record
            line = reader.line_num + 1


def _line_of_row(path: Path, row: int) -> int:
    for index, (line, _record) in enumerate(_records(path)):
        if index == row:
            return line
    raise AssertionError(f"{path} has no row {row}")


def _problem_locate(path: Path, width: int, exc: Exception) -> Problem:
    """pyarrow says that a file is malformed but not where: walk it to find the line."""
    # Text decoding is buffered, so a decode error is located on raw lines first.
    with binary_open(path) as handle:
        for number, raw in enumerate(handle, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return Problem(number, None, "not valid UTF-8")
    line = 1
    try:
        for line, record in _records(path):
            if len(record) != width:
                return Problem(line, None, f"expected {width} fields, found {len(record)}")
    except (csv.Error, OSError) as error:
        return Problem(line, None, f"malformed CSV: {error}")
    return Problem(line, None, f"malformed CSV: {exc}")
