"""The gzipped CSV writer: the dialect byte for byte, part rolling, cleanup on failure.

The fast path is checked against `reference_csv`, a slow formatter built on the stdlib `csv` module and one
obviously-correct function per type.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import math
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exports.errors import WriteCanceled, WriteError, WriteLimitExceeded
from exports.schema import Column, ColumnType, arrow_schema
from exports.writers import csv_gzip
from exports.writers.csv_gzip import PartFile, temporary_path, write_csv_gzip_parts

# --- the reference formatter (tests only) ----------------------------------------------------------


def reference_float(value: float) -> str:
    """Shortest round-trip digits (Python's repr), plain for decimal exponents -6..9, else d.ddde±n."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    number = Decimal(repr(abs(value))).normalize()
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    scientific = len(digits) - 1 + exponent
    if number.is_zero():
        return sign + "0"
    if -6 <= scientific <= 9:
        return sign + format(number, "f")
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'+' if scientific >= 0 else '-'}{abs(scientific)}"


def reference_value(column_type: ColumnType, value: Any) -> str:
    if value is None:
        return ""
    if column_type is ColumnType.STRING:
        return str(value)
    if column_type is ColumnType.INTEGER:
        return str(int(value))
    if column_type is ColumnType.BOOLEAN:
        return "true" if value else "false"
    if column_type is ColumnType.FLOAT:
        return reference_float(value)
    moment: datetime = value  # naive UTC; the millisecond is the microsecond floored
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


def reference_line(fields: Sequence[str]) -> str:
    # Python 3.11's csv quotes CR only when it is part of the line terminator: write with CRLF, then swap the
    # terminator for LF. The terminator is appended after the fields, so nothing inside them changes.
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerow(fields)
    line = buffer.getvalue()
    assert line.endswith("\r\n")
    return line[:-2] + "\n"


def reference_csv(columns: Sequence[Column], rows: Sequence[Sequence[Any]], header: bool = True) -> bytes:
    lines = [reference_line([c.name for c in columns])] if header else []
    for row in rows:
        lines.append(reference_line([reference_value(c.type, v) for c, v in zip(columns, row, strict=True)]))
    return "".join(lines).encode("utf-8")


# --- helpers ---------------------------------------------------------------------------------------


def batch_of(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
    arrays = [pa.array([row[i] for row in rows], type=c.type.arrow) for i, c in enumerate(columns)]
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema(list(columns)))


def part_name(index: int) -> str:
    return f"guid_QueryExport_1__{index:012d}.csv.gz"


class Control:
    """A WriteControl made of plain functions, each optional."""

    def __init__(self, should_stop=None, progress=None, on_part=None) -> None:
        self._should_stop, self._progress, self._on_part = should_stop, progress, on_part

    def should_stop(self) -> bool:
        return bool(self._should_stop and self._should_stop())

    def progress(self, rows: int, bytes_written: int) -> None:
        if self._progress:
            self._progress(rows, bytes_written)

    def part_finished(self, part: PartFile) -> None:
        if self._on_part:
            self._on_part(part)


def write(
    batches: Sequence[pa.RecordBatch] | Iterator[pa.RecordBatch],
    columns,
    directory: Path,
    *,
    should_stop=None,
    progress=None,
    on_part=None,
    **options,
):
    options.setdefault("part_bytes", 1 << 30)
    control = Control(should_stop, progress, on_part) if should_stop or progress or on_part else None
    return write_csv_gzip_parts(
        batches, columns=columns, directory=directory, name_for_part=part_name, control=control, **options
    )


def written_bytes(parts: Sequence[PartFile]) -> bytes:
    assert len(parts) == 1
    return gzip.decompress(parts[0].path.read_bytes())


def us(text: str) -> int:
    """Microseconds since the epoch of a naive ISO timestamp (read as UTC)."""
    moment = datetime.fromisoformat(text)
    return (moment - datetime(1970, 1, 1)) // _MICROSECOND


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1) - datetime(1970, 1, 1)

