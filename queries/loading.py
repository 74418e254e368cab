"""Reading event files (CSV, NDJSON, Parquet) and checking every row against the catalog.

A file becomes either one Arrow table with the warehouse's columns, ready for a single `engine.load`, or a
`LoadError` naming its first problem as `file:line: field: problem`; never part of one, so a caller can load
each file all or nothing.

What a file may hold: columns named after catalog fields (`EventName` included, required on every row, with
`TimeStamp` and `CustomerId`). A row may only fill the fields of its own event. Values are read by the
field's type: STRING (no NUL), INTEGER (64-bit), FLOAT (finite), BOOLEAN (true/false/1/0, any case),
TIMESTAMP (ISO 8601 with `T` and a zone, `Z` or an offset; stored as naive UTC, microseconds, extra digits
truncated).

Parsing and checking are vectorised with pyarrow compute wherever they can be, so a file of millions of rows
is never walked row by row in Python on the success path; the walks that do exist only locate a problem that
a vectorised step has already found (or, for NDJSON that pyarrow's strict reader refuses, read it leniently).

Empty values: CSV cannot tell an empty string from a missing value, so an empty CSV cell is NULL. NDJSON and
Parquet keep an empty STRING as an empty string; for every other type an empty string is NULL.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import os
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from django.conf import settings

from exports.engines import engine_from_url
from exports.engines.base import EVENTS_TABLE, Statement, WarehouseEngine
from exports.schema import Column, ColumnType, arrow_schema, quote_identifier
from queries.catalog import Catalog, catalog

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
REQUIRED_FIELDS = ("EventName", "TimeStamp", "CustomerId")

_INTEGER = r"^[+-]?[0-9]+$"
_FLOAT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_TIMESTAMP = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"
)
_TRUE = ("true", "1")
_BOOLEANS = ("true", "false", "1", "0")
_ZONED = pa.timestamp("us", tz="UTC")
_CHECK_THREADS = min(8, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file: where (1-based line, or row for Parquet; None: the file as a whole),
    which field (None: the line as a whole), and what."""

    line: int | None
    field: str | None
    message: str

    def render(self, source: str) -> str:
        where = source if self.line is None else f"{source}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class LoadError(Exception):
    """A file was refused. The message is its first problem, as `file:line: field: problem`."""

    def __init__(self, source: str, problem: Problem, *, count: int = 1) -> None:
        self.source = source
        self.problem = problem
        self.count = count
        more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
        super().__init__(problem.render(source) + more)


def file_kind(path: str | Path) -> str | None:
    """The kind of file by its name (csv, ndjson or parquet), or None for a name we do not read."""
    name = Path(path).name.lower()
    endings = sorted((e for e in FILE_KINDS if name.endswith(e)), key=len, reverse=True)
    return FILE_KINDS[endings[0]] if endings else None


def warehouse_schema(events_catalog: Catalog | None = None) -> pa.Schema:
    """The Arrow schema of the warehouse's events table (without `_row_id`, which the engine assigns)."""
    return arrow_schema((events_catalog or catalog()).warehouse_columns())


def warehouse_loader(url: str | None = None, *, events_catalog: Catalog | None = None) -> WarehouseEngine:
    """The warehouse at `url` (default settings.WAREHOUSE_URL) opened for writing, its events table ready.

    Raises ValueError for a URL no engine takes, WarehouseError when the warehouse refuses.
    """
    engine = engine_from_url(
        url or settings.WAREHOUSE_URL,
        read_only=False,
        memory_limit=settings.WAREHOUSE_MEMORY_LIMIT,
        temp_directory=settings.WAREHOUSE_TEMP_DIR,
    )
    try:
        engine.ensure_schema((events_catalog or catalog()).warehouse_columns())
    except BaseException:
        engine.close()
        raise
    return engine


def warehouse_has_events(engine: WarehouseEngine) -> bool:
    """Whether the events table holds at least one row (it must exist: see warehouse_loader)."""
    probe = Statement(
        sql=f"SELECT 1 AS {quote_identifier('one')} FROM {quote_identifier(EVENTS_TABLE)} LIMIT 1",
        params=(),
        columns=(Column("one", ColumnType.INTEGER),),
        dialect=engine.dialect.name,
    )
    return any(batch.num_rows for batch in engine.execute(probe))


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
    reader = {"csv": _csv_read, "ndjson": _ndjson_read, "parquet": _parquet_read}[kind]
    cat = events_catalog or catalog()
    try:
        raw = reader(Path(path), cat)
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, truncated or corrupt (gzip) file
        raise LoadError(source, Problem(None, None, f"unreadable file: {exc}")) from None
    return _raw_check(raw, source=source, events_catalog=cat)


