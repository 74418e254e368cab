"""Arrow record batches -> NDJSON part files (gzipped or plain): one JSON object per row, one row per line.

The format, byte for byte:
- UTF-8, no BOM, no header line; each row is `{"<title>":<value>,...}` followed by LF, keys in column order
  (the header titles, which must be distinct), no spaces. Zero rows give one empty part.
- NULL is `null`. STRING is a JSON string: `"` and `\\` escaped with a backslash, control characters as
  `\\n`, `\\r`, `\\t`, `\\b`, `\\f` or `\\u00XX`, everything else (non-ASCII included) as is, in UTF-8.
- INTEGER in plain decimal (beware: JavaScript reads integers beyond 2^53 inexactly); BOOLEAN `true` / `false`.
- TIMESTAMP as a string, as in the CSV: `"YYYY-MM-DDTHH:MM:SS.mmmZ"` (floored to the millisecond).
- FLOAT as a JSON number with the CSV's digits (`1.5`, `3`, `-0`, `1e-7`, `1e+22`). NaN and the infinities
  have no JSON number: they are the strings `"NaN"`, `"Infinity"` and `"-Infinity"`, the spelling JavaScript
  and BigQuery's JSON loader read back as those floats (null would lose them, and be mistaken for NULL).

Speed: as the CSV writer, every column is formatted by Arrow kernels into a string array and one kernel joins
each row's keys and values; escaping runs only on columns whose data holds a character that needs it (found
by one byte-level pass over the data buffer).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc

from exports.schema import Column, ColumnType
from exports.writers.arrow_text import batch_chunks, column_errors, replaced, timestamp_text
from exports.writers.parts import PartTarget, check_width, header_titles
from exports.writers.text_parts import TextPartWriter, text_file_opener

_CHUNK_TARGET_BYTES = 32 * 1024 * 1024
_WIDTH = {
    ColumnType.STRING: 2,  # the quotes; escapes are not counted (an estimate)
    ColumnType.INTEGER: 20,
    ColumnType.FLOAT: 24,
    ColumnType.BOOLEAN: 5,
    ColumnType.TIMESTAMP: 26,
}
_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
# Backslash first, so that the backslashes the other escapes insert are not escaped again.
JSON_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    **{chr(code): _SHORT_ESCAPES.get(chr(code), f"\\u{code:04x}") for code in range(0x20)},
}
_NON_FINITE = {"^nan$": '"NaN"', "^inf$": '"Infinity"', "^-inf$": '"-Infinity"'}


def ndjson_rows(batch: pa.RecordBatch, columns: Sequence[Column], keys: Sequence[str]) -> pa.Array:
    """One JSON object per row, LF-terminated; `keys` are the titles, in column order."""
    check_width(batch, columns)
    pieces: list[pa.Array | str] = []
    for i, (column, key) in enumerate(zip(columns, keys, strict=True)):
        pieces.append(("{" if i == 0 else ",") + json.dumps(key, ensure_ascii=False) + ":")
        pieces.append(_format_column(batch.column(i), column))
    pieces.append("}\n")
    return pc.binary_join_element_wise(*pieces, "")


def json_strings(text: pa.Array) -> pa.Array:
    """A string array as JSON string literals (nulls stay null)."""
    return pc.binary_join_element_wise('"', replaced(text, JSON_ESCAPES), '"', "")


def _format_column(values: pa.Array, column: Column) -> pa.Array:
    with column_errors(values, column):
        if column.type is ColumnType.STRING:
            text = json_strings(values.cast(pa.string()))
        elif column.type is ColumnType.TIMESTAMP:
            text = pc.binary_join_element_wise('"', timestamp_text(values, column.name), '"', "")
        elif column.type is ColumnType.FLOAT:
            text = _json_floats(values.cast(pa.float64()))
        elif column.type is ColumnType.INTEGER:
            text = values.cast(pa.int64()).cast(pa.string())
        else:
            text = values.cast(pa.bool_()).cast(pa.string())
    return pc.fill_null(text, "null")


def _json_floats(values: pa.Array) -> pa.Array:
    text = values.cast(pa.string())
    if pc.all(pc.is_finite(values)).as_py() is False:
        for pattern, replacement in _NON_FINITE.items():
            text = pc.replace_substring_regex(text, pattern, replacement)
    return text


def ndjson_writer(
    *,
    columns: Sequence[Column],
    titles: Sequence[str],
    target: PartTarget,
    gzip: bool = True,
    compression_level: int = 1,
) -> TextPartWriter:
    """The PartWriter of NDJSON, gzipped (ISA-L level 0-3) or plain; `titles` are the keys (distinct)."""
    keys = header_titles(columns, titles, distinct=True)
    row_bytes = sum(len(json.dumps(key, ensure_ascii=False).encode()) + 2 for key in keys) + 2
    return TextPartWriter(
        target,
        open_file=text_file_opener(gzip=gzip, compression_level=compression_level),
        format_rows=partial(ndjson_rows, columns=columns, keys=keys),
        chunks=partial(
            batch_chunks,
            columns=columns,
            target_bytes=_CHUNK_TARGET_BYTES,
            widths=_WIDTH,
            row_bytes=row_bytes,
        ),
        header=b"",
    )