ALL_TYPES = [
    Column("Name", ColumnType.STRING),
    Column("Count", ColumnType.INTEGER),
    Column("Duration", ColumnType.FLOAT),
    Column("Flag", ColumnType.BOOLEAN),
    Column("TimeStamp", ColumnType.TIMESTAMP),
]


# --- the dialect, byte for byte --------------------------------------------------------------------


def test_tricky_values_byte_for_byte(tmp_path):
    rows = [
        ("plain", 1, 1.5, True, us("2019-11-25T00:00:00")),
        ("a,b", -42, -0.25, False, us("2019-11-25T12:34:56.789999")),
        ('say "hi"', 9223372036854775807, 1e-07, None, us("1969-12-31T23:59:59.999999")),
        ("line\nbreak", -9223372036854775808, 3.0, True, us("1900-01-01T00:00:00.000500")),
        ("carriage\rreturn", 0, 1e22, False, us("0001-01-01T00:00:00")),
        (" spaced ", None, None, None, None),
        ("", 7, 0.1 + 0.2, True, us("9999-12-31T23:59:59.999999")),
        (None, 8, -0.0, False, us("1970-01-01T00:00:00.001")),
        ("ünïcödé 😀, ok", 9, 1234567890.5, True, us("2000-02-29T23:59:59")),
        ('"', 10, 1e10, False, us("1999-12-31T23:59:59.9995")),
        ("\r\n", 11, 0.000001, True, us("2019-01-01T00:00:00.000001")),
    ]
    parts = write([batch_of(ALL_TYPES, rows)], ALL_TYPES, tmp_path)
    assert (
        written_bytes(parts)
        == (
            "Name,Count,Duration,Flag,TimeStamp\n"
            "plain,1,1.5,true,2019-11-25T00:00:00.000Z\n"
            '"a,b",-42,-0.25,false,2019-11-25T12:34:56.789Z\n'
            '"say ""hi""",9223372036854775807,1e-7,,1969-12-31T23:59:59.999Z\n'
            '"line\nbreak",-9223372036854775808,3,true,1900-01-01T00:00:00.000Z\n'
            '"carriage\rreturn",0,1e+22,false,0001-01-01T00:00:00.000Z\n'
            " spaced ,,,,\n"
            ",7,0.30000000000000004,true,9999-12-31T23:59:59.999Z\n"
            ",8,-0,false,1970-01-01T00:00:00.001Z\n"
            '"ünïcödé 😀, ok",9,1234567890.5,true,2000-02-29T23:59:59.000Z\n'
            '"""",10,1e+10,false,1999-12-31T23:59:59.999Z\n'
            '"\r\n",11,0.000001,true,2019-01-01T00:00:00.000Z\n'
        ).encode()
    )


def test_reference_agrees_with_hand_written_floats():
    cases = {
        1.5: "1.5",
        -0.25: "-0.25",
        3.0: "3",
        1e-7: "1e-7",
        1e-6: "0.000001",
        1.25e-5: "0.0000125",
        999999999.0: "999999999",
        1e10: "1e+10",
        1.2345678901234568e20: "1.2345678901234568e+20",
        5e-324: "5e-324",
        -0.0: "-0",
        float("inf"): "inf",
        float("-inf"): "-inf",
        float("nan"): "nan",
    }
    assert {value: reference_float(value) for value in cases} == cases


def test_nan_and_infinities(tmp_path):
    columns = [Column("x", ColumnType.FLOAT), Column("y", ColumnType.INTEGER)]
    rows = [(float("nan"), 1), (float("inf"), 2), (float("-inf"), 3)]
    assert (
        written_bytes(write([batch_of(columns, rows)], columns, tmp_path)) == b"x,y\nnan,1\ninf,2\n-inf,3\n"
    )