# ----------------------------------------------------------------------------------------------------
# What a reader hands the checker: columns as read (strings, or the file's own types), and how to say where a
# row is.


@dataclass
class _RawFile:
    columns: dict[str, pa.ChunkedArray]
    num_rows: int
    empty_string_is_null: bool  # CSV: an empty cell is NULL, whatever the type
    line_of_row: Callable[[int], int]  # 0-based row index -> line (or row) number
    header_line: Callable[[str], int]  # where a column-level problem is reported
    problems: list[Problem] = field(default_factory=list)  # found while reading, in line order
    problem_count: int = 0


@dataclass(frozen=True, slots=True)
class _RowProblem:
    row: int
    order: int  # column position: ties on one row go to the leftmost field
    field: str | None
    message: str
    count: int


def _raw_check(raw: _RawFile, *, source: str, events_catalog: Catalog) -> pa.Table:
    schema = warehouse_schema(events_catalog)
    types = {column.name: column.type for column in events_catalog.warehouse_columns()}
    for name in raw.columns:
        if name not in types:
            where = raw.header_line(name)
            raise LoadError(source, Problem(where, name, "not a field of any event in the catalog"))
    typed: dict[str, pa.ChunkedArray] = {}
    present: dict[str, pa.ChunkedArray] = {}
    found: list[_RowProblem] = []
    for order, (name, conversion) in enumerate(zip(types, _columns_convert(raw, types), strict=True)):
        if isinstance(conversion, _Unsupported):
            raise LoadError(source, Problem(raw.header_line(name), name, str(conversion)))
        typed[name], present[name] = conversion.values, conversion.present
        found.extend(_RowProblem(row, order, name, message, count) for row, message, count in conversion.bad)
    owned = _owned_masks(typed["EventName"], events_catalog)
    found.extend(_rows_check(typed, present, owned, events_catalog, list(types)))
    if found or raw.problems:
        _raise_first(raw, found, source)
    typed = _foreign_fields_clear(typed, owned)
    return pa.table([typed[f.name] for f in schema], schema=schema)


def _columns_convert(raw: _RawFile, types: dict[str, ColumnType]) -> list[_Conversion | _Unsupported]:
    """Every warehouse column converted, in `types` order; columns in parallel (Arrow releases the GIL)."""

    def convert(name: str) -> _Conversion | _Unsupported:
        if name not in raw.columns:
            nulls = pa.chunked_array([pa.nulls(raw.num_rows, types[name].arrow)])
            return _Conversion(nulls, pa.chunked_array([pa.repeat(False, raw.num_rows)]), [])
        try:
            return _column_convert(raw.columns[name], types[name], raw.empty_string_is_null)
        except _Unsupported as exc:
            return exc
        except pa.ArrowException as exc:  # a conversion we did not foresee: refuse the column, no traceback
            return _Unsupported(f"cannot be read as {types[name].value}: {exc}")

    with ThreadPoolExecutor(max_workers=_CHECK_THREADS) as pool:
        return list(pool.map(convert, types))


def _raise_first(raw: _RawFile, found: list[_RowProblem], source: str) -> None:
    candidates = list(raw.problems[:1])
    if found:
        first = min(found, key=lambda p: (p.row, p.order))
        candidates.append(Problem(raw.line_of_row(first.row), first.field, first.message))
    count = raw.problem_count + sum(p.count for p in found)
    raise LoadError(source, min(candidates, key=lambda p: p.line or 0), count=count)


# ----------------------------------------------------------------------------------------------------
# Rows: required fields, known events, and no row filling a field of another event.


def _owned_masks(names: pa.ChunkedArray, events_catalog: Catalog) -> dict[str, pa.ChunkedArray]:
    """Event-specific field -> rows whose event has it (StartTime belongs to more than one event)."""
    is_event = {event: pc.fill_null(pc.equal(names, event), False) for event in events_catalog.events}
    owned: dict[str, pa.ChunkedArray] = {}
    for event in events_catalog.events.values():
        for own in event.own_fields:
            mask = is_event[event.name]
            owned[own.name] = pc.or_(owned[own.name], mask) if own.name in owned else mask
    return owned


