"""POST /dwh/Q/preview: the first rows of a query's result, at once (giosg's step source data).

The body is a query body plus `limit` (1..10000, default 100; a whole number in a string, as giosg sends it,
is taken) and `basic` (true: the catalog's display names). The rows are exactly the first `limit` rows of the
export (same compiled statement, same columns, order, NULL and empty-field rules), as JSON values. A preview is
not a job: it takes no slot, but it is bounded by PREVIEW_TIME_LIMIT_SECONDS (then 422: submit it as a query)
and PREVIEW_PER_MINUTE per customer (then 429). The statement carries a LIMIT, so the engine stops early: a
top-N instead of a full sort, or a scan read in order only as far as the rows needed.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from django.conf import settings
from django.core.cache import cache

from exports.engines.base import Dialect, Statement, Unordered, WarehouseEngine
from exports.errors import QueryCanceled, WarehouseError
from exports.schema import ColumnType
from insights.errors import DomainError
from insights.models import Customer
from queries.compiler import query_compile
from queries.json_kinds import json_kind
from queries.spec import Query
from queries.validation import QueryValidationError, query_validate
from queries.warehouse import warehouse_engine

KEYS = ("limit", "basic")
DEFAULT_LIMIT, MAX_LIMIT = 100, 10_000
FIELD_TYPES = {
    ColumnType.STRING: "string",
    ColumnType.INTEGER: "integer",
    ColumnType.FLOAT: "float",
    ColumnType.BOOLEAN: "boolean",
    ColumnType.TIMESTAMP: "datetime",
}
WINDOW_SECONDS = 60


class PreviewTooSlow(DomainError):
    status_code = 422


class PreviewsThrottled(DomainError):
    status_code = 429


class WarehouseUnavailable(DomainError):
    status_code = 503


@dataclass(frozen=True)
class PreviewSettings:
    limit: int = DEFAULT_LIMIT
    basic: bool = False


def preview_settings_split(body: Any) -> tuple[PreviewSettings, Any]:
    """`limit` and `basic`, and the query body without them (validation then judges the query)."""
    if not isinstance(body, dict):
        return PreviewSettings(), body
    query = {key: value for key, value in body.items() if key not in KEYS}
    return PreviewSettings(
        limit=_limit(body.get("limit", DEFAULT_LIMIT)), basic=_basic(body.get("basic", False))
    ), query


def _limit(value: object) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5:
        value = int(value)  # giosg sends "2"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        shown = (
            repr(value)
            if isinstance(value, int | float | str) and len(repr(value)) <= 20
            else json_kind(value)
        )
        raise QueryValidationError(f'"limit" must be a whole number from 1 to {MAX_LIMIT}, not {shown}.')
    return value


def _basic(value: object) -> bool:
    if not isinstance(value, bool):
        raise QueryValidationError(f'"basic" must be true or false, not {json_kind(value)}.')
    return value


def previews_throttle(customer: Customer) -> None:
    """Count one synchronous warehouse call of the customer this minute; PreviewsThrottled past the limit. A
    cache that cannot be reached lets the call through (the limit guards load, not correctness)."""
    window = int(time.time() // WINDOW_SECONDS)
    key = f"insights:previews:{customer.pk}:{window}"
    try:
        if not cache.add(key, 1, timeout=WINDOW_SECONDS * 2):
            count = cache.incr(key)
        else:
            count = 1
    except Exception:  # the cache backend's own errors: fail open
        return
    if count > settings.PREVIEW_PER_MINUTE:
        wait = max((window + 1) * WINDOW_SECONDS - int(time.time()), 1)
        raise PreviewsThrottled(
            f"Too many previews and summaries this minute (together at most {settings.PREVIEW_PER_MINUTE}); "
            f"retry after {wait} s.",
            headers={"Retry-After": str(wait)},
        )


def query_preview(*, customer: Customer, body: Any) -> dict[str, Any]:
    """`{"fields": [...], "data": [...]}` for the body; QueryValidationError (400), PreviewsThrottled (429),
    PreviewTooSlow (422), WarehouseUnavailable (503)."""
    preview, query_body = preview_settings_split(body)
    query_spec = query_validate(
        query_body, max_window=timedelta(days=customer.max_window_days), settings_keys=KEYS
    )
    previews_throttle(customer)
    with warehouse_call("preview") as engine:
        statement = preview_statement(
            query_spec, customer_id=customer.key, dialect=engine.dialect, limit=preview.limit
        )
        rows = statement_rows(engine, statement, limit=preview.limit)
    names = _titles(query_spec, basic=preview.basic)
    return {
        "fields": [_field(name, column.type) for name, column in zip(names, statement.columns, strict=True)],
        "data": [dict(zip(names, (_json_value(v) for v in row), strict=True)) for row in rows],
    }


@contextlib.contextmanager
def warehouse_call(what: str) -> Iterator[WarehouseEngine]:
    """A warehouse engine for one synchronous call (a preview, a summary), closed after it. Every statement run
    in the block shares PREVIEW_TIME_LIMIT_SECONDS: past it the running one is interrupted (and any later one
    does not start) and the call is PreviewTooSlow; a warehouse failure is WarehouseUnavailable."""
    engine = warehouse_engine()
    timer = threading.Timer(settings.PREVIEW_TIME_LIMIT_SECONDS, engine.cancel)
    timer.daemon = True
    timer.start()
    try:
        yield engine
    except QueryCanceled:
        raise PreviewTooSlow(
            f"The {what} took longer than {settings.PREVIEW_TIME_LIMIT_SECONDS} s; submit it as a query "
            "(POST /_rest/v4/dwh/Q), which has no such limit."
        ) from None
    except WarehouseError as error:
        raise WarehouseUnavailable(
            f"The warehouse could not answer the {what} now ({error}); try again."
        ) from None
    finally:
        timer.cancel()
        engine.close()


def statement_rows(
    engine: WarehouseEngine, statement: Statement, *, limit: int | None
) -> list[tuple[Any, ...]]:
    """The statement's rows as tuples, at most `limit` (reading stops there: the engine stops the statement)."""
    rows: list[tuple[Any, ...]] = []
    for batch in engine.execute(statement):
        rows.extend(_batch_rows(batch))
        if limit is not None and len(rows) >= limit:
            break
    return rows[:limit] if limit is not None else rows