def test_one_column_writes_empty_values_as_quoted_empty_strings(tmp_path):
    # A blank line would be skipped by most readers and lose the row.
    columns = [Column("ErrorReason", ColumnType.STRING)]
    rows = [("x",), (None,), ("",), ("a,b",)]
    data = written_bytes(write([batch_of(columns, rows)], columns, tmp_path))
    assert data == b'ErrorReason\nx\n""\n""\n"a,b"\n'
    assert data == reference_csv(columns, rows)


def test_header_override_is_quoted_when_needed(tmp_path):
    columns = [Column("TimeStamp", ColumnType.TIMESTAMP), Column("FlowName", ColumnType.STRING)]
    parts = write([], columns, tmp_path, header=["Date & Time", "Flow, name"])
    assert written_bytes(parts) == b'Date & Time,"Flow, name"\n'


def test_engine_types_are_cast_to_the_column_types(tmp_path):
    """int32, zoned and nanosecond timestamps, large strings: what an engine may hand back."""
    columns = [
        Column("n", ColumnType.INTEGER),
        Column("t", ColumnType.TIMESTAMP),
        Column("u", ColumnType.TIMESTAMP),
        Column("s", ColumnType.STRING),
    ]
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array([1, None], pa.int32()),
            pa.array([us("2020-01-01T00:00:00.123456"), None], pa.timestamp("us", tz="UTC")),
            pa.array([-1, 1_999_999], pa.timestamp("ns")),
            pa.array(["a,b", None], pa.large_string()),
        ],
        names=["n", "t", "u", "s"],
    )
    assert written_bytes(write([batch], columns, tmp_path)) == (
        b'n,t,u,s\n1,2020-01-01T00:00:00.123Z,1969-12-31T23:59:59.999Z,"a,b"\n,,1970-01-01T00:00:00.001Z,\n'
    )


