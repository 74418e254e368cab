"""Cutting one big export into TimeStamp slices that several workers write at once (docs/DESIGN.md §8).

The result is ordered by (TimeStamp, _row_id), so slices cut at TimeStamp values, exported in order, are the
whole result in order: slice i holds the rows with `lower_i <= TimeStamp < upper_i`, and upper_i is
lower_{i+1}. A boundary is a TimeStamp, i.e. the pair (TimeStamp, smallest _row_id): rows tied on a
boundary's TimeStamp all fall in the later slice, so no tie is ever split between two slices.

Where to cut is the warehouse's answer (its count and quantiles of the rows' TimeStamp, one cheap pass over a
single column), so the slices of a query are the same whoever asks and however many workers then run them:
the parts and the manifest do not depend on the number of workers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from exports.engines.base import Dialect, Statement, Unordered, WarehouseEngine
from exports.schema import Column, ColumnType, quote_identifier
from queries.compiler import SLICE_TIME, query_compile, query_compile_timestamps, slice_bound_count
from queries.plan import SlicePlan
from queries.spec import Query

_TICK = timedelta(microseconds=1)  # the warehouse's TimeStamp resolution
_ROWS = "_slice_rows"


@dataclass(frozen=True, slots=True)
class SliceRange:
    """TimeStamp from `lower` (inclusive) to `upper` (exclusive), naive UTC."""

    lower: datetime
    upper: datetime


def slice_plan(query_spec: Query, *, customer_id: str, dialect: Dialect) -> SlicePlan:
    """What a worker needs to cut the query's export into slices, compiled at POST with the rest of the plan."""
    return SlicePlan(
        statement=query_compile(
            query_spec, customer_id=customer_id, dialect=dialect, summary=True, sliced=True
        ),
        bounds=slice_bound_count(dialect),
        timestamps=query_compile_timestamps(query_spec, customer_id=customer_id, dialect=dialect),
    )


def slice_count(rows: int, *, split_rows: int, max_slices: int) -> int:
    """How many slices an export of `rows` rows is cut into: one per `split_rows` rows, at most `max_slices`;
    1 (not cut) at or below `split_rows`, or when splitting is off (`split_rows` 0)."""
    if split_rows <= 0 or rows <= split_rows:
        return 1
    return max(1, min(max_slices, math.ceil(rows / split_rows)))


def slice_ranges(
    engine: WarehouseEngine, plan: SlicePlan, *, split_rows: int, max_slices: int
) -> list[SliceRange]:
    """The slices of the plan's export, in time order; [] when it is not worth cutting (one slice)."""
    rows, first, last = _count(engine, plan.timestamps)
    wanted = slice_count(rows, split_rows=split_rows, max_slices=max_slices)
    if wanted < 2 or first is None or last is None:
        return []
    cuts = _quantiles(engine, plan.timestamps, [i / wanted for i in range(1, wanted)])
    # Equal quantiles (many rows on one TimeStamp) make one boundary, and a boundary at the first TimeStamp
    # would make an empty first slice.
    boundaries = sorted({cut for cut in cuts if first < cut <= last})
    edges = [first, *boundaries, last + _TICK]
    return [SliceRange(lower, upper) for lower, upper in itertools.pairwise(edges)]


def slice_statement(plan: SlicePlan, rows: SliceRange) -> Statement:
    """The plan's export statement restricted to one slice: its bound values appended where the compiler left
    their placeholders (the last ones)."""
    bounds: tuple[object, ...] = (rows.lower, rows.upper)
    if plan.bounds == 4:  # and the days they span, in a lake partitioned by day
        bounds += (rows.lower.date(), (rows.upper - _TICK).date())
    statement = plan.statement
    unordered = statement.unordered
    return Statement(
        sql=statement.sql,
        params=statement.params + bounds,
        columns=statement.columns,
        dialect=statement.dialect,
        unordered=None
        if unordered is None
        else Unordered(
            sql=unordered.sql, keys_sql=unordered.keys_sql, keys_params=unordered.keys_params + bounds
        ),
    )


def _count(engine: WarehouseEngine, timestamps: Statement) -> tuple[int, datetime | None, datetime | None]:
    time = quote_identifier(SLICE_TIME)
    statement = _over(
        timestamps,
        f"count(*) AS {quote_identifier('n')}, min({time}) AS {quote_identifier('first')}, "
        f"max({time}) AS {quote_identifier('last')}",
        (
            Column("n", ColumnType.INTEGER),
            Column("first", ColumnType.TIMESTAMP),
            Column("last", ColumnType.TIMESTAMP),
        ),
    )
    rows, first, last = _one_row(engine, statement)
    return int(rows or 0), first, last


def _quantiles(engine: WarehouseEngine, timestamps: Statement, fractions: list[float]) -> list[datetime]:
    template = engine.dialect.quantile
    time = quote_identifier(SLICE_TIME)
    names = [f"q{i}" for i in range(len(fractions))]
    select = ", ".join(
        f"{template.format(column=time, fraction=repr(float(fraction)))} AS {quote_identifier(name)}"
        for name, fraction in zip(names, fractions, strict=True)
    )
    row = _one_row(engine, _over(timestamps, select, tuple(Column(n, ColumnType.TIMESTAMP) for n in names)))
    return [value for value in row if isinstance(value, datetime)]


def _over(timestamps: Statement, select: str, columns: tuple[Column, ...]) -> Statement:
    """An aggregate over the rows of `timestamps` (their TimeStamp only)."""
    return Statement(
        sql=f"SELECT {select} FROM ({timestamps.sql}) AS {quote_identifier(_ROWS)}",
        params=timestamps.params,
        columns=columns,
        dialect=timestamps.dialect,
    )


def _one_row(engine: WarehouseEngine, statement: Statement) -> list[Any]:
    for batch in engine.execute(statement):
        if batch.num_rows:
            return [batch.column(i)[0].as_py() for i in range(batch.num_columns)]
    return [None] * len(statement.columns)
