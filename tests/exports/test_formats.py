"""Every output format through `write_parts`, read back by a reader nobody here wrote (the stdlib's csv, gzip
and json, openpyxl, pyarrow.parquet), with values equal to the input batches; plus the options' validation,
part rolling, cancel and cap, and the default output's bytes being exactly write_csv_gzip_parts's.

Expected values are built from the CSV writer's own reference (tests.exports.test_csv_writer), one small
function per format saying what that format does with each type.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import re
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from openpyxl.utils.escape import unescape

from exports.errors import WriteCanceled, WriteError, WriteLimitExceeded
from exports.schema import Column, ColumnType
from exports.writers import (
    OutputFormat,
    PartFile,
    parquet,
    temporary_path,
    write_csv_gzip_parts,
    write_parts,
    xlsx,
)
from tests.exports.test_csv_writer import ALL_TYPES, batch_of, python_rows, reference_value, split, tables, us

OUTPUTS = {
    "csv": OutputFormat(),
    "csv-none": OutputFormat(compression="none"),
    "excel": OutputFormat(dialect="excel"),
    "excel-none": OutputFormat(compression="none", dialect="excel"),
    "no_newline": OutputFormat(dialect="no_newline"),
    "ndjson": OutputFormat(format="ndjson"),
    "ndjson-none": OutputFormat(format="ndjson", compression="none"),
    "xlsx": OutputFormat(format="xlsx"),
    "parquet": OutputFormat(format="parquet"),
}

# The CSV writer's tricky values, and those that only spreadsheets, JSON and Parquet care about, by column.
TEXTS = [
    "plain",
    "a,b",
    'say "hi"',
    "line\nbreak",
    "carriage\rreturn",
    " spaced ",
    "",
    None,
    "ünïcödé 😀, ok",
    "=SUM(A1:A9)",
    "+33 1 23",
    "-1",
    "@cmd",
    "\tTAB",
    'back\\slash "q", \\n',
    "<a href='x'>&amp;</a> ]]>",
    "ctl \x00\x01\x1f\x7f \u2028 _x0041_x0042_ end",
    "\r\n",
]
COUNTS = [1, -42, 2**63 - 1, -(2**63), 0, None, *range(7, 19)]
DURATIONS = [1.5, -0.25, 1e-07, 3.0, 1e22, None, 0.1 + 0.2, -0.0, math.nan, math.inf, -math.inf, 5e-324]
DURATIONS += [1.7976931348623157e308, 0.000001, 1e10, 2.5, -1.5, 1234567890.5]
FLAGS = [True, False, None] * 6
_MOMENTS = (  # UTC, "none" for NULL
    "2019-11-25T00:00:00 2019-11-25T12:34:56.789999 1969-12-31T23:59:59.999999 1900-01-01T00:00:00.000500 "
    "0001-01-01T00:00:00 none 9999-12-31T23:59:59.999999 1900-03-01T00:00:00 1900-02-28T23:59:59.999 "
    "1999-12-31T23:59:59.9995 2019-01-01T00:00:00.000001 1970-01-01T00:00:00.001 none none none none none none"
)
MOMENTS = [None if text == "none" else us(text) for text in _MOMENTS.split()]
TRICKY = list(zip(TEXTS, COUNTS, DURATIONS, FLAGS, MOMENTS, strict=True))


# --- writing and reading back -------------------------------------------------------------------------


def write(
    batches: Sequence[pa.RecordBatch] | Iterator[pa.RecordBatch],
    output: OutputFormat,
    directory: Path,
    columns: Sequence[Column] = ALL_TYPES,
    **options: Any,
) -> list[PartFile]:
    options.setdefault("part_bytes", 1 << 30)
    return write_parts(
        batches,
        output=output,
        columns=columns,
        directory=directory,
        name_for_part=lambda index: f"guid__{index:012d}.{output.extension}",
        **options,
    )


def read_back(output: OutputFormat, part: PartFile) -> tuple[list[Any], list[list[Any]]]:
    """The part's header titles and rows, as a reader nobody here wrote sees them."""
    raw = part.path.read_bytes()
    if output.gzipped:
        raw = gzip.decompress(raw)
    if output.format == "csv":
        return _csv_read(output.dialect, raw)
    if output.format == "ndjson":
        lines = raw.decode("utf-8").split("\n")  # not splitlines(): U+2028 and NEL are data in JSON strings
        assert lines[-1] == ""
        objects = [json.loads(line) for line in lines[:-1]]
        return (list(objects[0]) if objects else []), [list(obj.values()) for obj in objects]
    if output.format == "xlsx":
        sheet = openpyxl.load_workbook(io.BytesIO(raw), read_only=True).active
        header, *rows = [[_excel_text(v) for v in row] for row in sheet.iter_rows(values_only=True)]
        return header, rows
    table = pq.read_table(io.BytesIO(raw))
    return table.column_names, [list(row.values()) for row in table.to_pylist()]


