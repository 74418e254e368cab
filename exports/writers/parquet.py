"""Arrow record batches -> Parquet part files, with pyarrow's ParquetWriter.

What a part holds: one column per Column, named by its title, typed STRING -> string, INTEGER -> int64,
FLOAT -> float64 (NaN and the infinities kept), BOOLEAN -> bool, TIMESTAMP -> timestamp[ms, tz=UTC]
(floored to the millisecond, as in the CSV; Parquet's TIMESTAMP(MILLIS, isAdjustedToUTC=true)); NULL is null.
Pages are zstd-compressed (its default level), with statistics; columns with few distinct values in the first
rows are dictionary-encoded (see dictionary_columns).

Row groups hold at most ROW_GROUP_ROWS rows and about ROW_GROUP_BYTES of Arrow data, gathered from the input
batches (a row group per small batch would make the file slow to read). A new part starts when the next rows
would take the current one past `part_bytes` of Arrow data (PartFile.bytes; approximate, from the chunk's
average row size). Encoding and compression run on a background thread while the next batches arrive; the
sha256 is taken by reading the finished file back (pyarrow writes the file itself).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exports.schema import Column, ColumnType
from exports.writers.arrow_text import column_errors, timestamp_millis
from exports.writers.parts import PartFile, PartSequence, PartTarget, check_width, header_titles

ROW_GROUP_ROWS = 1_048_576
ROW_GROUP_BYTES = 32 * 1024 * 1024
_TYPES = {
    ColumnType.STRING: pa.string(),
    ColumnType.INTEGER: pa.int64(),
    ColumnType.FLOAT: pa.float64(),
    ColumnType.BOOLEAN: pa.bool_(),
    ColumnType.TIMESTAMP: pa.timestamp("ms", tz="UTC"),
}


def parquet_schema(columns: Sequence[Column], titles: Sequence[str]) -> pa.Schema:
    return pa.schema([pa.field(title, _TYPES[c.type]) for c, title in zip(columns, titles, strict=True)])


def parquet_batch(batch: pa.RecordBatch, columns: Sequence[Column], schema: pa.Schema) -> pa.RecordBatch:
    """The batch in the file's types and names. Raises WriteError when it does not fit the columns."""
    check_width(batch, columns)
    arrays = []
    for i, column in enumerate(columns):
        values = batch.column(i)
        with column_errors(values, column):
            if column.type is ColumnType.TIMESTAMP:
                values = timestamp_millis(values, column.name)
            arrays.append(values.cast(_TYPES[column.type]))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def dictionary_columns(rows: pa.RecordBatch) -> list[str]:
    """The columns worth dictionary encoding: at most one distinct value in ten rows, in the first rows.

    pyarrow would try a dictionary on every column and fall back to plain pages once a column's dictionary
    outgrows its page, after the work of building it: on ids and timestamps that is a third of the writer's
    time (some 30% here), and zstd packs their plain pages smaller anyway.
    """
    limit = max(1, rows.num_rows // 10)
    names = rows.schema.names
    return [
        name
        for name, values in zip(names, rows.columns, strict=True)
        if pc.count_distinct(values).as_py() <= limit
    ]


@dataclass(slots=True)
class _Part:
    name: str
    path: Path
    file: pq.ParquetWriter
    rows: int = 0
    bytes: int = 0


class ParquetPartWriter(PartSequence[_Part]):
    """A PartWriter for Parquet (see parts.parts_write)."""

    def __init__(self, target: PartTarget, *, columns: Sequence[Column], schema: pa.Schema) -> None:
        super().__init__(target, thread_name="parquet")
        self._columns = columns
        self._schema = schema
        self._dictionary: list[str] | bool = True  # pyarrow's default, until the first rows are seen
        self._group: list[pa.RecordBatch] = []
        self._group_rows = 0
        self._group_bytes = 0
        self.rows_written = 0
        self.bytes_written = 0

    def chunks(self, batch: pa.RecordBatch) -> Iterable[pa.RecordBatch]:
        return (batch,)

    def write(self, chunk: pa.RecordBatch) -> None:
        rows = parquet_batch(chunk, self._columns, self._schema)
        if self._dictionary is True and rows.num_rows:
            self._dictionary = dictionary_columns(rows)
        row_bytes = max(1.0, rows.nbytes / max(1, rows.num_rows))  # sizes below are estimates from this
        first = 0
        while first < rows.num_rows:
            part = self._current or self._open()
            by_part = int((self._target.part_bytes - part.bytes) // row_bytes)
            if by_part < 1 and part.rows:  # full: the next rows start a new part
                self._close()
                continue
            room = ROW_GROUP_BYTES - self._group_bytes
            by_group = min(ROW_GROUP_ROWS - self._group_rows, int(room // row_bytes))
            # At least one row: a row larger than part_bytes still has to go somewhere.
            piece = rows.slice(first, max(1, min(by_part, by_group)))
            self._add(part, piece, row_bytes)
            first += piece.num_rows
        self.rows_written += rows.num_rows

    def _add(self, part: _Part, piece: pa.RecordBatch, row_bytes: float) -> None:
        part.rows += piece.num_rows
        part.bytes += piece.nbytes
        self.bytes_written += piece.nbytes
        self._group.append(piece)
        self._group_rows += piece.num_rows
        self._group_bytes += piece.nbytes
        if self._group_rows >= ROW_GROUP_ROWS or self._group_bytes + row_bytes > ROW_GROUP_BYTES:
            self._flush(part)  # the row group is full

    def _flush(self, part: _Part) -> None:
        if self._group:
            table = pa.Table.from_batches(self._group, schema=self._schema)
            self._background.submit(part.file.write_table, table, table.num_rows)
            self._group, self._group_rows, self._group_bytes = [], 0, 0

    def _close(self) -> None:
        assert self._current is not None
        self._flush(self._current)
        super()._close()

    def _start(self, name: str, path: Path) -> _Part:
        file = pq.ParquetWriter(path, self._schema, compression="zstd", use_dictionary=self._dictionary)
        return _Part(name, path, file)

    def _complete(self, part: _Part) -> PartFile:
        part.file.close()
        digest, size = hashlib.sha256(), 0
        with open(part.path, "rb") as stream:
            while block := stream.read(1 << 20):
                digest.update(block)
                size += len(block)
        return PartFile(part.name, part.path, part.rows, part.bytes, size, digest.hexdigest())

    def _remove(self, part: _Part) -> None:
        try:
            part.file.close()  # a no-op once closed
        except (OSError, pa.ArrowException):
            pass  # the file is removed next; its writer's error is not the one to report
        part.path.unlink(missing_ok=True)


def parquet_writer(
    *, columns: Sequence[Column], titles: Sequence[str], target: PartTarget
) -> ParquetPartWriter:
    """The PartWriter of Parquet; `titles` are the column names (distinct)."""
    names = header_titles(columns, titles, distinct=True)
    return ParquetPartWriter(target, columns=columns, schema=parquet_schema(columns, names))
