"""Arrow record batches -> CSV part files (gzipped by default), formatted in bulk with Arrow compute kernels.

The CSV dialect (docs/DESIGN.md §3), byte for byte, as `rfc4180` writes it (the default; the `excel` and
`no_newline` dialects differ only in text fields, line ends and a BOM: see exports.writers.csv_dialects):

- UTF-8, no BOM. The first line is the header (the column names, or `header`). Every line, the last one
  included, ends with LF (`\\n`), never CRLF.
- Fields are separated by `,`. A field is quoted (RFC 4180) only when it contains a comma, a double quote, CR
  or LF; inner double quotes are doubled. Leading and trailing spaces are data: they are kept and do not cause
  quoting.
- NULL is the empty field. An empty STRING is the empty field too: CSV cannot tell NULL from "". The one
  exception is a one-column file, where an empty field is written as `""` so that its line is not blank
  (many readers skip blank lines, which would lose rows); it still reads back as "".
- STRING as is; INTEGER in plain decimal (`-42`); BOOLEAN `true` / `false`.
- TIMESTAMP (UTC) as `YYYY-MM-DDTHH:MM:SS.mmmZ`, truncated (floored) to the millisecond, never rounded:
  `1969-12-31T23:59:59.999Z` for one microsecond before the epoch. Years 0001 to 9999 only.
- FLOAT: the shortest digits that read back to the same double (the digits of Python's `repr`), laid out as
  plain decimal when the decimal exponent is between -6 and 9 (`1.5`, `-0.25`, `0.000001`, `1234567890.5`)
  and as `<d>[.<ddd>]e<sign><exponent>` otherwise (`1e-7`, `1e+10`, `1.2345678901234568e+20`). Whole
  values carry no fraction (`3`, not `3.0`); also `-0`, `inf`, `-inf`, `nan`. This is Arrow's own
  float-to-string cast, so the fast path needs no per-value work.

Speed: every column is turned into a UTF-8 string array by vectorised kernels, the columns are joined into one
string per row, and the row strings' contiguous data buffer goes straight to the ISA-L gzip compressor (zlib
when ISA-L is missing) on a background thread (exports.writers.text_parts). No Python code runs per row or per
value. `pyarrow.csv.CSVWriter` is not used: it quotes every string and writes `""` for an empty string, which
is not the dialect above.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from exports.schema import Column, ColumnType
from exports.writers.arrow_text import batch_chunks, column_errors, timestamp_text
from exports.writers.csv_dialects import NEEDS_QUOTING, RFC4180, CsvDialect, rfc4180_field
from exports.writers.parts import (
    COALESCE_ROWS,
    UNCONTROLLED,
    PartFile,
    PartTarget,
    WriteControl,
    check_width,
    header_titles,
    parts_write,
    remove_parts,
    temporary_path,
)
from exports.writers.text_parts import DEFLATE, TextPartWriter, text_file_opener

__all__ = [
    "LINE_TERMINATOR",
    "NEEDS_QUOTING",
    "PartFile",
    "WriteControl",
    "csv_field",
    "csv_header",
    "csv_rows",
    "csv_writer",
    "remove_parts",
    "temporary_path",
    "write_csv_gzip_parts",
]

LINE_TERMINATOR = RFC4180.line_terminator
_deflate = DEFLATE  # looked up at each write, so a test can swap in zlib
# Input is formatted in chunks of about this many bytes, which bounds memory per step and keeps the row
# strings far below Arrow's 2 GiB limit for one string array.
_CHUNK_TARGET_BYTES = 32 * 1024 * 1024
_COALESCE_ROWS = COALESCE_ROWS
# Upper bound of the text width of one non-string value, and for STRING what quoting may add; used only to
# size chunks.
_FIXED_WIDTH = {
    ColumnType.STRING: 2,
    ColumnType.INTEGER: 20,
    ColumnType.FLOAT: 24,
    ColumnType.BOOLEAN: 5,
    ColumnType.TIMESTAMP: 24,
}
_BOM = "\ufeff"

csv_field = rfc4180_field


def csv_header(names: Sequence[str], dialect: CsvDialect = RFC4180) -> bytes:
    """The header line, terminator included (and the BOM first, in a dialect that has one)."""
    line = ",".join(dialect.text_field(name) for name in names) + dialect.line_terminator
    return ((_BOM if dialect.bom else "") + line).encode("utf-8")


def csv_rows(
    batch: pa.RecordBatch, columns: Sequence[Column], dialect: CsvDialect = RFC4180
) -> pa.StringArray:
    """Format a batch as one string per row, each ending with the line terminator, nulls as empty fields.

    The batch's columns are taken by position and cast to each Column's type when they differ (an engine may
    hand back int32 or a zoned timestamp). Raises WriteError when the batch does not fit the columns.
    """
    check_width(batch, columns)
    fields = [_format_column(batch.column(i), column, dialect) for i, column in enumerate(columns)]
    if len(fields) == 1:
        # A lone empty field would make a blank line, which readers skip: write it as "" (see module doc).
        fields[0] = pc.if_else(pc.equal(fields[0], ""), '""', fields[0])
    # Appending the terminator to the last field costs one pass over one column instead of over whole rows.
    fields[-1] = pc.binary_join_element_wise(fields[-1], dialect.line_terminator, "")
    if len(fields) == 1:
        return fields[0]
    return pc.binary_join_element_wise(*fields, ",")


def _format_column(values: pa.Array, column: Column, dialect: CsvDialect) -> pa.Array:
    with column_errors(values, column):
        if column.type is ColumnType.STRING:
            text = dialect.text_fields(values.cast(pa.string()))
        elif column.type is ColumnType.TIMESTAMP:
            text = timestamp_text(values, column.name)
        elif column.type is ColumnType.FLOAT:
            text = values.cast(pa.float64()).cast(pa.string())
        elif column.type is ColumnType.INTEGER:
            text = values.cast(pa.int64()).cast(pa.string())
        else:
            text = values.cast(pa.bool_()).cast(pa.string())  # Arrow spells booleans true/false
    return pc.fill_null(text, "")


def _batch_chunks(batch: pa.RecordBatch, columns: Sequence[Column]) -> Iterator[pa.RecordBatch]:
    """Slices of the batch whose CSV text is about _CHUNK_TARGET_BYTES at most (estimated, not measured)."""
    return batch_chunks(
        batch, columns, target_bytes=_CHUNK_TARGET_BYTES, widths=_FIXED_WIDTH, row_bytes=len(columns) + 1
    )


def csv_writer(
    *,
    columns: Sequence[Column],
    titles: Sequence[str],
    target: PartTarget,
    dialect: CsvDialect = RFC4180,
    gzip: bool = True,
    compression_level: int = 1,
) -> TextPartWriter:
    """The PartWriter of CSV in `dialect`, gzipped (ISA-L level 0-3) or plain (then compressed_bytes equals
    bytes)."""
    return TextPartWriter(
        target,
        open_file=text_file_opener(gzip=gzip, compression_level=compression_level, deflate=_deflate),
        format_rows=partial(csv_rows, columns=columns, dialect=dialect),
        chunks=partial(_batch_chunks, columns=columns),
        header=csv_header(titles, dialect),
    )


def write_csv_gzip_parts(
    batches: Iterable[pa.RecordBatch],
    *,
    columns: Sequence[Column],
    directory: Path,
    name_for_part: Callable[[int], str],
    part_bytes: int,
    compression_level: int = 1,
    header: Sequence[str] | None = None,
    max_bytes: int | None = None,
    control: WriteControl | None = None,
) -> list[PartFile]:
    """Write the batches as gzipped CSV parts in `directory` under temporary names; return them in order.

    - Part i is written at `temporary_path(directory, name_for_part(i))`; nothing is ever written under a
      final name, so publishing (all or nothing) is the storage layer's job.
    - A new part starts when the next row would take the current one past `part_bytes` uncompressed bytes;
      every part starts with the header, and a single row longer than part_bytes goes alone in its part.
      Zero rows still give one part, holding only the header.
    - `compression_level` is an ISA-L level, 0 to 3 (zlib is used at the same level when ISA-L is missing).
    - `control` (see WriteControl) is asked `should_stop()` before each batch is pulled from `batches` (True
      raises WriteCanceled); told `progress(rows, bytes)`, the running totals (uncompressed bytes, headers
      included), as batches are written (small batches are merged first, so not necessarily once per input
      batch); and handed each part through `part_finished(part)` as soon as its file is complete, in order, on
      the writer's background thread (so the next part is formatted meanwhile; a slow part_finished holds the
      writer back, which bounds how many finished parts wait). From then on the file is the control's: it
      may move or delete it. Going past `max_bytes` raises WriteLimitExceeded.
    - On any error every file written so far is removed and WriteError (or a subclass) is raised; exceptions
      raised by the callbacks or by the batch iterator (e.g. a warehouse error) pass through unchanged.
    Memory stays bounded by a few batches and formatted chunks, whatever the row count.
    """
    control = control or UNCONTROLLED
    target = PartTarget(directory, name_for_part, part_bytes, control.part_finished)
    writer = csv_writer(
        columns=columns,
        titles=header_titles(columns, header),
        target=target,
        compression_level=compression_level,
    )
    return parts_write(batches, writer, control=control, max_bytes=max_bytes)