def _csv_read(dialect: str, raw: bytes) -> tuple[list[Any], list[list[Any]]]:
    text = raw.decode("utf-8")
    if dialect == "excel":
        assert text.startswith("\ufeff") and text.endswith(
            "\r\n"
        )  # the BOM starts every part, not only the first
        text = text[1:]
    else:
        assert text.endswith("\n") and not text.endswith("\r\n")
    if dialect == "no_newline":
        # One record per physical line, whatever the values hold. Python's csv splits the fields and undoes
        # `\\` and `\"`, but reads `\r` and `\n` as plain r and n (see csv_dialects): expected() says so.
        header, *rows = csv.reader(text.split("\n")[:-1], escapechar="\\", doublequote=False)
        return header, rows
    header, *rows = csv.reader(io.StringIO(text, newline=""))
    return header, rows


def _excel_text(value: Any) -> Any:
    """Excel decodes OOXML's `_xHHHH_` escapes in text; openpyxl's reader leaves that to its caller."""
    return unescape(value) if isinstance(value, str) else value


# --- what each format holds for a value ---------------------------------------------------------------


def expected(output: OutputFormat, column_type: ColumnType, value: Any) -> Any:
    if output.format == "csv":
        text = reference_value(column_type, value)
        if column_type is ColumnType.STRING and output.dialect == "excel" and re.match(r"[=+\-@\t\r]", text):
            return "'" + text
        if output.dialect == "no_newline":
            return text.replace("\r", "r").replace("\n", "n")
        return text
    if value is None:
        return None
    if column_type is ColumnType.TIMESTAMP:
        return _expected_timestamp(output, value)
    if column_type is ColumnType.FLOAT and output.format == "ndjson" and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if column_type is ColumnType.FLOAT and output.format == "xlsx":
        # Excel's numbers: at most 9.99999999999999e307, and no subnormals.
        excel_number = abs(value) <= 9.99999999999999e307 and (value == 0 or abs(value) >= sys.float_info.min)
        return value if excel_number else reference_value(column_type, value)
    if column_type is ColumnType.STRING and output.format == "xlsx":
        return value[:32767] or None  # an empty string is an empty cell, as in the CSV
    return value


def _expected_timestamp(output: OutputFormat, moment: datetime) -> Any:
    floored = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    if output.format == "ndjson" or (output.format == "xlsx" and floored < datetime(1900, 3, 1)):
        return reference_value(ColumnType.TIMESTAMP, moment)
    return floored.replace(tzinfo=UTC) if output.format == "parquet" else floored


def comparable(rows: list[list[Any]]) -> list[list[Any]]:
    """NaN equal to NaN; numbers compared by value (JSON and openpyxl read 3.0 as 3)."""
    return [["NaN!" if isinstance(v, float) and math.isnan(v) else v for v in row] for row in rows]


def expected_rows(
    output: OutputFormat, columns: Sequence[Column], rows: Sequence[Sequence[Any]]
) -> list[Any]:
    values = python_rows(columns, rows)
    return [[expected(output, c.type, v) for c, v in zip(columns, row, strict=True)] for row in values]


# --- every format round-trips -------------------------------------------------------------------------