def _rows_check(
    typed: dict[str, pa.ChunkedArray],
    present: dict[str, pa.ChunkedArray],
    owned: dict[str, pa.ChunkedArray],
    events_catalog: Catalog,
    order: list[str],
) -> Iterator[_RowProblem]:
    names = typed["EventName"]
    for required in REQUIRED_FIELDS:
        missing = pc.invert(present[required])
        yield from _first(missing, order.index(required), required, lambda _row: "required, but empty")
    known_event = pc.fill_null(pc.is_in(names, value_set=pa.array(list(events_catalog.events))), False)
    unknown = pc.and_(present["EventName"], pc.invert(known_event))
    yield from _first(
        unknown, order.index("EventName"), "EventName", lambda row: f"unknown event {names[row].as_py()!r}"
    )
    for name, mask in owned.items():
        foreign = pc.and_(pc.and_(present[name], known_event), pc.invert(mask))
        yield from _first(
            foreign,
            order.index(name),
            name,
            lambda row: f"not a field of {names[row].as_py()}, must be empty",
        )


def _foreign_fields_clear(
    typed: dict[str, pa.ChunkedArray], owned: dict[str, pa.ChunkedArray]
) -> dict[str, pa.ChunkedArray]:
    """NULL in fields of other events (only empty strings can be there once the checks pass)."""
    cleared = dict(typed)
    for name, mask in owned.items():
        if pc.any(pc.and_(pc.is_valid(typed[name]), pc.invert(mask))).as_py():
            cleared[name] = pc.if_else(mask, typed[name], pa.scalar(None, typed[name].type))
    return cleared


def _first(
    mask: pa.ChunkedArray, order: int, name: str, message: Callable[[int], str]
) -> Iterator[_RowProblem]:
    """The first row where `mask` holds, as a problem counting every row where it does."""
    mask = pc.fill_null(mask, False)
    row = pc.index(mask, True).as_py()
    if row is not None and row >= 0:
        yield _RowProblem(row, order, name, message(row), pc.sum(mask).as_py())


# ----------------------------------------------------------------------------------------------------
# Columns: from what the file holds to the catalog's type, with the rows that could not be converted.


class _Unsupported(Exception):
    """The file's own column type cannot hold the field (a list where a number belongs)."""


@dataclass(frozen=True, slots=True)
class _Conversion:
    values: pa.ChunkedArray  # the catalog type; NULL where absent or bad
    present: pa.ChunkedArray  # bool, no nulls: the file gave a value (a non-empty one, for the foreign check)
    bad: list[tuple[int, str, int]]  # (first row, message, rows) per kind of problem


def _column_convert(values: pa.ChunkedArray, column_type: ColumnType, empty_is_null: bool) -> _Conversion:
    arrow_type = values.type
    if pa.types.is_dictionary(arrow_type):
        values = values.cast(arrow_type.value_type)
        arrow_type = values.type
    if pa.types.is_null(arrow_type):
        nulls = pa.chunked_array([pa.nulls(len(values), column_type.arrow)])
        return _Conversion(nulls, pc.is_valid(nulls), [])
    if _is_text(arrow_type):
        return _text_convert(values.cast(pa.string()), column_type, empty_is_null)
    return _native_convert(values, column_type)


def _is_text(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_string_view(arrow_type)
    )


def _text_convert(text: pa.ChunkedArray, column_type: ColumnType, empty_is_null: bool) -> _Conversion:
    if column_type is ColumnType.STRING:
        if empty_is_null:
            text = _empty_nulled(text)
        present = pc.fill_null(pc.not_equal(text, ""), False)
        has_nul = pc.fill_null(pc.match_substring(text, "\x00"), False)
        bad = list(_bad_rows(has_nul, text, "contains a NUL character"))
        return _Conversion(text, present, bad)
    trimmed = _empty_nulled(pc.ascii_trim_whitespace(text))
    present = pc.is_valid(trimmed)
    parse = {
        ColumnType.INTEGER: _integer_parse,
        ColumnType.FLOAT: _float_parse,
        ColumnType.BOOLEAN: _boolean_parse,
        ColumnType.TIMESTAMP: _timestamp_parse,
    }[column_type]
    values, bad = parse(trimmed)
    return _Conversion(values, present, bad)


