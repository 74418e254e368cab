"""Recorded runs, and what a dry run's estimates learn from them (POST /dwh/Q?dry_run=true).

Every run that ends Completed leaves one RunRecord (queries.lifecycle.query_complete calls `run_record`): the
engine it read from, the shape of what it wrote (its events and output columns), its rows, uncompressed bytes
and seconds. From them:

- bytes per row of a shape: the customer's own recent runs of that shape, else anyone's, else a typical width
  per column type (what a CSV cell of that type usually takes);
- seconds for N rows on an engine: the median of the engine's recent runs of about that size (within 25%: a
  size seen before); else a line `seconds = a + b * rows` fitted to the engine's recent runs, weighted so that
  each run's *relative* error counts (a small run matters as much as a big one); else
  QUOTE_DEFAULT_ROWS_PER_SECOND.

History is a hint: recording never fails a run, and an empty history still gives an answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from exports.schema import ColumnType
from insights.models import Customer
from queries.catalog import catalog
from queries.models import QueryRequest, QueryStatus, RunRecord
from queries.plan import PlanError, plan_statement

logger = logging.getLogger(__name__)

RECENT_RUNS = 200  # the engine's runs a prediction looks at, newest first
SHAPE_RUNS = 20  # runs of one shape that set its bytes per row
SAME_SIZE = 1.25  # "about that size": rows within this factor
SAME_SIZE_MIN_RUNS = 3
BASE_SECONDS = 0.05  # a run's fixed cost (claim, open, publish) before any history exists
# What a CSV cell of each type usually takes, with its separator (a timestamp is YYYY-MM-DDTHH:MM:SS.mmmZ).
TYPICAL_CELL_BYTES = {
    ColumnType.STRING: 25,
    ColumnType.INTEGER: 7,
    ColumnType.FLOAT: 11,
    ColumnType.BOOLEAN: 6,
    ColumnType.TIMESTAMP: 25,
}


def run_shape(canonical: dict[str, Any]) -> str:
    """The shape of a query (`Query.canonical()`): its events and output columns, order aside."""
    key = {"events": sorted(canonical["data"]), "columns": sorted(canonical["columns"])}
    return hashlib.sha256(json.dumps(key, separators=(",", ":")).encode("ascii")).hexdigest()


def run_record(*, query_id: int) -> None:
    """Record a run that just ended Completed. Never raises: a history that could not be written costs an
    estimate some accuracy, never a result."""
    try:
        query = QueryRequest.objects.only(
            "customer_id", "plan", "output", "row_count", "progress_bytes", "started_at", "finished_at"
        ).get(pk=query_id, status=QueryStatus.COMPLETED, reused_from__isnull=True)
        if query.started_at is None or query.finished_at is None:
            return
        RunRecord.objects.create(
            customer_id=query.customer_id,
            engine=plan_statement(query.plan).dialect,
            shape=run_shape(json.loads(query.plan)["query"]),
            output_format=str((query.output or {}).get("format", "csv")),
            rows=query.row_count or 0,
            bytes=query.progress_bytes,
            seconds=max((query.finished_at - query.started_at).total_seconds(), 0.0),
            finished_at=query.finished_at,
        )
    except (QueryRequest.DoesNotExist, PlanError, KeyError, TypeError, ValueError, DatabaseError):
        logger.warning("query %s: its run could not be recorded for estimates", query_id, exc_info=True)


def bytes_per_row(*, customer: Customer, shape: str, columns: Sequence[ColumnType]) -> float:
    """Uncompressed CSV bytes per row of a query of this shape (see the module docstring)."""
    recent = RunRecord.objects.filter(shape=shape, output_format="csv", rows__gt=0).order_by("-finished_at")
    for runs in (recent.filter(customer=customer), recent):
        sizes = list(runs.values_list("rows", "bytes")[:SHAPE_RUNS])
        if sizes:
            return sum(b for _, b in sizes) / sum(r for r, _ in sizes)
    return float(sum(TYPICAL_CELL_BYTES[kind] for kind in columns))


def columns_types(canonical: dict[str, Any]) -> list[ColumnType]:
    """The types of a query's output columns, from the catalog."""
    return [catalog().field(name).type for name in canonical["columns"]]


def seconds_predict(*, engine: str, rows: int) -> float:
    """How long a run of `rows` rows takes on `engine` (see the module docstring); never negative."""
    runs = list(
        RunRecord.objects.filter(engine=engine)
        .order_by("-finished_at")
        .values_list("rows", "seconds")[:RECENT_RUNS]
    )
    same_size = [s for r, s in runs if _same_size(r, rows)]
    if len(same_size) >= SAME_SIZE_MIN_RUNS:
        return statistics.median(same_size)
    fitted = _line_fit(runs)
    if fitted is None:
        return BASE_SECONDS + rows / settings.QUOTE_DEFAULT_ROWS_PER_SECOND
    base, per_row = fitted
    return max(base + per_row * rows, 0.0)


def seconds_typical(*, engine: str) -> float:
    """The median run on `engine` (when a query's size is not known), or the default's guess for none."""
    recent = list(
        RunRecord.objects.filter(engine=engine)
        .order_by("-finished_at")
        .values_list("seconds", flat=True)[:50]
    )
    return statistics.median(recent) if recent else BASE_SECONDS


def _same_size(recorded: int, wanted: int) -> bool:
    if wanted == 0 or recorded == 0:
        return recorded == wanted
    return max(recorded, wanted) / min(recorded, wanted) <= SAME_SIZE


def _line_fit(runs: list[tuple[int, float]]) -> tuple[float, float] | None:
    """`(a, b)` of `seconds = a + b * rows` minimising the sum of squared relative errors (weights 1/s^2),
    both kept non-negative; None with fewer than two distinct sizes."""
    points = [(float(r), s) for r, s in runs if s > 0]
    if len({r for r, _ in points}) < 2:
        return None
    weights = [1.0 / (s * s) for _, s in points]
    sw = sum(weights)
    swr = sum(w * r for w, (r, _) in zip(weights, points, strict=True))
    swrr = sum(w * r * r for w, (r, _) in zip(weights, points, strict=True))
    sws = sum(w * s for w, (_, s) in zip(weights, points, strict=True))
    swrs = sum(w * r * s for w, (r, s) in zip(weights, points, strict=True))
    det = sw * swrr - swr * swr
    if det <= 0:
        return None
    base = (swrr * sws - swr * swrs) / det
    per_row = (sw * swrs - swr * sws) / det
    if per_row < 0:  # bigger runs were not slower: the sizes seen say nothing about the rate
        return statistics.median(s for _, s in points), 0.0
    if base < 0:  # through the origin instead
        return 0.0, swrs / swrr
    return base, per_row
