"""The warehouse as ingest sees it: its events table's Arrow schema, opened for writing, and whether it is empty."""

from __future__ import annotations

import logging
import time

import pyarrow as pa
from django.conf import settings

from exports.engines import engine_from_url
from exports.engines.base import EVENTS_TABLE, Statement, WarehouseEngine
from exports.errors import WarehouseLocked
from exports.schema import Column, ColumnType, arrow_schema, quote_identifier
from queries.catalog import Catalog, catalog

logger = logging.getLogger(__name__)
LOCK_RETRY_PAUSE = 0.1


def warehouse_schema(events_catalog: Catalog | None = None) -> pa.Schema:
    """The Arrow schema of the warehouse's events table (without `_row_id`, which the engine assigns)."""
    return arrow_schema((events_catalog or catalog()).warehouse_columns())


def warehouse_loader(url: str | None = None, *, events_catalog: Catalog | None = None) -> WarehouseEngine:
    """The warehouse at `url` (default settings.WAREHOUSE_URL) opened for writing, its events table ready.

    A warehouse file another process holds (DuckDB: a query's or a dry run's engine, which closes a couple of
    seconds after its last call) is waited for, up to WAREHOUSE_LOCK_WAIT_SECONDS. Raises ValueError for a URL
    no engine takes, WarehouseError when the warehouse refuses (WarehouseLocked when it was still held).
    """
    engine = engine_from_url(
        url or settings.WAREHOUSE_URL,
        read_only=False,
        memory_limit=settings.WAREHOUSE_MEMORY_LIMIT,
        temp_directory=settings.WAREHOUSE_TEMP_DIR,
        lake_path=settings.WAREHOUSE_LAKE_PATH,
    )
    try:
        _schema_ensured(engine, (events_catalog or catalog()).warehouse_columns())
    except BaseException:
        engine.close()
        raise
    return engine


def _schema_ensured(engine: WarehouseEngine, columns: tuple[Column, ...]) -> None:
    seconds = settings.WAREHOUSE_LOCK_WAIT_SECONDS
    deadline, waited = time.monotonic() + seconds, False
    while True:
        try:
            engine.ensure_schema(columns)
            return
        except WarehouseLocked:
            if time.monotonic() >= deadline:
                raise
            if not waited:  # once: the wait is retried every LOCK_RETRY_PAUSE
                logger.info(
                    "the warehouse file is held by another process: waiting up to %d s for it", seconds
                )
                waited = True
            time.sleep(LOCK_RETRY_PAUSE)


def warehouse_has_events(engine: WarehouseEngine) -> bool:
    """Whether the events table holds at least one row (it must exist: see warehouse_loader)."""
    probe = Statement(
        sql=f"SELECT 1 AS {quote_identifier('one')} FROM {quote_identifier(EVENTS_TABLE)} LIMIT 1",
        params=(),
        columns=(Column("one", ColumnType.INTEGER),),
        dialect=engine.dialect.name,
    )
    return any(batch.num_rows for batch in engine.execute(probe))
