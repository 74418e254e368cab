"""Warehouse engines, chosen by URL scheme.

Physical layout, shared by every engine: one wide table `events` holding every field of every event (a
field two events share, such as StartTime, is one column; a field an event lacks is NULL in its rows) plus
`_row_id`, the load order, which breaks TimeStamp ties so every engine returns the same rows in the same
order. One table keeps a multi-event query one scan with no joins. Every query reads by customer + time
range (and, when scoped, customer + session), so each engine lays rows out for that: DuckDB stores each
load sorted by (CustomerId, TimeStamp), and its per-row-group min/max zone maps skip other customers and
other days without an index; PostgreSQL keeps btree indexes on (CustomerId, TimeStamp) and (CustomerId,
SessionId).

Beside it, DuckDB and PostgreSQL keep `event_counts`, the rows per (CustomerId, hour of TimeStamp, EventName),
which `load` keeps exact in the same transaction as the rows (`exports.engines.counts`): what lets a dry run
count a plain query's window without reading every row of it. An engine without them (Spark) counts `events`.

A new engine is one module with one `WarehouseEngine` subclass offering `from_url(...)`, plus a line in
ENGINES.
"""

from __future__ import annotations

import importlib
from typing import Protocol, cast

import pyarrow as pa

from exports.engines.base import ROW_ID, Statement, WarehouseEngine
from exports.errors import WarehouseError

# scheme -> "module:Class"; imported on first use so a deployment only needs the driver of the engine it runs.
ENGINES: dict[str, str] = {
    "duckdb": "exports.engines.duckdb:DuckDBEngine",
    "postgresql": "exports.engines.postgres:PostgresEngine",
    "postgres": "exports.engines.postgres:PostgresEngine",
    "sc": "exports.engines.spark:SparkEngine",  # Spark Connect over a Parquet lake (WAREHOUSE_LAKE_PATH)
}


class _EngineFactory(Protocol):
    def from_url(
        self,
        url: str,
        *,
        read_only: bool,
        memory_limit: str | None,
        temp_directory: str | None,
        lake_path: str | None,
    ) -> WarehouseEngine: ...


def engine_class(url: str) -> type[WarehouseEngine]:
    """The engine class for `url`'s scheme; ValueError names the scheme only (a URL may hold a password)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    target = ENGINES.get(scheme)
    if target is None:
        known = ", ".join(sorted(ENGINES))
        raise ValueError(f"unsupported warehouse URL scheme {scheme!r} (expected one of: {known})")
    module_name, class_name = target.split(":")
    return cast(type[WarehouseEngine], getattr(importlib.import_module(module_name), class_name))


def engine_from_url(
    url: str,
    *,
    read_only: bool = True,
    memory_limit: str | None = None,
    temp_directory: str | None = None,
    lake_path: str | None = None,
) -> WarehouseEngine:
    """An engine for `url` (`duckdb:///abs/path`, `duckdb://:memory:`, `postgresql://...`, `sc://host:15002`);
    connects lazily.

    Workers keep the default `read_only=True`; only loaders write. `memory_limit`/`temp_directory` bound an
    embedded engine's memory and say where its large sorts spill; a server engine ignores them. `lake_path`
    is where a lake engine (Spark) keeps its Parquet files; the others ignore it.
    """
    factory = cast(_EngineFactory, engine_class(url))
    return factory.from_url(
        url,
        read_only=read_only,
        memory_limit=memory_limit,
        temp_directory=temp_directory,
        lake_path=lake_path,
    )


def statement_check(statement: Statement, dialect_name: str) -> None:
    """Refuse a statement compiled for another engine's dialect (placeholders and types would not fit)."""
    if statement.dialect != dialect_name:
        raise WarehouseError(f"statement compiled for {statement.dialect}, engine is {dialect_name}")


def load_table_conform(table: pa.Table, column_types: dict[str, pa.DataType]) -> pa.Table:
    """`table` with each column cast to its stored column's Arrow type (an aware timestamp becomes naive UTC).

    `column_types` is the events table as it stands (empty: no table). A column the table lacks, or `_row_id`
    (load assigns it), is an error rather than silently dropped data.
    """
    if not column_types:
        raise WarehouseError("the events table does not exist: run ensure_schema first")
    unknown = [name for name in table.column_names if name not in column_types or name == ROW_ID]
    if unknown:
        raise WarehouseError(f"cannot load unknown columns: {', '.join(sorted(unknown))}")
    target = pa.schema([pa.field(name, column_types[name]) for name in table.column_names])
    try:
        return table.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise WarehouseError("cannot load: a column does not convert to its warehouse type") from exc


__all__ = ["ENGINES", "engine_class", "engine_from_url", "load_table_conform", "statement_check"]
