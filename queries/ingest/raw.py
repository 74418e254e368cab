"""What a reader hands the checks: a file's columns as read (text, or the file's own types), how to say where a
row is, and the problems met while reading. And how readers open a file's bytes, gzip or not."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import pyarrow as pa

from queries.ingest.problems import Problem


def _on_line_one(_name: str) -> int:
    """Every column's problems on line 1, where a header names it."""
    return 1


@dataclass
class RawFile:
    columns: dict[str, pa.ChunkedArray]
    num_rows: int
    empty_string_is_null: bool  # CSV: an empty cell is NULL, whatever the type
    line_of_row: Callable[[int], int]  # 0-based row index -> line (or row) number
    header_line: Callable[[str], int] = field(
        default=_on_line_one
    )  # where a column-level problem is reported
    problems: list[Problem] = field(default_factory=list)  # found while reading, in line order
    problem_count: int = 0

    @classmethod
    def of_table(
        cls,
        table: pa.Table,
        *,
        empty_string_is_null: bool,
        line_of_row: Callable[[int], int],
        header_line: Callable[[str], int] = _on_line_one,
    ) -> RawFile:
        """A file that pyarrow read whole."""
        columns = {name: table.column(name) for name in table.column_names}
        return cls(columns, table.num_rows, empty_string_is_null, line_of_row, header_line)


def binary_open(path: Path) -> IO[bytes]:
    """The file's bytes; gzip by name."""
    if path.name.lower().endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")