@pytest.mark.parametrize("name", OUTPUTS)
def test_tricky_values_round_trip(tmp_path, name):
    output = OUTPUTS[name]
    parts = write([batch_of(ALL_TYPES, TRICKY)], output, tmp_path)
    assert len(parts) == 1 and parts[0].rows == len(TRICKY)
    header, rows = read_back(output, parts[0])
    assert header == [c.name for c in ALL_TYPES]
    assert comparable(rows) == comparable(expected_rows(output, ALL_TYPES, TRICKY))


@settings(max_examples=25, deadline=None)
@given(tables())
def test_random_tables_round_trip_in_every_format(table):
    columns, rows, cuts = table
    for output in OUTPUTS.values():
        with tempfile.TemporaryDirectory() as directory:
            parts = write(split(columns, rows, cuts), output, Path(directory), columns)
            _, read = read_back(output, parts[0])
        assert comparable(read) == comparable(expected_rows(output, columns, rows)), output


def test_the_default_output_writes_exactly_what_write_csv_gzip_parts_writes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    batches = split(ALL_TYPES, TRICKY, [3, 10])
    ours = write(batches, OutputFormat(), tmp_path / "a", part_bytes=300, header=["N", "C", "D", "F", "T"])
    theirs = write_csv_gzip_parts(
        batches,
        columns=ALL_TYPES,
        directory=tmp_path / "b",
        name_for_part=lambda index: f"guid__{index:012d}.csv.gz",
        part_bytes=300,
        header=["N", "C", "D", "F", "T"],
    )
    assert len(ours) > 2
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.path.read_bytes() == reference.path.read_bytes()
        assert (mine.name, mine.rows, mine.bytes, mine.sha256) == (
            reference.name,
            reference.rows,
            reference.bytes,
            reference.sha256,
        )


# --- what each format writes, byte for byte where it is text -----------------------------------------

SAMPLE = [("=1+2", 1, -0.5, True, us("2019-11-25T12:34:56.789999")), ('a,"b"\n', None, None, None, None)]


def test_csv_dialects_byte_for_byte(tmp_path):
    def text(output: OutputFormat) -> bytes:
        with tempfile.TemporaryDirectory(dir=tmp_path) as directory:
            (part,) = write(
                [batch_of(ALL_TYPES, SAMPLE)], output, Path(directory), header=["A=b", "B", "C", "D", "E"]
            )
            raw = part.path.read_bytes()
            return gzip.decompress(raw) if output.gzipped else raw

    assert text(OutputFormat(compression="none")) == (
        b'A=b,B,C,D,E\n=1+2,1,-0.5,true,2019-11-25T12:34:56.789Z\n"a,""b""\n",,,,\n'
    )
    assert (
        text(OutputFormat(dialect="excel"))
        == (
            '\ufeffA=b,B,C,D,E\r\n\'=1+2,1,-0.5,true,2019-11-25T12:34:56.789Z\r\n"a,""b""\n",,,,\r\n'
        ).encode()
    )
    assert text(OutputFormat(dialect="no_newline", compression="none")) == (
        b'A=b,B,C,D,E\n=1+2,1,-0.5,true,2019-11-25T12:34:56.789Z\n"a,\\"b\\"\\n",,,,\n'
    )


def test_ndjson_byte_for_byte_with_display_names_as_keys(tmp_path):
    titles = ["Event name", "Count", "Duration", "Flag", 'Time "UTC"']
    (part,) = write(
        [batch_of(ALL_TYPES, SAMPLE)],
        OutputFormat(format="ndjson", compression="none"),
        tmp_path,
        header=titles,
    )
    assert part.path.read_bytes() == (
        b'{"Event name":"=1+2","Count":1,"Duration":-0.5,"Flag":true,"Time \\"UTC\\"":"2019-11-25T12:34:56.789Z"}\n'
        b'{"Event name":"a,\\"b\\"\\n","Count":null,"Duration":null,"Flag":null,"Time \\"UTC\\"":null}\n'
    )
    assert part.bytes == part.compressed_bytes == len(part.path.read_bytes())


