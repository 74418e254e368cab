"""The output a customer chooses (docs/DESIGN.md §8: `output` in the POST body), and the one entry point that
writes any of them: `write_parts`.

| format  | compression    | dialect                           | part files    | written by             |
|---------|----------------|-----------------------------------|---------------|------------------------|
| csv     | gzip (default) | rfc4180 (default), excel,         | .csv.gz       | csv_gzip.csv_writer    |
|         | none           | no_newline (csv_dialects)         | .csv          |                        |
| ndjson  | gzip, none     | -                                 | .ndjson(.gz)  | ndjson.ndjson_writer   |
| xlsx    | - (a zip)      | -                                 | .xlsx         | xlsx.xlsx_writer       |
| parquet | - (zstd pages) | -                                 | .parquet      | parquet.parquet_writer |

Each module's docstring says what its format holds, value by value. Every writer is a PartWriter driven by
parts.parts_write, so the contract below holds for all of them in one place.

`compression` applies to csv and ndjson only and `dialect` to csv only. Elsewhere only the default is taken
(it is what a field left out means); another value is refused rather than ignored, so that a request never
silently gets something other than it asked for. The default OutputFormat writes exactly what
write_csv_gzip_parts always has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, get_args

import pyarrow as pa

from exports.schema import Column
from exports.writers.csv_dialects import DIALECTS
from exports.writers.csv_gzip import csv_writer
from exports.writers.ndjson import ndjson_writer
from exports.writers.parquet import parquet_writer
from exports.writers.parts import (
    UNCONTROLLED,
    PartFile,
    PartTarget,
    PartWriter,
    WriteControl,
    header_titles,
    parts_write,
)
from exports.writers.text_parts import check_compression_level
from exports.writers.xlsx import xlsx_writer

Format = Literal["csv", "xlsx", "parquet", "ndjson"]
Compression = Literal["gzip", "none"]
Dialect = Literal["rfc4180", "excel", "no_newline"]
FORMATS: tuple[Format, ...] = get_args(Format)
COMPRESSIONS: tuple[Compression, ...] = get_args(Compression)
DIALECT_NAMES: tuple[Dialect, ...] = get_args(Dialect)
_COMPRESSED_FORMATS = ("csv", "ndjson")  # the formats that take `compression`

_CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
}


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """What a result is written as. Build it from a request with `OutputFormat.parse` (which checks the
    values); the constructor checks them too, so no invalid OutputFormat exists."""

    format: Format = "csv"
    compression: Compression = "gzip"
    dialect: Dialect = "rfc4180"

    def __post_init__(self) -> None:
        _check("format", self.format, FORMATS)
        _check("compression", self.compression, COMPRESSIONS)
        _check("dialect", self.dialect, DIALECT_NAMES)
        if self.format not in _COMPRESSED_FORMATS and self.compression != "gzip":
            raise ValueError(
                f"compression {self.compression!r} does not apply to format {self.format!r} "
                f"(it compresses internally); compression applies to {', '.join(_COMPRESSED_FORMATS)}"
            )
        if self.format != "csv" and self.dialect != "rfc4180":
            raise ValueError(
                f"dialect {self.dialect!r} does not apply to format {self.format!r}; only to csv"
            )

    @classmethod
    def parse(
        cls, *, format: str | None = None, compression: str | None = None, dialect: str | None = None
    ) -> OutputFormat:
        """An OutputFormat from raw request strings; None takes the default. Raises ValueError naming the bad
        value and the allowed ones (the API turns it into a 400)."""
        return cls(
            format=cast(Format, "csv" if format is None else format),
            compression=cast(Compression, "gzip" if compression is None else compression),
            dialect=cast(Dialect, "rfc4180" if dialect is None else dialect),
        )

    @property
    def gzipped(self) -> bool:
        return self.format in _COMPRESSED_FORMATS and self.compression == "gzip"

    @property
    def extension(self) -> str:
        """The part files' extension, without the leading dot: csv.gz, csv, xlsx, parquet, ndjson.gz, ndjson."""
        return f"{self.format}.gz" if self.gzipped else self.format

    @property
    def content_type(self) -> str:
        """The part files' media type (a gzipped part is application/gzip, whatever it holds)."""
        return "application/gzip" if self.gzipped else _CONTENT_TYPES[self.format]


def _check(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"invalid {field} {value!r}: expected one of {', '.join(allowed)}")


def write_parts(
    batches: Iterable[pa.RecordBatch],
    *,
    output: OutputFormat,
    columns: Sequence[Column],
    directory: Path,
    name_for_part: Callable[[int], str],
    part_bytes: int,
    compression_level: int = 1,
    header: Sequence[str] | None = None,
    max_bytes: int | None = None,
    control: WriteControl | None = None,
) -> list[PartFile]:
    """Write the batches in `output`'s format as parts in `directory` under temporary names; return them in
    order. The contract is write_csv_gzip_parts's, for every format:

    - part i is written at `temporary_path(directory, name_for_part(i))` (name the parts with
      `output.extension`); `control.part_finished` gets each finished part, in order; on any error every file
      is removed; WriteCanceled when `control.should_stop()`, WriteLimitExceeded past `max_bytes`; memory
      stays bounded whatever the row count; zero rows still make one part.
    - `part_bytes` and `max_bytes` count each format's uncompressed measure (PartFile.bytes): the CSV or
      NDJSON text, the xlsx sheet's row XML (xlsx also rolls after 1,048,575 rows), the Arrow size of the
      Parquet rows.
    - `header` holds the column titles (names or display names, the caller's choice): the CSV and xlsx
      header row, the NDJSON keys, the Parquet column names (the last two must be distinct).
    - `compression_level` is the ISA-L level (0-3) of gzip and of the xlsx zip; Parquet uses zstd's own.
    Raises ValueError on bad options before anything is written.
    """
    control = control or UNCONTROLLED
    target = PartTarget(directory, name_for_part, part_bytes, control.part_finished)
    check_compression_level(compression_level)
    writer = _writer(output, columns, header_titles(columns, header), target, compression_level)
    return parts_write(batches, writer, control=control, max_bytes=max_bytes)


def _writer(
    output: OutputFormat, columns: Sequence[Column], titles: list[str], target: PartTarget, level: int
) -> PartWriter:
    """The format's PartWriter."""
    if output.format == "csv":
        dialect = DIALECTS[output.dialect]
        return csv_writer(
            columns=columns,
            titles=titles,
            target=target,
            dialect=dialect,
            gzip=output.gzipped,
            compression_level=level,
        )
    if output.format == "ndjson":
        return ndjson_writer(
            columns=columns, titles=titles, target=target, gzip=output.gzipped, compression_level=level
        )
    if output.format == "xlsx":
        return xlsx_writer(columns=columns, titles=titles, target=target, compression_level=level)
    return parquet_writer(columns=columns, titles=titles, target=target)
