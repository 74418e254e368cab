"""The configured warehouse engine, opened the way a worker needs it (read-only, bounded memory)."""

from __future__ import annotations

from django.conf import settings

from exports.engines import engine_class, engine_from_url
from exports.engines.base import Dialect, WarehouseEngine


def warehouse_engine(*, read_only: bool = True) -> WarehouseEngine:
    return engine_from_url(
        settings.WAREHOUSE_URL,
        read_only=read_only,
        memory_limit=settings.WAREHOUSE_MEMORY_LIMIT,
        temp_directory=settings.WAREHOUSE_TEMP_DIR,
        lake_path=settings.WAREHOUSE_LAKE_PATH,
    )


def warehouse_dialect() -> Dialect:
    """The SQL dialect of the configured warehouse, from its engine class (no engine is built)."""
    return engine_class(settings.WAREHOUSE_URL).dialect