def test_xlsx_cells_are_typed_never_formulas_with_a_bold_frozen_header(tmp_path):
    (part,) = write([batch_of(ALL_TYPES, TRICKY)], OutputFormat(format="xlsx"), tmp_path)
    with zipfile.ZipFile(part.path) as package:
        assert package.testzip() is None
        sheet_xml = package.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml and "<f " not in sheet_xml
    assert '<t xml:space="preserve"> spaced </t>' in sheet_xml
    book = openpyxl.load_workbook(io.BytesIO(part.path.read_bytes()))  # the full reader: styles and types
    sheet = book.active
    assert sheet.freeze_panes == "A2"
    assert all(cell.font.b for cell in sheet[1])
    formula = sheet.cell(row=11, column=1)
    assert (formula.value, formula.data_type) == ("=SUM(A1:A9)", "s")
    assert sheet.cell(row=2, column=2).data_type == "n"
    assert sheet.cell(row=2, column=4).data_type == "b"
    moment = sheet.cell(row=2, column=5)
    assert moment.is_date and moment.number_format == "yyyy-mm-dd hh:mm:ss.000"
    assert sheet.max_row == len(TRICKY) + 1


def test_an_xlsx_part_that_may_outgrow_4_gib_is_a_zip64_package(tmp_path):
    output = OutputFormat(format="xlsx")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (small,) = write([batch_of(ALL_TYPES, TRICKY)], output, tmp_path / "a", part_bytes=1 << 30)
    (large,) = write([batch_of(ALL_TYPES, TRICKY)], output, tmp_path / "b", part_bytes=4 << 30)
    assert b"PK\x06\x06" not in small.path.read_bytes()  # ZIP64 only where needed: some readers stumble on it
    assert b"PK\x06\x06" in large.path.read_bytes()  # the ZIP64 end of central directory record
    for part in (small, large):
        with zipfile.ZipFile(part.path) as package:
            assert package.testzip() is None
        assert comparable(read_back(output, part)[1]) == comparable(expected_rows(output, ALL_TYPES, TRICKY))


def test_xlsx_cuts_text_at_excels_cell_limit(tmp_path):
    columns = [Column("Long", ColumnType.STRING)]
    (part,) = write(
        [batch_of(columns, [("é" * 40_000,), ("ok",)])], OutputFormat(format="xlsx"), tmp_path, columns
    )
    assert read_back(OutputFormat(format="xlsx"), part)[1] == [["é" * 32_767], ["ok"]]


def test_parquet_keeps_types_in_zstd_row_groups_of_bounded_size(tmp_path, monkeypatch):
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 40)
    rows = TRICKY * 10
    (part,) = write(split(ALL_TYPES, rows, [7, 100]), OutputFormat(format="parquet"), tmp_path)
    metadata = pq.ParquetFile(part.path).metadata
    assert metadata.num_rows == len(rows) == part.rows
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert sizes == [40, 40, 40, 40, 20]
    assert {metadata.row_group(0).column(i).compression for i in range(len(ALL_TYPES))} == {"ZSTD"}
    assert pq.read_schema(part.path) == pa.schema(
        [
            ("Name", pa.string()),
            ("Count", pa.int64()),
            ("Duration", pa.float64()),
            ("Flag", pa.bool_()),
            ("TimeStamp", pa.timestamp("ms", tz="UTC")),
        ]
    )


def test_parquet_dictionary_encodes_only_columns_with_few_distinct_values(tmp_path):
    columns = [Column("EventName", ColumnType.STRING), Column("SessionId", ColumnType.STRING)]
    batch = batch_of(columns, [("CallEvent", f"session-{i:06d}") for i in range(1000)])
    (part,) = write([batch], OutputFormat(format="parquet"), tmp_path, columns)
    row_group = pq.ParquetFile(part.path).metadata.row_group(0)
    assert "RLE_DICTIONARY" in row_group.column(0).encodings
    assert "RLE_DICTIONARY" not in row_group.column(1).encodings
    assert pq.read_table(part.path).to_pylist()[999] == {
        "EventName": "CallEvent",
        "SessionId": "session-000999",
    }


# --- parts ------------------------------------------------------------------------------------------


def many_rows(count: int) -> tuple[list[Column], pa.RecordBatch]:
    columns = [Column("SessionId", ColumnType.STRING), Column("Segments", ColumnType.INTEGER)]
    return columns, batch_of(columns, [(f"session-{i:06d}", i) for i in range(count)])