def _empty_nulled(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """Empty strings as NULL (copying the column only when it holds one)."""
    empty = pc.equal(text, "")
    return pc.if_else(empty, pa.scalar(None, pa.string()), text) if pc.any(empty).as_py() else text


Parsed = tuple[pa.ChunkedArray, list[tuple[int, str, int]]]


def _integer_parse(text: pa.ChunkedArray) -> Parsed:
    shaped = pc.fill_null(pc.match_substring_regex(text, _INTEGER), True)
    bad = list(_bad_rows(pc.invert(shaped), text, "not an integer"))
    # Arrow's integer cast refuses a leading "+"; the regex has already vouched for the rest.
    digits = pc.replace_substring_regex(_only(text, shaped), r"^\+", "")
    values, overflow = _cast_locating(digits, pa.int64())
    if overflow is not None:
        bad.append((overflow, f"out of the 64-bit integer range: {_shown(digits[overflow])}", 1))
        values = pa.chunked_array([pa.nulls(len(text), pa.int64())])
    return values, bad


def _float_parse(text: pa.ChunkedArray) -> Parsed:
    shaped = pc.fill_null(pc.match_substring_regex(text, _FLOAT), True)
    values = _only(text, shaped).cast(pa.float64())
    finite = pc.fill_null(pc.is_finite(values), True)
    good = pc.and_(shaped, finite)
    bad = list(_bad_rows(pc.invert(good), text, "not a finite number"))
    return _only(values, good), bad


def _boolean_parse(text: pa.ChunkedArray) -> Parsed:
    lowered = pc.utf8_lower(text)
    # is_in says False, not NULL, for a NULL: an absent value is no problem.
    shaped = pc.or_(pc.is_null(lowered), pc.is_in(lowered, value_set=pa.array(_BOOLEANS)))
    bad = list(_bad_rows(pc.invert(shaped), text, "not a boolean (true, false, 1 or 0)"))
    values = pc.is_in(_only(lowered, shaped), value_set=pa.array(_TRUE))
    return pc.if_else(pc.is_valid(_only(lowered, shaped)), values, pa.scalar(None, pa.bool_())), bad


def _timestamp_parse(text: pa.ChunkedArray) -> Parsed:
    shaped = pc.fill_null(pc.match_substring_regex(text, _TIMESTAMP), True)
    bad = list(
        _bad_rows(pc.invert(shaped), text, "not an ISO 8601 timestamp with a zone (YYYY-MM-DDTHH:MM:SSZ)")
    )
    micro = _only(text, shaped)
    if pc.any(pc.match_substring_regex(micro, r"\.[0-9]{7}")).as_py():
        # Microseconds are what the warehouse keeps: further digits are dropped, not rounded.
        micro = pc.replace_substring_regex(micro, r"(\.[0-9]{6})[0-9]+", r"\1")
    values, invalid = _cast_locating(micro, _ZONED)
    if invalid is not None:
        bad.append((invalid, f"not a valid date and time: {_shown(micro[invalid])}", 1))
        return pa.chunked_array([pa.nulls(len(text), pa.timestamp("us"))]), bad
    bounded, outside = _timestamps_bound(values.cast(pa.timestamp("us")), shown=text)
    return bounded, bad + outside


def _timestamps_bound(values: pa.ChunkedArray, shown: pa.ChunkedArray | None = None) -> Parsed:
    """Naive UTC times (any unit) outside years 1-9999 taken out: Arrow holds them, Python (and so every
    reader after us) cannot."""
    unit = values.type.unit
    earliest = pa.scalar(datetime(1, 1, 1), pa.timestamp(unit))
    latest = pa.scalar(datetime(9999, 12, 31, 23, 59, 59, 999999), pa.timestamp(unit))
    outside = pc.fill_null(pc.or_(pc.less(values, earliest), pc.greater(values, latest)), False)
    bad = list(_bad_rows(outside, values if shown is None else shown, "outside the years 1 to 9999"))
    return (_only(values, pc.invert(outside)), bad) if bad else (values, [])


def _native_convert(values: pa.ChunkedArray, column_type: ColumnType) -> _Conversion:
    """A column the file already typed (Parquet, NDJSON numbers): accept what converts without loss."""
    arrow_type = values.type
    present = pc.is_valid(values)
    bad: list[tuple[int, str, int]] = []
    if column_type is ColumnType.INTEGER and pa.types.is_integer(arrow_type):
        converted, overflow = _cast_locating(values, pa.int64())
        if overflow is not None:
            bad.append((overflow, f"out of the 64-bit integer range: {values[overflow].as_py()}", 1))
            converted = pa.chunked_array([pa.nulls(len(values), pa.int64())])
        return _Conversion(converted, present, bad)
    if column_type is ColumnType.FLOAT and (
        pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type) or pa.types.is_decimal(arrow_type)
    ):
        converted = values.cast(pa.float64())
        finite = pc.fill_null(pc.is_finite(converted), True)
        bad.extend(_bad_rows(pc.invert(finite), converted, "not a finite number"))
        return _Conversion(_only(converted, finite), present, bad)
    if column_type is ColumnType.BOOLEAN and pa.types.is_boolean(arrow_type):
        return _Conversion(values, present, bad)
    if column_type is ColumnType.TIMESTAMP and pa.types.is_timestamp(arrow_type):
        converted, bad = _timestamp_native(values)
        return _Conversion(converted, present, bad)
    raise _Unsupported(f"type {column_type.value} cannot be read from a column of type {arrow_type}")


