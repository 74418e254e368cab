"""Columns, from what a file holds to the catalog's types, with the rows that could not be converted.

Values are read by the field's type: STRING (no NUL), INTEGER (64-bit), FLOAT (finite), BOOLEAN
(true/false/1/0, any case), TIMESTAMP (as `queries.timestamps` reads them: ISO 8601 with `T` and a zone, `Z` or
an offset; stored as naive UTC, microseconds, extra digits truncated). Text is trimmed first, and an empty text
is NULL for every type but STRING. Columns the file already typed (Parquet, NDJSON numbers) are taken when they
convert without loss.

Vectorised with pyarrow compute: a column of millions of values is never walked row by row in Python; a
failed cast is located by bisection, a few casts more.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from exports.schema import ColumnType
from queries.ingest.raw import RawFile
from queries.timestamps import instants_cast, instants_outside_calendar, instants_spelled

_INTEGER = r"^[+-]?[0-9]+$"
_FLOAT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_TRUE = ("true", "1")
_BOOLEANS = ("true", "false", "1", "0")
_THREADS = min(8, os.cpu_count() or 1)

Parsed = tuple[pa.ChunkedArray, list[tuple[int, str, int]]]


class Unsupported(Exception):
    """The file's own column type cannot hold the field (a list where a number belongs)."""


@dataclass(frozen=True, slots=True)
class Conversion:
    values: pa.ChunkedArray  # the catalog type; NULL where absent or bad
    present: pa.ChunkedArray  # bool, no nulls: the file gave a value (a non-empty one, for the foreign check)
    bad: list[tuple[int, str, int]]  # (first row, message, rows) per kind of problem


def columns_convert(raw: RawFile, types: dict[str, ColumnType]) -> list[Conversion | Unsupported]:
    """Every warehouse column converted, in `types` order; columns in parallel (Arrow releases the GIL)."""

    def convert(name: str) -> Conversion | Unsupported:
        if name not in raw.columns:
            nulls = pa.chunked_array([pa.nulls(raw.num_rows, types[name].arrow)])
            return Conversion(nulls, pa.chunked_array([pa.repeat(False, raw.num_rows)]), [])
        try:
            return _column_convert(raw.columns[name], types[name], raw.empty_string_is_null)
        except Unsupported as exc:
            return exc
        except pa.ArrowException as exc:  # a conversion we did not foresee: refuse the column, no traceback
            return Unsupported(f"cannot be read as {types[name].value}: {exc}")

    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        return list(pool.map(convert, types))


def _column_convert(values: pa.ChunkedArray, column_type: ColumnType, empty_is_null: bool) -> Conversion:
    arrow_type = values.type
    if pa.types.is_dictionary(arrow_type):
        values = values.cast(arrow_type.value_type)
        arrow_type = values.type
    if pa.types.is_null(arrow_type):
        nulls = pa.chunked_array([pa.nulls(len(values), column_type.arrow)])
        return Conversion(nulls, pc.is_valid(nulls), [])
    if _is_text(arrow_type):
        return _text_convert(values.cast(pa.string()), column_type, empty_is_null)
    return _native_convert(values, column_type)


def _is_text(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_string_view(arrow_type)
    )


# ----------------------------------------------------------------------------------------------------
# Text columns (CSV, and NDJSON read line by line): parsed by the field's type.


def _text_convert(text: pa.ChunkedArray, column_type: ColumnType, empty_is_null: bool) -> Conversion:
    if column_type is ColumnType.STRING:
        if empty_is_null:
            text = _empty_nulled(text)
        present = pc.fill_null(pc.not_equal(text, ""), False)
        has_nul = pc.fill_null(pc.match_substring(text, "\x00"), False)
        bad = list(_bad_rows(has_nul, text, "contains a NUL character"))
        return Conversion(text, present, bad)
    trimmed = _empty_nulled(pc.ascii_trim_whitespace(text))
    present = pc.is_valid(trimmed)
    parse = {
        ColumnType.INTEGER: _integer_parse,
        ColumnType.FLOAT: _float_parse,
        ColumnType.BOOLEAN: _boolean_parse,
        ColumnType.TIMESTAMP: _timestamp_parse,
    }[column_type]
    values, bad = parse(trimmed)
    return Conversion(values, present, bad)