def test_a_batch_that_does_not_fit_the_columns_is_refused_and_nothing_is_left(tmp_path):
    good = batch_of(ALL_TYPES, [("a", 1, 1.0, True, 0)])
    wrong_width = pa.RecordBatch.from_arrays([pa.array(["x"])], names=["Name"])
    with pytest.raises(WriteError, match="expected 5"):
        write([good, wrong_width], ALL_TYPES, tmp_path)
    wrong_type = pa.RecordBatch.from_arrays([pa.array(["not a number"])], names=["n"])
    with pytest.raises(WriteError, match="cannot write"):
        write([wrong_type], [Column("n", ColumnType.INTEGER)], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_timestamps_outside_years_1_to_9999_are_refused(tmp_path):
    columns = [Column("t", ColumnType.TIMESTAMP)]
    year_10000 = pa.RecordBatch.from_arrays([pa.array([253_402_300_800_000_000], pa.timestamp("us"))], ["t"])
    with pytest.raises(WriteError, match="0001-9999"):
        write([year_10000], columns, tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- the fast path equals the reference on random data ---------------------------------------------

_MIN_US = us("0001-01-01T00:00:00")
_MAX_US = us("9999-12-31T23:59:59.999999")
_TEXT = st.text(
    alphabet=st.sampled_from(list(',"\r\n abcé€😀\t\x00')) | st.characters(exclude_categories=["Cs"]),
    max_size=12,
)
_VALUES: dict[ColumnType, st.SearchStrategy[Any]] = {
    ColumnType.STRING: _TEXT,
    ColumnType.INTEGER: st.integers(-(2**63), 2**63 - 1),
    ColumnType.FLOAT: st.floats(allow_nan=True, allow_infinity=True),
    ColumnType.BOOLEAN: st.booleans(),
    ColumnType.TIMESTAMP: st.integers(_MIN_US, _MAX_US) | st.integers(-86_400_000_000, 86_400_000_000),
}


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[Column], list[tuple[Any, ...]], list[int]]:
    """Columns of random types, rows of random values (None included), and where to split the batches."""
    types = draw(st.lists(st.sampled_from(list(ColumnType)), min_size=1, max_size=6))
    columns = [Column(f"c{i}", column_type) for i, column_type in enumerate(types)]
    row = st.tuples(*(st.none() | _VALUES[c.type] for c in columns))
    rows = draw(st.lists(row, max_size=25))
    cuts = sorted(draw(st.lists(st.integers(0, len(rows)), max_size=3)))
    return columns, rows, cuts


def split(
    columns: Sequence[Column], rows: Sequence[Sequence[Any]], cuts: Sequence[int]
) -> list[pa.RecordBatch]:
    """Slices of one batch (so offsets into shared buffers are exercised), cut at `cuts`."""
    whole = batch_of(columns, rows)
    bounds = [0, *cuts, len(rows)]
    return [whole.slice(a, b - a) for a, b in itertools.pairwise(bounds)]


def python_rows(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """The rows as Arrow hands them back to Python (timestamps become datetimes)."""
    if not rows:
        return []
    table = pa.Table.from_batches([batch_of(columns, rows)])
    return [list(r.values()) for r in table.to_pylist()]


@settings(max_examples=150, deadline=None)
@given(tables())
def test_fast_path_equals_the_reference(table):
    columns, rows, cuts = table
    with tempfile.TemporaryDirectory() as directory:
        parts = write(split(columns, rows, cuts), columns, Path(directory))
        assert written_bytes(parts) == reference_csv(columns, python_rows(columns, rows))
        assert parts[0].rows == len(rows)


@settings(max_examples=40, deadline=None)
@given(tables())
def test_large_batches_are_formatted_in_chunks_with_the_same_result(table):
    columns, rows, cuts = table
    with tempfile.TemporaryDirectory() as directory, pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_gzip, "_CHUNK_TARGET_BYTES", 64)  # a few rows per chunk
        parts = write(split(columns, rows, cuts), columns, Path(directory))
        assert written_bytes(parts) == reference_csv(columns, python_rows(columns, rows))


@settings(max_examples=60, deadline=None)
@given(tables(), st.integers(1, 400))
def test_parts_roll_at_part_bytes_and_add_up_to_the_reference(table, part_bytes):
    columns, rows, cuts = table
    values = python_rows(columns, rows)
    header = reference_csv(columns, [])
    row_bytes = [len(reference_csv(columns, [row], header=False)) for row in values]
    with tempfile.TemporaryDirectory() as directory:
        parts = write(split(columns, rows, cuts), columns, Path(directory), part_bytes=part_bytes)
        contents = [gzip.decompress(part.path.read_bytes()) for part in parts]
    assert all(content.startswith(header) for content in contents)
    assert b"".join(content[len(header) :] for content in contents) == reference_csv(
        columns, values, header=False
    )
    assert sum(part.rows for part in parts) == len(rows)
    first_row = 0
    for index, (part, content) in enumerate(zip(parts, contents, strict=True)):
        assert part.name == part_name(index)
        assert part.bytes == len(content)
        assert part.rows >= 1 or len(parts) == 1
        # Over the limit only when the header and a single row alone do not fit ...
        assert part.bytes <= part_bytes or part.rows <= 1
        first_row += part.rows
        # ... and never closed while the next row would still have fitted.
        if index < len(parts) - 1:
            assert part.bytes + row_bytes[first_row] > part_bytes


# --- parts, files and hashes -----------------------------------------------------------------------


def many_rows(count: int) -> tuple[list[Column], pa.RecordBatch]:
    columns = [Column("SessionId", ColumnType.STRING), Column("Segments", ColumnType.INTEGER)]
    return columns, batch_of(columns, [(f"session-{i:06d}", i) for i in range(count)])


def test_tiny_parts_each_start_with_the_header_and_hash_their_gzip_bytes(tmp_path):
    columns, batch = many_rows(1000)
    parts = write([batch.slice(0, 300), batch.slice(300)], columns, tmp_path, part_bytes=2000)
    assert len(parts) > 5
    assert sum(part.rows for part in parts) == 1000
    lines: list[bytes] = []
    for index, part in enumerate(parts):
        raw = part.path.read_bytes()
        assert part.path == temporary_path(tmp_path, part_name(index))
        assert part.sha256 == hashlib.sha256(raw).hexdigest()
        assert part.compressed_bytes == len(raw)
        with gzip.open(part.path) as stream:  # stdlib gzip reads every part
            content = stream.read()
        assert content.startswith(b"SessionId,Segments\n")
        assert part.bytes == len(content) <= 2000
        lines.extend(content.splitlines()[1:])
    assert lines == [f"session-{i:06d},{i}".encode() for i in range(1000)]
    # Nothing was written under a final name.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f".{part_name(i)}.tmp" for i in range(len(parts))
    )