@pytest.mark.parametrize("name", OUTPUTS)
def test_parts_roll_at_part_bytes_and_hold_every_row_once(tmp_path, name):
    output = OUTPUTS[name]
    columns, batch = many_rows(1000)
    handed: list[PartFile] = []
    parts = write(
        [batch.slice(0, 300), batch.slice(300)],
        output,
        tmp_path,
        columns,
        part_bytes=6000,
        control=Taking(handed),
    )
    assert handed == parts and len(parts) > 2
    rows: list[list[Any]] = []
    for index, part in enumerate(parts):
        assert part.name == f"guid__{index:012d}.{output.extension}"
        assert part.path == temporary_path(tmp_path, part.name)
        raw = part.path.read_bytes()
        assert part.sha256 == hashlib.sha256(raw).hexdigest() and part.compressed_bytes == len(raw)
        assert part.bytes <= 6000 * (1.05 if output.format == "parquet" else 1)  # parquet's is an estimate
        header, part_rows = read_back(output, part)
        assert header == ["SessionId", "Segments"]
        rows.extend(part_rows)
    assert sum(part.rows for part in parts) == 1000
    want = [[f"session-{i:06d}", str(i) if output.format == "csv" else i] for i in range(1000)]
    assert rows == want


def test_xlsx_parts_roll_at_max_rows_each_with_its_header(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx, "MAX_DATA_ROWS", 4)
    columns, batch = many_rows(10)
    parts = write([batch], OutputFormat(format="xlsx"), tmp_path, columns)
    assert [part.rows for part in parts] == [4, 4, 2]
    read = [read_back(OutputFormat(format="xlsx"), part) for part in parts]
    assert all(header == ["SessionId", "Segments"] for header, _ in read)
    assert [row for _, rows in read for row in rows] == [[f"session-{i:06d}", i] for i in range(10)]


def test_an_xlsx_sheet_holds_excels_maximum_of_rows_then_the_next_part_starts(tmp_path):
    assert xlsx.MAX_DATA_ROWS == 1_048_576 - 1  # Excel's rows per sheet, less the header
    columns = [Column("n", ColumnType.INTEGER)]
    total = xlsx.MAX_DATA_ROWS + 2
    batch = pa.RecordBatch.from_arrays([pa.array(range(total), pa.int64())], names=["n"])
    parts = write([batch], OutputFormat(format="xlsx"), tmp_path, columns)
    assert [part.rows for part in parts] == [xlsx.MAX_DATA_ROWS, 2]
    with zipfile.ZipFile(parts[0].path) as package:  # counted in the XML: openpyxl would take minutes
        sheet_xml = package.read("xl/worksheets/sheet1.xml")
    assert sheet_xml.count(b"<row>") == 1_048_576
    assert sheet_xml.endswith(
        f"<row><c><v>{xlsx.MAX_DATA_ROWS - 1}</v></c></row></sheetData></worksheet>".encode()
    )
    assert read_back(OutputFormat(format="xlsx"), parts[1]) == (
        ["n"],
        [[xlsx.MAX_DATA_ROWS], [xlsx.MAX_DATA_ROWS + 1]],
    )


@pytest.mark.parametrize("name", OUTPUTS)
def test_zero_rows_make_one_part_with_only_the_header(tmp_path, name):
    output = OUTPUTS[name]
    (part,) = write([], output, tmp_path)
    assert part.rows == 0
    header, rows = read_back(output, part)
    assert rows == []
    assert header == ([] if output.format == "ndjson" else [c.name for c in ALL_TYPES])


# --- cancel, cap, failures ------------------------------------------------------------------------


class Taking:
    """A WriteControl that records each finished part (and may be told to stop)."""

    def __init__(self, handed: list[PartFile], stop_after: int | None = None) -> None:
        self.handed, self.stop_after, self.asked = handed, stop_after, 0

    def should_stop(self) -> bool:
        self.asked += 1
        return self.stop_after is not None and self.asked > self.stop_after

    def progress(self, rows: int, bytes_written: int) -> None:
        pass

    def part_finished(self, part: PartFile) -> None:
        self.handed.append(part)