def _timestamp_native(values: pa.ChunkedArray) -> Parsed:
    """Any timestamp column as naive UTC microseconds; a column without a zone is taken to be UTC already."""
    arrow_type = values.type
    if arrow_type.unit == "ns":
        # Every nanosecond timestamp fits in microseconds; only the sub-microsecond digits go.
        values = values.cast(pa.timestamp("us", tz=arrow_type.tz), safe=False)
    # Dropping the zone keeps the stored number, which is UTC: the zone only says how to show it.
    naive = values.cast(pa.timestamp(values.type.unit))
    bounded, bad = _timestamps_bound(naive)  # within years 1-9999, so the cast below cannot overflow
    return bounded.cast(pa.timestamp("us")), bad


def _only(values: pa.ChunkedArray, keep: pa.ChunkedArray) -> pa.ChunkedArray:
    """The values where `keep` holds, NULL elsewhere (a later cast sees only what passed the shape check)."""
    if pc.all(keep).as_py() is not False:  # the usual case: nothing to take out, nothing to copy
        return values
    return pc.if_else(keep, values, pa.scalar(None, values.type))


def _bad_rows(mask: pa.ChunkedArray, values: pa.ChunkedArray, problem: str) -> Iterator[tuple[int, str, int]]:
    mask = pc.fill_null(mask, False)
    row = pc.index(mask, True).as_py()
    if row is not None and row >= 0:
        yield row, f"{problem}: {_shown(values[row])}", pc.sum(mask).as_py()


def _shown(value: pa.Scalar) -> str:
    try:
        text = repr(value.as_py())
    except (OverflowError, ValueError):  # a time beyond Python's years 1-9999: show the stored number
        text = f"{value.cast(pa.int64()).as_py()} {value.type.unit} from 1970-01-01"
    return text if len(text) <= 60 else text[:57] + "..."


def _cast_locating(values: pa.ChunkedArray, target: pa.DataType) -> tuple[pa.ChunkedArray, int | None]:
    """Cast, or find the first value the cast refuses by bisection (a few casts, never a walk over rows)."""
    try:
        return values.cast(target), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    flat = values.combine_chunks()
    low, high = 0, len(flat)  # the failing value is in flat[low:high]
    while high - low > 1:
        middle = (low + high) // 2
        try:
            flat.slice(low, middle - low).cast(target)
            low = middle
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            high = middle
    return values, low


# ----------------------------------------------------------------------------------------------------
# CSV: a header row, then records; pyarrow parses every column as text and the checker types them.


def _text_open(path: Path) -> IO[str]:
    """The file as text with universal quoting rules; gzip by name; a UTF-8 byte-order mark is skipped."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _csv_read(path: Path, events_catalog: Catalog) -> _RawFile:
    header = _csv_header(path)
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
        raise LoadError(str(path), _csv_problem_locate(path, len(header), exc)) from None
    return _RawFile(
        columns={name: table.column(name) for name in table.column_names},
        num_rows=table.num_rows,
        empty_string_is_null=True,
        line_of_row=lambda row: _csv_line_of_row(path, row),
        header_line=lambda _name: 1,
    )


def _csv_header(path: Path) -> list[str]:
    """The column names, from the first line alone (read raw: decoding further could fail on a later line)."""
    try:
        with _binary_open(path) as handle:
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


def _csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of every non-blank record after the header, as pyarrow counts them."""
    with _text_open(path) as handle:
        reader = csv.reader(handle)
        next(reader, None)
        line = reader.line_num + 1
        for record in reader:
            if record:
                yield line, record
            line = reader.line_num + 1


