"""A pre-flight quote: `POST /dwh/Q?dry_run=true` with a query body answers what a real POST would do, at once,
and does none of it (no guid, no slot, nothing enqueued).

    {"valid": true, "fingerprint": "...", "columns": ["FlowId", ...],
     "estimate": {"rows": N, "bytes": B, "seconds": S, "method": "exact-count" | "sampled" | "statistics"},
     "over_cap": false, "slots": {"limit": L, "in_use": U}, "queue": {"position": P, "eta_seconds": E}}

- The body is validated exactly as a POST's (the same 400s), the export settings included.
- rows: queries.row_counts, within QUOTE_TIME_LIMIT_SECONDS; `method` says how they were had.
- bytes (uncompressed CSV) and seconds: queries.history, from the recorded runs of the customer and the service.
- over_cap: the bytes exceed the customer's per-query cap (such a run would fail); still a 200.
- slots and queue: queries.queue_eta; `eta_seconds` is when the query could start, `seconds` how long it runs.
A dry run is a synchronous warehouse call: QUOTE_PER_MINUTE per customer (then 429).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache

from exports.errors import WarehouseError
from insights.models import Customer
from queries.export_settings import KEYS as EXPORT_KEYS
from queries.export_settings import export_settings_split
from queries.history import bytes_per_row, columns_types, run_shape, seconds_predict
from queries.preview import PreviewsThrottled, WarehouseUnavailable
from queries.queue_eta import QueuePlace, Slots, queue_place
from queries.row_counts import BoundedWarehouse, RowCount, rows_count
from queries.validation import QueryValidationError, query_validate
from queries.warehouse import warehouse_dialect

WINDOW_SECONDS = 60
TRUE, FALSE = ("1", "true", "yes"), ("", "0", "false", "no")


@dataclass(frozen=True, slots=True)
class Estimate:
    rows: int
    bytes: int
    seconds: float
    method: str


@dataclass(frozen=True, slots=True)
class Quote:
    fingerprint: str
    columns: list[str]
    estimate: Estimate
    over_cap: bool
    slots: Slots
    queue: QueuePlace
    valid: bool = True


def dry_run_read(value: str | None) -> bool:
    """`?dry_run=`: true, 1 or yes asks for a quote; absent, false, 0 or no is a real POST; anything else 400."""
    text = (value or "").strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise QueryValidationError("dry_run must be true or false.")


def query_quote(*, customer: Customer, body: Any) -> Quote:
    """The quote of `body` for `customer` (see the module docstring). Raises QueryValidationError (400),
    PreviewsThrottled (429) or WarehouseUnavailable (503)."""
    export, query_body = export_settings_split(body)
    query_spec = query_validate(
        query_body, max_window=timedelta(days=customer.max_window_days), settings_keys=EXPORT_KEYS
    )
    quotes_throttle(customer)
    display = export.output.get("header") == "display"
    titles = [field.display_name if display else field.name for field in query_spec.columns]
    warehouse = BoundedWarehouse()
    try:
        counted = rows_count(
            warehouse, query_spec, customer_id=customer.key, limit_seconds=settings.QUOTE_TIME_LIMIT_SECONDS
        )
        slots, place = queue_place(customer=customer, warehouse=warehouse)
    except WarehouseError as error:
        raise WarehouseUnavailable(
            f"The warehouse could not answer the dry run now ({error}); try again."
        ) from None
    finally:
        warehouse.close()
    estimate = _estimate(
        customer, query_spec.canonical(), counted, engine=warehouse_dialect().name, header=titles
    )
    return Quote(
        fingerprint=query_spec.fingerprint,
        columns=titles,
        estimate=estimate,
        over_cap=estimate.bytes > customer.max_bytes_per_query,
        slots=slots,
        queue=place,
    )


def _estimate(
    customer: Customer, canonical: dict[str, Any], counted: RowCount, *, engine: str, header: list[str]
) -> Estimate:
    per_row = bytes_per_row(customer=customer, shape=run_shape(canonical), columns=columns_types(canonical))
    header_bytes = len(",".join(header).encode("utf-8")) + 1
    return Estimate(
        rows=counted.rows,
        bytes=round(counted.rows * per_row) + header_bytes,
        seconds=round(seconds_predict(engine=engine, rows=counted.rows), 3),
        method=counted.method,
    )


def quotes_throttle(customer: Customer) -> None:
    """Count one dry run of the customer this minute; PreviewsThrottled (429) past QUOTE_PER_MINUTE. A cache
    that cannot be reached lets the call through (the limit guards load, not correctness)."""
    window = int(time.time() // WINDOW_SECONDS)
    key = f"insights:quotes:{customer.pk}:{window}"
    try:
        count = 1 if cache.add(key, 1, timeout=WINDOW_SECONDS * 2) else cache.incr(key)
    except Exception:  # the cache backend's own errors: fail open
        return
    if count > settings.QUOTE_PER_MINUTE:
        wait = max((window + 1) * WINDOW_SECONDS - int(time.time()), 1)
        raise PreviewsThrottled(
            f"Too many dry runs this minute (at most {settings.QUOTE_PER_MINUTE}); retry after {wait} s.",
            headers={"Retry-After": str(wait)},
        )