def _empty_nulled(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """Empty strings as NULL (copying the column only when it holds one)."""
    empty = pc.equal(text, "")
    return pc.if_else(empty, pa.scalar(None, pa.string()), text) if pc.any(empty).as_py() else text


def _integer_parse(text: pa.ChunkedArray) -> Parsed:
    shaped = pc.fill_null(pc.match_substring_regex(text, _INTEGER), True)
    bad = list(_bad_rows(pc.invert(shaped), text, "not an integer"))
    # Arrow's integer cast refuses a leading "+"; the regex has already vouched for the rest.
    digits = pc.replace_substring_regex(_only(text, shaped), r"^\+", "")
    values, overflow = _convert_locating(digits, lambda part: part.cast(pa.int64()))
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
    shaped = pc.fill_null(instants_spelled(text), True)
    bad = list(
        _bad_rows(pc.invert(shaped), text, "not an ISO 8601 timestamp with a zone (YYYY-MM-DDTHH:MM:SSZ)")
    )
    spelled = _only(text, shaped)
    values, invalid = _convert_locating(spelled, instants_cast)
    if invalid is not None:
        bad.append((invalid, f"not a valid date and time: {_shown(spelled[invalid])}", 1))
        return pa.chunked_array([pa.nulls(len(text), pa.timestamp("us"))]), bad
    bounded, outside = _timestamps_bound(values, shown=text)
    return bounded, bad + outside


def _timestamps_bound(values: pa.ChunkedArray, shown: pa.ChunkedArray | None = None) -> Parsed:
    """Naive UTC times (any unit) outside years 1-9999 taken out: Arrow holds them, Python (and so every
    reader after us) cannot."""
    outside = pc.fill_null(instants_outside_calendar(values), False)
    bad = list(_bad_rows(outside, values if shown is None else shown, "outside the years 1 to 9999"))
    return (_only(values, pc.invert(outside)), bad) if bad else (values, [])


# ----------------------------------------------------------------------------------------------------
# Typed columns (Parquet, NDJSON that pyarrow read whole): taken when they convert without loss.


def _native_convert(values: pa.ChunkedArray, column_type: ColumnType) -> Conversion:
    arrow_type = values.type
    present = pc.is_valid(values)
    bad: list[tuple[int, str, int]] = []
    if column_type is ColumnType.INTEGER and pa.types.is_integer(arrow_type):
        converted, overflow = _convert_locating(values, lambda part: part.cast(pa.int64()))
        if overflow is not None:
            bad.append((overflow, f"out of the 64-bit integer range: {values[overflow].as_py()}", 1))
            converted = pa.chunked_array([pa.nulls(len(values), pa.int64())])
        return Conversion(converted, present, bad)
    if column_type is ColumnType.FLOAT and (
        pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type) or pa.types.is_decimal(arrow_type)
    ):
        converted = values.cast(pa.float64())
        finite = pc.fill_null(pc.is_finite(converted), True)
        bad.extend(_bad_rows(pc.invert(finite), converted, "not a finite number"))
        return Conversion(_only(converted, finite), present, bad)
    if column_type is ColumnType.BOOLEAN and pa.types.is_boolean(arrow_type):
        return Conversion(values, present, bad)
    if column_type is ColumnType.TIMESTAMP and pa.types.is_timestamp(arrow_type):
        converted, bad = _timestamp_native(values)
        return Conversion(converted, present, bad)
    raise Unsupported(f"type {column_type.value} cannot be read from a column of type {arrow_type}")


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


# ----------------------------------------------------------------------------------------------------
# Helpers: keeping some values, naming the first bad row, finding the value a cast refuses.


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


def _convert_locating(
    values: pa.ChunkedArray, convert: Callable[[pa.ChunkedArray], pa.ChunkedArray]
) -> tuple[pa.ChunkedArray, int | None]:
    """Convert (an Arrow cast, all or nothing), or find the first value it refuses by bisection: a few
    conversions, never a walk over rows."""
    try:
        return convert(values), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    flat = pa.chunked_array([values.combine_chunks()])
    low, high = 0, len(flat)  # the failing value is in flat[low:high]
    while high - low > 1:
        middle = (low + high) // 2
        try:
            convert(flat.slice(low, middle - low))
            low = middle
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            high = middle
    return values, low