def _csv_line_of_row(path: Path, row: int) -> int:
    for index, (line, _record) in enumerate(_csv_records(path)):
        if index == row:
            return line
    raise AssertionError(f"{path} has no row {row}")


def _csv_problem_locate(path: Path, width: int, exc: Exception) -> Problem:
    """pyarrow says that a file is malformed but not where: walk it to find the line."""
    # Text decoding is buffered, so a decode error is located on raw lines first.
    with _binary_open(path) as handle:
        for number, raw in enumerate(handle, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return Problem(number, None, "not valid UTF-8")
    line = 1
    try:
        for line, record in _csv_records(path):
            if len(record) != width:
                return Problem(line, None, f"expected {width} fields, found {len(record)}")
    except (csv.Error, OSError) as error:
        return Problem(line, None, f"malformed CSV: {error}")
    return Problem(line, None, f"malformed CSV: {exc}")


# ----------------------------------------------------------------------------------------------------
# NDJSON: one object per line. pyarrow's reader, given the catalog's types, takes any file that is already
# strictly typed; anything it refuses is read again line by line, which both accepts the lenient spellings
# (numbers as strings) and says on which line the real problem is.


def _ndjson_read(path: Path, events_catalog: Catalog) -> _RawFile:
    try:
        return _ndjson_read_fast(path, events_catalog)
    except (pa.ArrowInvalid, OSError):
        return _ndjson_read_slow(path, events_catalog)


def _ndjson_schema(events_catalog: Catalog) -> pa.Schema:
    """What pyarrow's JSON reader may produce by itself: text for strings and timestamps, native otherwise."""
    native = {ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.BOOLEAN}
    return pa.schema(
        [
            pa.field(column.name, column.type.arrow if column.type in native else pa.string())
            for column in events_catalog.warehouse_columns()
        ]
    )


def _ndjson_read_fast(path: Path, events_catalog: Catalog) -> _RawFile:
    table = pa_json.read_json(
        path,
        parse_options=pa_json.ParseOptions(
            explicit_schema=_ndjson_schema(events_catalog), unexpected_field_behavior="error"
        ),
    )
    return _RawFile(
        columns={name: table.column(name) for name in table.column_names},
        num_rows=table.num_rows,
        empty_string_is_null=False,
        line_of_row=lambda row: _ndjson_line_of_row(path, row),
        header_line=lambda _name: 1,
    )


def _binary_open(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _ndjson_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line."""
    with _binary_open(path) as handle:
        for number, raw in enumerate(handle, 1):
            if raw.strip():
                yield number, raw


def _ndjson_line_of_row(path: Path, row: int) -> int:
    for index, (number, _raw) in enumerate(_ndjson_lines(path)):
        if index == row:
            return number
    raise AssertionError(f"{path} has no row {row}")


def _ndjson_read_slow(path: Path, events_catalog: Catalog) -> _RawFile:
    types = {column.name: column.type for column in events_catalog.warehouse_columns()}
    columns = _TextColumns(list(types))
    lines: list[int] = []
    problems: list[Problem] = []
    count = 0
    try:
        for number, raw in _ndjson_lines(path):
            record, found = _ndjson_record(number, raw, types)
            if found:
                count += len(found)
                if not problems:
                    problems.append(found[0])
                continue
            columns.append(record)
            lines.append(number)
    except (OSError, EOFError) as exc:
        raise LoadError(str(path), Problem(None, None, f"unreadable file: {exc}")) from None
    return _RawFile(
        columns=columns.finish(),
        num_rows=len(lines),
        empty_string_is_null=False,
        line_of_row=lines.__getitem__,
        header_line=lambda _name: 1,
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


def _ndjson_record(
    number: int, raw: bytes, types: dict[str, ColumnType]
) -> tuple[dict[str, str | None], list[Problem]]:
    """One line as text values keyed by field (the checker types them), or the problems that stop it."""
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
        return {}, [Problem(number, None, f"expected a JSON object, found {_json_kind(document)}")]
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


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else "null"


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


# ----------------------------------------------------------------------------------------------------
# Parquet: typed columns, checked as they are; "line" is the 1-based row number.


def _parquet_read(path: Path, events_catalog: Catalog) -> _RawFile:
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

    return _RawFile(
        columns={name: table.column(name) for name in names},
        num_rows=table.num_rows,
        empty_string_is_null=False,
        line_of_row=lambda row: row + 1,
        header_line=first_value_row,
    )
