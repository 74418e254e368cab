"""Column types shared by engines and writers (the warehouse's own vocabulary, not the query catalog's)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import pyarrow as pa

# Identifiers the warehouse accepts: letters and digits, starting with a letter. Every identifier that reaches
# SQL passes this check, so quoting can never be escaped.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class ColumnType(enum.StrEnum):
    STRING = "STRING"
    INTEGER = "INTEGER"
    FLOAT = "FLOAT"
    BOOLEAN = "BOOLEAN"
    TIMESTAMP = "TIMESTAMP"

    @property
    def arrow(self) -> pa.DataType:
        return _ARROW[self]


_ARROW: dict[ColumnType, pa.DataType] = {
    ColumnType.STRING: pa.string(),
    ColumnType.INTEGER: pa.int64(),
    ColumnType.FLOAT: pa.float64(),
    ColumnType.BOOLEAN: pa.bool_(),
    ColumnType.TIMESTAMP: pa.timestamp("us"),
}


@dataclass(frozen=True, slots=True)
class Column:
    """A named, typed column; timestamps are UTC, stored without a zone, microsecond precision."""

    name: str
    type: ColumnType

    def __post_init__(self) -> None:
        if not IDENTIFIER.match(self.name):
            raise ValueError(f"invalid column name {self.name!r}")


def quote_identifier(name: str) -> str:
    """Double-quote an identifier that has already passed IDENTIFIER (so it holds no quote to escape)."""
    if not IDENTIFIER.match(name):
        raise ValueError(f"invalid identifier {name!r}")
    return f'"{name}"'


def arrow_schema(columns: list[Column] | tuple[Column, ...]) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.type.arrow) for c in columns])