def test_part_finished_gets_each_part_in_order_and_may_take_its_file(tmp_path):
    columns, batch = many_rows(1000)
    handed: list[tuple[PartFile, bytes]] = []

    def take(part: PartFile) -> None:  # what an uploader does: read the finished file, then remove it
        handed.append((part, part.path.read_bytes()))
        part.path.unlink()

    parts = write([batch.slice(0, 300), batch.slice(300)], columns, tmp_path, part_bytes=2000, on_part=take)
    assert [part for part, _ in handed] == parts and len(parts) > 5
    for part, raw in handed:
        assert part.sha256 == hashlib.sha256(raw).hexdigest() and part.compressed_bytes == len(raw)
    lines = b"".join(gzip.decompress(raw).split(b"\n", 1)[1] for _, raw in handed).splitlines()
    assert lines == [f"session-{i:06d},{i}".encode() for i in range(1000)]
    assert list(tmp_path.iterdir()) == []


def test_a_part_finished_failure_stops_the_export_and_removes_every_file(tmp_path):
    columns, batch = many_rows(1000)

    def refuse(part: PartFile) -> None:
        raise RuntimeError("destination refused the part")

    with pytest.raises(RuntimeError, match="destination refused"):
        write([batch.slice(0, 300), batch.slice(300)], columns, tmp_path, part_bytes=2000, on_part=refuse)
    assert list(tmp_path.iterdir()) == []


def test_a_row_longer_than_part_bytes_goes_alone_in_its_part(tmp_path):
    columns = [Column("Passthrough", ColumnType.STRING)]
    rows = [("short",), ("x" * 500,), ("tail",)]
    parts = write([batch_of(columns, rows)], columns, tmp_path, part_bytes=100)
    assert [part.rows for part in parts] == [1, 1, 1]
    assert gzip.decompress(parts[1].path.read_bytes()) == b"Passthrough\n" + b"x" * 500 + b"\n"


@pytest.mark.parametrize("batches", [[], [pa.RecordBatch.from_pylist([], schema=arrow_schema(ALL_TYPES))]])
def test_zero_rows_still_make_one_part_with_the_header(tmp_path, batches):
    parts = write(batches, ALL_TYPES, tmp_path)
    assert [(part.rows, part.bytes) for part in parts] == [(0, len(b"Name,Count,Duration,Flag,TimeStamp\n"))]
    assert written_bytes(parts) == b"Name,Count,Duration,Flag,TimeStamp\n"


def test_zlib_fallback_writes_the_same_csv(tmp_path, monkeypatch):
    columns, batch = many_rows(50)
    (tmp_path / "isal").mkdir()
    (tmp_path / "zlib").mkdir()
    isal_parts = write([batch], columns, tmp_path / "isal")
    monkeypatch.setattr(csv_gzip, "_deflate", zlib)
    zlib_parts = write([batch], columns, tmp_path / "zlib")
    assert written_bytes(zlib_parts) == written_bytes(isal_parts)
    assert zlib_parts[0].sha256 != isal_parts[0].sha256  # really another compressor


# --- progress, cancel, limits, failures ------------------------------------------------------------


BIG = csv_gzip._COALESCE_ROWS  # batches this large are written one by one, never merged


