"""NDJSON: one object per line.

pyarrow's reader, given the catalog's types, takes any file that is already strictly typed; anything it refuses
is read again line by line, which both accepts the lenient spellings (numbers as strings) and says on which
line the real problem is. An empty string stays an empty string (NULL for every type but STRING).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json

from exports.schema import ColumnType
from queries.catalog import Catalog
from queries.ingest.problems import LoadError, Problem
from queries.ingest.raw import RawFile, binary_open
from queries.json_kinds import json_kind


def ndjson_read(path: Path, events_catalog: Catalog) -> RawFile:
    """The file's columns: typed where pyarrow could read it whole, else text values with the lines refused."""
    try:
        return _read_fast(path, events_catalog)
    except (pa.ArrowInvalid, OSError):
        return _read_slow(path, events_catalog)


def _schema(events_catalog: Catalog) -> pa.Schema:
    """What pyarrow's JSON reader may produce by itself: text for strings and timestamps, native otherwise."""
    native = {ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN}
    return pa.schema(
        [
            pa.field(column.name, column.type.arrow if column.type in native else pa.string())
            for column in events_catalog.warehouse_columns()
        ]
    )


def _read_fast(path: Path, events_catalog: Catalog) -> RawFile:
    table = pa_json.read_json(
        path,
        parse_options=pa_json.ParseOptions(
            explicit_schema=_schema(events_catalog), unexpected_field_behavior="error"
        ),
    )
    return RawFile.of_table(
        table, empty_string_is_null=False, line_of_row=lambda row: _line_of_row(path, row)
    )


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line."""
    with binary_open(path) as handle:
        for number, raw in enumerate(handle, 1):
            if raw.strip():
                yield number, raw


def _line_of_row(path: Path, row: int) -> int:
    for index, (number, _raw) in enumerate(_lines(path)):
        if index == row:
            return number
    raise AssertionError(f"{path} has no row {row}")


def _read_slow(path: Path, events_catalog: Catalog) -> RawFile:
    types = {column.name: column.type for column in events_catalog.warehouse_columns()}
    columns = _TextColumns(list(types))
    lines: list[int] = []
    problems: list[Problem] = []
    count = 0
    try:
        for number, raw in _lines(path):
            record, found = _record(number, raw, types)
            if found:
                count += len(found)
                if not problems:
                    problems.append(found[0])
                continue
            columns.append(record)
            lines.append(number)
    except (OSError, EOFError) as exc:
        raise LoadError(str(path), Problem(None, None, f"unreadable file: {exc}")) from None
    return RawFile(
        columns=columns.finish(),
        num_rows=len(lines),
        empty_string_is_null=False,
        line_of_row=lines.__getitem__,
        problems=problems,
        problem_count=count,
    )


class _TextColumns:
    """Rows of text values in, Arrow string columns out, a block at a time (Python strings cost ~10x)."""

    BLOCK = 65_536

    def __init__(self, names: list[str]) -> None:
        self._pending: dict[str, list[str | None]] = {name: [] for name in names}
        self._chunks: dict[str, list[pa.Array]] = {name: [] for name in names}
        self._seen: set[str] = set()
        self._rows = 0

    def append(self, record: dict[str, str | None]) -> None:
        for name, pending in self._pending.items():
            pending.append(record.get(name))
        self._seen.update(record)
        self._rows += 1
        if self._rows % self.BLOCK == 0:
            self._flush()

    def _flush(self) -> None:
        for name, pending in self._pending.items():
            self._chunks[name].append(pa.array(pending, pa.string()))
            pending.clear()

    def finish(self) -> dict[str, pa.ChunkedArray]:
        """The columns some row gave a value (or null) for."""
        self._flush()
        return {
            name: pa.chunked_array(chunks, pa.string())
            for name, chunks in self._chunks.items()
            if name in self._seen
        }


def _record(
    number: int, raw: bytes, types: dict[str, ColumnType]
) -> tuple[dict[str, str | None], list[Problem]]:
    """One line as text values keyed by field (the checks type them), or the problems that stop it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {}, [Problem(number, None, "not valid UTF-8")]
    if number == 1:
        text = text.removeprefix(codecs.BOM_UTF8.decode("utf-8"))
    try:
        document = json.loads(text, object_pairs_hook=_object_unique)
    except _DuplicateKey as exc:
        return {}, [Problem(number, exc.key, "appears more than once in the object")]
    except ValueError as exc:
        return {}, [Problem(number, None, f"not valid JSON: {exc}")]
    if not isinstance(document, dict):
        return {}, [Problem(number, None, f"expected a JSON object, found {json_kind(document)}")]
    record: dict[str, str | None] = {}
    problems: list[Problem] = []
    for name, value in document.items():
        if name not in types:
            problems.append(Problem(number, name, "not a field of any event in the catalog"))
            continue
        try:
            record[name] = _json_text(value, types[name])
        except ValueError as exc:
            problems.append(Problem(number, name, str(exc)))
    return record, problems


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKey(key)
        document[key] = value
    return document


def _json_text(value: object, column_type: ColumnType) -> str | None:
    """A JSON value as the text the CSV path would have seen, if its JSON type can hold the field at all.

    Strings are taken for every type (a number may be spelled "42"); the text checks then apply as for CSV.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        if column_type is ColumnType.BOOLEAN:
            return "true" if value else "false"
    elif isinstance(value, int):
        if column_type in (ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN):
            return str(value)
    elif isinstance(value, float):
        if column_type is ColumnType.FLOAT:
            return repr(value)
    shown = json.dumps(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise ValueError(f"expected {_expected(column_type)}, found {shown}")


def _expected(column_type: ColumnType) -> str:
    return {
        ColumnType.STRING: "a string",
        ColumnType.INTEGER: "an integer",
        ColumnType.FLOAT: "a number",
        ColumnType.BOOLEAN: "true or false",
        ColumnType.TIMESTAMP: "an ISO 8601 timestamp string",
    }[column_type]