@pytest.mark.parametrize("name", OUTPUTS)
def test_should_stop_cancels_and_removes_every_file(tmp_path, name):
    columns, batch = many_rows(20_000)
    with pytest.raises(WriteCanceled):
        write(
            [batch, batch, batch], OUTPUTS[name], tmp_path, columns, part_bytes=50_000, control=Taking([], 2)
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", OUTPUTS)
def test_max_bytes_fails_the_export_and_removes_every_file(tmp_path, name):
    columns, batch = many_rows(1000)
    with pytest.raises(WriteLimitExceeded):
        write([batch], OUTPUTS[name], tmp_path, columns, part_bytes=1000, max_bytes=5000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", OUTPUTS)
def test_a_batch_that_does_not_fit_the_columns_is_a_write_error_and_nothing_is_left(tmp_path, name):
    good = batch_of(ALL_TYPES, TRICKY[:2])
    wrong = pa.RecordBatch.from_arrays([pa.array(["not a number"])], names=["n"])
    with pytest.raises(WriteError, match="expected 5"):
        write([good, wrong], OUTPUTS[name], tmp_path)
    with pytest.raises(WriteError, match="cannot write"):
        write([wrong], OUTPUTS[name], tmp_path, [Column("n", ColumnType.INTEGER)])
    assert list(tmp_path.iterdir()) == []


# --- the options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "extension", "content_type"),
    [
        (OutputFormat(), "csv.gz", "application/gzip"),
        (OutputFormat(compression="none", dialect="excel"), "csv", "text/csv; charset=utf-8"),
        (
            OutputFormat(format="xlsx"),
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        (OutputFormat(format="parquet"), "parquet", "application/vnd.apache.parquet"),
        (OutputFormat(format="ndjson"), "ndjson.gz", "application/gzip"),
        (OutputFormat(format="ndjson", compression="none"), "ndjson", "application/x-ndjson"),
    ],
)
def test_extension_and_content_type(output, extension, content_type):
    assert (output.extension, output.content_type) == (extension, content_type)


def test_parse_takes_the_defaults_and_raw_strings():
    assert OutputFormat.parse() == OutputFormat() == OutputFormat("csv", "gzip", "rfc4180")
    assert OutputFormat.parse(format="ndjson", compression="none") == OutputFormat("ndjson", "none")
    assert OutputFormat.parse(format="csv", dialect="no_newline").dialect == "no_newline"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"format": "xls"}, "invalid format 'xls': expected one of csv, xlsx, parquet, ndjson"),
        ({"format": "CSV"}, "invalid format 'CSV': expected one of csv, xlsx, parquet, ndjson"),
        ({"format": ""}, "invalid format '': expected one of csv, xlsx, parquet, ndjson"),
        ({"compression": "zstd"}, "invalid compression 'zstd': expected one of gzip, none"),
        ({"dialect": "tsv"}, "invalid dialect 'tsv': expected one of rfc4180, excel, no_newline"),
        ({"format": 1}, "invalid format 1: expected one of csv, xlsx, parquet, ndjson"),
        (
            {"format": "xlsx", "compression": "none"},
            "compression 'none' does not apply to format 'xlsx' (it compresses internally); "
            "compression applies to csv, ndjson",
        ),
        (
            {"format": "ndjson", "dialect": "excel"},
            "dialect 'excel' does not apply to format 'ndjson'; only to csv",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_value_and_the_allowed_ones(raw, message):
    with pytest.raises(ValueError) as caught:
        OutputFormat.parse(**raw)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("output", "options", "message"),
    [
        (OutputFormat(format="xlsx"), {"part_bytes": 0}, "part_bytes"),
        (OutputFormat(format="parquet"), {"compression_level": 4}, "compression_level"),
        (OutputFormat(format="ndjson"), {"header": ["one"]}, "header"),
        (OutputFormat(format="ndjson"), {"header": ["a", "a", "b", "c", "d"]}, "must be distinct"),
        (OutputFormat(format="parquet"), {"header": ["a", "a", "b", "c", "d"]}, "must be distinct"),
    ],
)
def test_bad_writer_options_are_refused_before_writing(tmp_path, output, options, message):
    with pytest.raises(ValueError, match=message):
        write([], output, tmp_path, **options)
    assert list(tmp_path.iterdir()) == []