def test_progress_reports_running_totals(tmp_path):
    columns, batch = many_rows(2 * BIG)
    seen: list[tuple[int, int]] = []
    parts = write(
        [batch.slice(0, BIG), batch.slice(BIG)],
        columns,
        tmp_path,
        part_bytes=100_000,
        progress=lambda *p: seen.append(p),
    )
    assert len(parts) > 1
    assert [rows for rows, _ in seen] == [BIG, 2 * BIG]
    assert seen[-1] == (2 * BIG, sum(part.bytes for part in parts))


def test_small_batches_are_merged_before_formatting(tmp_path):
    columns, batch = many_rows(BIG + 10)
    seen: list[tuple[int, int]] = []
    slices = [batch.slice(start, 1024) for start in range(0, BIG + 10, 1024)]
    write(slices, columns, tmp_path, progress=lambda *p: seen.append(p))
    assert [rows for rows, _ in seen] == [BIG, BIG + 10]


def test_should_stop_cancels_between_batches_and_removes_every_file(tmp_path):
    columns, batch = many_rows(BIG)
    files_seen: list[int] = []
    answers = iter([False, False, True])
    with pytest.raises(WriteCanceled):
        write(
            [batch, batch, batch],
            columns,
            tmp_path,
            part_bytes=100_000,
            should_stop=lambda: next(answers),
            progress=lambda *_: files_seen.append(len(list(tmp_path.iterdir()))),
        )
    assert files_seen[-1] > 1  # parts were on disk when the cancel came
    assert list(tmp_path.iterdir()) == []


def test_max_bytes_fails_the_export_and_removes_every_file(tmp_path):
    columns, batch = many_rows(1000)
    with pytest.raises(WriteLimitExceeded):
        write([batch], columns, tmp_path, part_bytes=1000, max_bytes=5000)
    assert list(tmp_path.iterdir()) == []


def test_an_error_from_the_batch_source_passes_through_and_removes_every_file(tmp_path):
    columns, batch = many_rows(BIG)
    files_seen: list[int] = []

    def source() -> Iterator[pa.RecordBatch]:
        yield batch
        raise RuntimeError("warehouse went away")

    with pytest.raises(RuntimeError, match="warehouse went away"):
        write(
            source(),
            columns,
            tmp_path,
            part_bytes=100_000,
            progress=lambda *_: files_seen.append(len(list(tmp_path.iterdir()))),
        )
    assert len(files_seen) == 1 and files_seen[0] > 1  # parts were on disk when the error came
    assert list(tmp_path.iterdir()) == []


def test_the_batch_source_is_closed_when_the_export_fails(tmp_path):
    columns, batch = many_rows(10)
    closed: list[bool] = []

    def source() -> Iterator[pa.RecordBatch]:
        try:
            yield pa.RecordBatch.from_arrays([pa.array(["x"])], names=["only one column"])
            yield batch
        finally:
            closed.append(True)

    with pytest.raises(WriteError):
        write(source(), columns, tmp_path)
    assert closed == [True]


def test_an_os_error_from_the_batch_source_is_not_taken_for_a_write_error(tmp_path):
    columns, _ = many_rows(1)

    def source() -> Iterator[pa.RecordBatch]:
        raise ConnectionResetError("warehouse connection reset")
        yield

    with pytest.raises(ConnectionResetError):
        write(source(), columns, tmp_path)


def test_a_missing_directory_is_a_retryable_write_error(tmp_path):
    columns, batch = many_rows(10)
    with pytest.raises(WriteError) as caught:
        write([batch], columns, tmp_path / "missing")
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"part_bytes": 0}, "part_bytes"),
        ({"compression_level": 9}, "compression_level"),
        ({"header": ["only one"]}, "header"),
    ],
)
def test_bad_options_are_refused_before_writing(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        write([], ALL_TYPES[:2], tmp_path, **options)
    assert list(tmp_path.iterdir()) == []
