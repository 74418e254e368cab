"""The warehouse as ingest sees it: its events table's Arrow schema, opened for writing, and whether it is empty."""

from __future__ import annotations

import pyarrow as pa
from django.conf import settings

from exports.engines import engine_from_url
from exports.engines.base import EVENTS_TABLE, Statement, WarehouseEngine
from exports.schema import Column, ColumnType, arrow_schema, quote_identifier
from queries.catalog import Catalog, catalog


def warehouse_schema(events_catalog: Catalog | None = None) -> pa.Schema:
    """The Arrow schema of the warehouse's events table (without `_row_id`, which the engine assigns)."""
    return arrow_schema((events_catalog or catalog()).warehouse_columns())


def warehouse_loader(url: str | None = None, *, events_catalog: Catalog | None = None) -> WarehouseEngine:
    """The warehouse at `url` (default settings.WAREHOUSE_URL) opened for writing, its events table ready.

    Raises ValueError for a URL no engine takes, WarehouseError when the warehouse refuses.
    """
    engine = engine_from_url(
        url or settings.WAREHOUSE_URL,
        read_only=False,
        memory_limit=settings.WAREHOUSE_MEMORY_LIMIT,
        temp_directory=settings.WAREHOUSE_TEMP_DIR,
        lake_path=settings.WAREHOUSE_LAKE_PATH,
    )
    try:
        engine.ensure_schema((events_catalog or catalog()).warehouse_columns())
    except BaseException:
        engine.close()
        raise
    return engine


def warehouse_has_events(engine: WarehouseEngine) -> bool:
    """Whether the events table holds at least one row (it must exist: see warehouse_loader)."""
    probe = Statement(
        sql=f"SELECT 1 AS {quote_identifier('one')} FROM {quote_identifier(EVENTS_TABLE)} LIMIT 1",
        params=(),
        columns=(Column("one", ColumnType.INTEGER),),
        dialect=engine.dialect.name,
    )
    return any(batch.num_rows for batch in engine.execute(probe))