def preview_statement(query_spec: Query, *, customer_id: str, dialect: Dialect, limit: int) -> Statement:
    """The export's statement with `LIMIT n` (a bound value) after its ORDER BY, and on its unordered variant."""
    statement = query_compile(query_spec, customer_id=customer_id, dialect=dialect)
    mark = dialect.placeholder(len(statement.params) + 1)  # LIMIT's value: the last parameter
    unordered = statement.unordered
    if unordered is not None:
        unordered = Unordered(
            sql=f"{unordered.sql} LIMIT {mark}",
            keys_sql=unordered.keys_sql,
            keys_params=unordered.keys_params,
        )
    return replace(
        statement, sql=f"{statement.sql} LIMIT {mark}", params=(*statement.params, limit), unordered=unordered
    )


def _batch_rows(batch: pa.RecordBatch) -> list[tuple[Any, ...]]:
    columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
    return list(zip(*columns, strict=True)) if columns else []


def _titles(query_spec: Query, *, basic: bool) -> list[str]:
    return [field.display_name if basic else field.name for field in query_spec.columns]


def _field(name: str, kind: ColumnType) -> dict[str, str]:
    field = {"name": name, "type": FIELD_TYPES[kind]}
    if kind is ColumnType.TIMESTAMP:
        field["tz"] = "UTC"
    return field


def _json_value(value: Any) -> Any:
    """A value as JSON: timestamps as the CSV writes them, non-finite floats as the NDJSON export spells them."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value
