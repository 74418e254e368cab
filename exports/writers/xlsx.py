"""Arrow record batches -> xlsx part files: one sheet each, streamed in constant memory, typed cells.

What a part holds (the package itself: exports.writers.xlsx_package):
- Row 1 is the header (the titles), bold and frozen; then at most MAX_DATA_ROWS = 1,048,575 data rows (Excel's
  1,048,576-row sheet, less the header), after which the next part starts. `part_bytes` rolls parts too, by
  the sheet XML of the rows (uncompressed), which PartFile.bytes counts.
- STRING: a text cell (an inline string), never a formula, whatever it starts with; XML's special
  characters are escaped, CR is written `&#13;` (XML would read a raw CR as LF), other control characters as
  OOXML's `_xHHHH_`, and a literal `_x` as `_x005F_x` so that Excel does not decode text that only looks like
  an escape. Leading or trailing whitespace is kept (`xml:space="preserve"`). Excel holds at most 32,767
  characters in a cell: longer values are cut there (Excel would otherwise refuse or "repair" the file).
- INTEGER and FLOAT: number cells with the CSV's digits (Excel itself keeps 15 significant digits). A float
  Excel cannot hold is a text cell with the CSV's spelling: NaN and the infinities (`nan`, `inf`, `-inf`), and
  magnitudes above 9.99999999999999e307 or, other than 0, below 2.2250738585072014e-308 (subnormals).
- BOOLEAN: a boolean cell. TIMESTAMP (UTC): a date cell (Excel serial day, floored to the millisecond)
  shown as `yyyy-mm-dd hh:mm:ss.000`, in a widened column. Excel has no date before 1900-03-01 (its serials
  1-60 carry the 1900 leap-year bug): earlier instants are text cells in the CSV's form,
  `YYYY-MM-DDTHH:MM:SS.mmmZ`.
- NULL, and the empty string (as in the CSV), is an empty cell.
Cells and rows carry no `r` reference: it is optional (ECMA-376 §18.3.1.4, §18.3.1.73) and readers place
them in order; leaving it out lets a chunk's rows be formatted before its part (and so its row numbers) is
known, with no per-row work.

Speed: as the CSV writer, each column becomes one string array of cell XML through Arrow kernels, one kernel
joins a row's cells, and the sheet XML is deflated by ISA-L on a background thread. No Python runs per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc

from exports.schema import Column, ColumnType
from exports.writers.arrow_text import batch_chunks, column_errors, replaced, timestamp_millis, timestamp_text
from exports.writers.parts import PartTarget, check_width
from exports.writers.text_parts import TextPartWriter, check_compression_level
from exports.writers.xlsx_package import STYLE_BOLD, STYLE_TIMESTAMP, XlsxFile, sheet_prologue

MAX_DATA_ROWS = 1_048_575
MAX_CELL_CHARACTERS = 32_767
# Above this a part may pass 4 GiB (a last row may overshoot part_bytes): then the zip needs ZIP64.
_ZIP64_PART_BYTES = 3 << 30
_CHUNK_TARGET_BYTES = 32 * 1024 * 1024
_WIDTH = {  # a cell's XML, at most, beyond a string's own bytes; used only to size chunks
    ColumnType.STRING: 50,
    ColumnType.INTEGER: 35,
    ColumnType.FLOAT: 45,
    ColumnType.BOOLEAN: 20,
    ColumnType.TIMESTAMP: 60,
}
_EMPTY = "<c/>"
_TEXT = ('<c t="inlineStr"><is><t>', "</t></is></c>")
_TEXT_KEPT = ('<c t="inlineStr"><is><t xml:space="preserve">', "</t></is></c>")
_NUMBER = ("<c><v>", "</v></c>")
_DATE = (f'<c s="{STYLE_TIMESTAMP}"><v>', "</v></c>")
_TRUE, _FALSE = '<c t="b"><v>1</v></c>', '<c t="b"><v>0</v></c>'
# Excel's number range (its specifications); beyond it a value is text.
_EXCEL_LARGEST = 9.99999999999999e307
_EXCEL_SMALLEST = 2.2250738585072014e-308  # the smallest normal double: Excel has no subnormals
# Milliseconds since the epoch of 1900-03-01T00:00:00Z (serial 61), and the serial of the epoch.
_FIRST_DATE_MS = -2_203_891_200_000
_EPOCH_SERIAL = 25_569.0
_DAY_MS = 86_400_000.0

# XML text escapes, in order: the `_x` guard first (the control escapes insert `_x`), `&` before the
# entities that insert `&`.
_CONTROLS = [chr(code) for code in (*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20))] + ["\ufffe", "\uffff"]
XML_ESCAPES = {
    "_x": "_x005F_x",
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    "\r": "&#13;",
    **{character: f"_x{ord(character):04X}_" for character in _CONTROLS},
}
_EDGE_SPACE = " \t\n\r"  # the whitespace XML would let a reader drop at the ends of a text


def xlsx_rows(batch: pa.RecordBatch, columns: Sequence[Column]) -> pa.Array:
    """One `<row>` of cell XML per row."""
    check_width(batch, columns)
    cells = [_format_column(batch.column(i), column) for i, column in enumerate(columns)]
    return pc.binary_join_element_wise("<row>", *cells, "</row>", "")


def xlsx_header(titles: Sequence[str]) -> bytes:
    """The header row: the titles as bold text cells."""
    text = xml_text(pa.array(titles, pa.string()))
    row = pc.binary_join_element_wise(
        f'<c t="inlineStr" s="{STYLE_BOLD}"><is><t xml:space="preserve">', text, _TEXT[1], ""
    )
    return ("<row>" + "".join(row.to_pylist()) + "</row>").encode("utf-8")


def xml_text(text: pa.Array) -> pa.Array:
    """Strings escaped for an OOXML text element (ST_Xstring): see the module doc."""
    return replaced(text, XML_ESCAPES)


def _format_column(values: pa.Array, column: Column) -> pa.Array:
    with column_errors(values, column):
        if column.type is ColumnType.STRING:
            cells = _text_cells(values.cast(pa.string()))
        elif column.type is ColumnType.TIMESTAMP:
            cells = _date_cells(values, column.name)
        elif column.type is ColumnType.FLOAT:
            cells = _float_cells(values.cast(pa.float64()))
        elif column.type is ColumnType.INTEGER:
            cells = _wrapped(values.cast(pa.int64()).cast(pa.string()), _NUMBER)
        else:
            cells = pc.if_else(values.cast(pa.bool_()), _TRUE, _FALSE)
    return pc.fill_null(cells, _EMPTY)


def _wrapped(text: pa.Array, around: tuple[str, str]) -> pa.Array:
    return pc.binary_join_element_wise(around[0], text, around[1], "")


def _text_cells(text: pa.Array) -> pa.Array:
    lengths = pc.binary_length(text)  # bytes: at least the characters
    longest = pc.max(lengths).as_py()
    if longest is not None and longest > MAX_CELL_CHARACTERS:
        text = pc.utf8_slice_codeunits(text, 0, MAX_CELL_CHARACTERS)
        lengths = pc.binary_length(text)
    escaped = xml_text(text)
    cells = _wrapped(escaped, _TEXT)
    # Whitespace at either end is rare: those few cells are made again with xml:space="preserve". Trimming
    # and comparing lengths is ~7x faster than a regex.
    kept = pc.not_equal(pc.binary_length(pc.ascii_trim(text, _EDGE_SPACE)), lengths)
    if pc.any(kept).as_py():
        cells = pc.replace_with_mask(cells, kept, _wrapped(pc.filter(escaped, kept), _TEXT_KEPT))
    empty = pc.equal(lengths, 0)
    if pc.any(empty).as_py():  # an empty string is an empty cell, as NULL is
        cells = pc.if_else(empty, _EMPTY, cells)
    return cells


def _float_cells(values: pa.Array) -> pa.Array:
    text = values.cast(pa.string())
    cells = _wrapped(text, _NUMBER)
    magnitude = pc.abs(values)
    # False for NaN and the infinities too: every comparison with NaN is false, and inf is above the maximum.
    in_range = pc.and_(
        pc.less_equal(magnitude, _EXCEL_LARGEST),
        pc.or_(pc.equal(magnitude, 0.0), pc.greater_equal(magnitude, _EXCEL_SMALLEST)),
    )
    if pc.all(in_range).as_py() is False:
        cells = pc.if_else(in_range, cells, _wrapped(text, _TEXT))
    return cells


def _date_cells(values: pa.Array, name: str) -> pa.Array:
    millis = timestamp_millis(values, name).cast(pa.int64())
    serial = pc.add(pc.divide(millis.cast(pa.float64()), _DAY_MS), _EPOCH_SERIAL)
    cells = _wrapped(serial.cast(pa.string()), _DATE)
    is_date = pc.greater_equal(millis, _FIRST_DATE_MS)
    if pc.all(is_date).as_py() is False:  # before Excel's first date: text, as in the CSV
        cells = pc.if_else(is_date, cells, _wrapped(timestamp_text(values, name), _TEXT))
    return cells


def xlsx_writer(
    *, columns: Sequence[Column], titles: Sequence[str], target: PartTarget, compression_level: int = 1
) -> TextPartWriter:
    """The PartWriter of xlsx: a new part after MAX_DATA_ROWS data rows or when the next row would take the
    sheet's row XML past part_bytes. `compression_level` is the ISA-L level (0-3) of the zip's deflate."""
    check_compression_level(compression_level)
    dates = [i + 1 for i, column in enumerate(columns) if column.type is ColumnType.TIMESTAMP]
    open_file = partial(
        XlsxFile,
        prologue=sheet_prologue(dates),
        compression_level=compression_level,
        zip64=target.part_bytes > _ZIP64_PART_BYTES,
    )
    return TextPartWriter(
        target,
        open_file=open_file,
        format_rows=partial(xlsx_rows, columns=columns),
        chunks=partial(
            batch_chunks, columns=columns, target_bytes=_CHUNK_TARGET_BYTES, widths=_WIDTH, row_bytes=11
        ),
        header=xlsx_header(titles),
        max_rows=MAX_DATA_ROWS,
    )
