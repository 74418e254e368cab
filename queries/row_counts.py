"""How many rows a query will export, answered within a time budget: a dry run's `estimate.rows`.

In order, the first that answers in time:
1. `exact-count`: `SELECT COUNT(*)` over exactly the export's rows (the export's own WHERE and scope, from
   `query_compile_summary_base`), bounded by QUOTE_TIME_LIMIT_SECONDS. DuckDB's zone maps and PostgreSQL's
   (CustomerId, TimeStamp) index make a customer's day cheap. A query of a customer, a window and events only
   (no condition, no scope), on a warehouse whose hourly event counts are complete (exports.engines.counts),
   is counted from them instead (`hourly_count_statement`): the same number, read from a few thousand rows.
2. `sampled`: the same count over SAMPLE_SLICES thin slices spread evenly over the window (SAMPLE_FRACTION of
   it in all), scaled up to the whole window; bounded by a quarter of the limit. A scope's sessions are then
   those of each slice only: an approximation, which the method's name says.
3. `statistics`: the engine's own estimate (EXPLAIN: nothing is read), bounded like the sample.

A statement cut short by its deadline is interrupted through the engine's `cancel()`; the engine is then
dropped and a fresh one opened for the next step, so a late interrupt can never hit the next statement.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from exports.engines import counts
from exports.engines.base import Dialect, Statement, WarehouseEngine
from exports.errors import QueryCanceled
from exports.schema import Column, ColumnType, quote_identifier
from queries.compiler import query_compile, query_compile_summary_base
from queries.spec import Query, Window
from queries.warm_engines import warm_engines

EXACT, SAMPLED, STATISTICS = "exact-count", "sampled", "statistics"
METHODS = (EXACT, SAMPLED, STATISTICS)
SAMPLE_SLICES = 8
SAMPLE_FRACTION = 1 / 16
FALLBACK_SHARE = 0.25  # of the time limit, for the sample and for the statistics


@dataclass(frozen=True, slots=True)
class RowCount:
    rows: int
    method: str  # one of METHODS


class BoundedWarehouse:
    """The warehouse engine of one synchronous call, whose statements each run under a deadline.

    `bounded(seconds)` yields the engine; when the deadline passes first, the running statement is
    interrupted (it raises QueryCanceled) and the engine is closed and forgotten, so the next `bounded` gets a
    fresh one: an interrupt that lands just after a statement ended would otherwise stop the next one. The
    engine comes from queries.warm_engines and goes back there when the call is done (`close`), unless it
    failed; `engine_open` gives it another source (opened and closed by this call alone)."""

    def __init__(self, engine_open: Callable[[], WarehouseEngine] | None = None) -> None:
        self._open = engine_open
        self._engine: WarehouseEngine | None = None

    @property
    def dialect(self) -> Dialect:
        return self._current().dialect

    def _current(self) -> WarehouseEngine:
        if self._engine is None:
            self._engine = self._open() if self._open is not None else warm_engines.take()
        return self._engine

    @contextlib.contextmanager
    def bounded(self, seconds: float) -> Iterator[WarehouseEngine]:
        engine = self._current()
        lock = threading.Lock()
        state = {"armed": True, "fired": False}

        def fire() -> None:
            with lock:
                if state["armed"]:
                    state["fired"] = True
                    engine.cancel()

        timer = threading.Timer(seconds, fire)
        timer.daemon = True
        timer.start()
        failed = True
        try:
            yield engine
            failed = False
        finally:
            with lock:
                state["armed"] = False
            timer.cancel()
            if state["fired"] or failed:  # interrupted, or in an unknown state: never reused
                self._engine = None
                self._drop(engine)

    def close(self) -> None:
        """The call is done: its engine goes back to the warm ones (or is closed)."""
        engine, self._engine = self._engine, None
        if engine is None:
            return
        if self._open is None:
            warm_engines.give_back(engine)
        else:
            engine.close()

    def _drop(self, engine: WarehouseEngine) -> None:
        if self._open is None:
            warm_engines.discard(engine)
        else:
            engine.close()


def count_statement(query_spec: Query, *, customer_id: str, dialect: Dialect) -> Statement:
    """`SELECT COUNT(*)` over exactly the rows the export of `query_spec` writes."""
    base = query_compile_summary_base(query_spec, customer_id=customer_id, dialect=dialect)
    return Statement(
        sql=f"SELECT COUNT(*) AS {quote_identifier('rows')} FROM ({base.sql}) AS {quote_identifier('quote_rows')}",
        params=base.params,
        columns=(Column("rows", ColumnType.INTEGER),),
        dialect=dialect.name,
    )


def hourly_count_statement(query_spec: Query, *, customer_id: str, dialect: Dialect) -> Statement | None:
    """The number `count_statement` gives, from the hourly event counts (exports.engines.counts): the sum of the
    counts of the whole hours inside the window, plus a COUNT(*) of `events` over the partial hours at its two
    edges (what `count_statement` compiles for each edge's window). One statement, so one snapshot of both
    tables. The engine must hold the counts (`WarehouseEngine.event_counts_ready`).

    None when the counts cannot answer: a condition or a scope (the counts know only customer, hour and event),
    a window holding no whole hour (counting it is as cheap), or a dialect that binds parameters by name (the
    statements' parameters are joined in text order)."""
    if query_spec.scope is not None or any(event.conditions for event in query_spec.events):
        return None
    if dialect.paramstyle == "named":
        return None
    hours = _whole_hours(query_spec.window)
    if hours is None:
        return None
    first, end = hours
    window = query_spec.window
    below = Window(start=window.start, start_inclusive=window.start_inclusive, end=first, end_inclusive=False)
    above = Window(start=end, start_inclusive=True, end=window.end, end_inclusive=window.end_inclusive)
    lower = count_statement(replace(query_spec, window=below), customer_id=customer_id, dialect=dialect)
    upper = count_statement(replace(query_spec, window=above), customer_id=customer_id, dialect=dialect)
    names = tuple(dict.fromkeys(event.event.name for event in query_spec.events))
    mark = dialect.placeholder()
    table, rows, hour = (quote_identifier(name) for name in (counts.COUNTS_TABLE, counts.ROWS, counts.HOUR))
    whole = (
        f"SELECT coalesce(sum({rows}), 0) FROM {table}"
        f" WHERE {quote_identifier(counts.CUSTOMER)} = {mark}"
        f" AND {quote_identifier(counts.EVENT)} IN ({', '.join(mark for _ in names)})"
        f" AND {hour} >= {mark} AND {hour} < {mark}"
    )
    bigint = dialect.type_names[ColumnType.INTEGER.value]
    return Statement(
        sql=f"SELECT CAST(({lower.sql}) + ({whole}) + ({upper.sql}) AS {bigint}) AS {quote_identifier('rows')}",
        params=(*lower.params, customer_id, *names, first, end, *upper.params),  # in text order
        columns=(Column("rows", ColumnType.INTEGER),),
        dialect=dialect.name,
    )


def _whole_hours(window: Window) -> tuple[datetime, datetime] | None:
    """The first and the end (exclusive) of the whole hours inside `window`, or None when it holds none.

    Timestamps are whole microseconds: the window is the closed range [first, last] of microseconds, and a
    row in hour H (date_trunc('hour', TimeStamp) = H) is in the window for every H in the result's range."""
    tick = timedelta(microseconds=1)
    try:
        first = window.start if window.start_inclusive else window.start + tick
        last = window.end if window.end_inclusive else window.end - tick
        start, end = _hour_ceil(first), _hour_floor(last + tick)
    except OverflowError:  # a bound at the calendar's edge: no hour to gain
        return None
    return (start, end) if start < end else None


def _hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _hour_ceil(moment: datetime) -> datetime:
    floor = _hour_floor(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def rows_count(
    warehouse: BoundedWarehouse, query_spec: Query, *, customer_id: str, limit_seconds: float
) -> RowCount:
    """The rows the export of `query_spec` will write, by the first method that answers in time (see the module
    docstring). Raises WarehouseError when the warehouse fails otherwise than by running out of time."""
    with contextlib.suppress(QueryCanceled), warehouse.bounded(limit_seconds) as engine:
        return RowCount(rows=exact_rows(engine, query_spec, customer_id=customer_id), method=EXACT)
    fallback_seconds = limit_seconds * FALLBACK_SHARE
    with contextlib.suppress(QueryCanceled), warehouse.bounded(fallback_seconds) as engine:
        return RowCount(rows=_sampled(engine, query_spec, customer_id), method=SAMPLED)
    with warehouse.bounded(fallback_seconds) as engine:
        return statistics_rows(engine, query_spec, customer_id=customer_id)


def statistics_rows(engine: WarehouseEngine, query_spec: Query, *, customer_id: str) -> RowCount:
    """The engine's estimate of the export's rows: the planner's result rows where it says them, else the
    rows its scans read (an upper bound). An engine whose estimate is a count says so (`exact`)."""
    statement = query_compile(query_spec, customer_id=customer_id, dialect=engine.dialect)
    estimate = engine.estimate(statement)
    result_rows = estimate.details.get("result_rows")
    rows = result_rows if isinstance(result_rows, int) and result_rows >= 0 else estimate.rows
    return RowCount(rows=max(int(rows), 0), method=EXACT if estimate.details.get("exact") else STATISTICS)


def exact_rows(engine: WarehouseEngine, query_spec: Query, *, customer_id: str) -> int:
    """The rows the export of `query_spec` writes, counted: from the hourly event counts where they can answer
    and the engine holds them complete (`hourly_count_statement`), else by `count_statement`."""
    statement = hourly_count_statement(query_spec, customer_id=customer_id, dialect=engine.dialect)
    if statement is None or not engine.event_counts_ready():
        statement = count_statement(query_spec, customer_id=customer_id, dialect=engine.dialect)
    return _rows(engine, statement)


def _count(engine: WarehouseEngine, query_spec: Query, customer_id: str) -> int:
    return _rows(engine, count_statement(query_spec, customer_id=customer_id, dialect=engine.dialect))


def _rows(engine: WarehouseEngine, statement: Statement) -> int:
    return sum(
        int(value or 0) for batch in engine.execute(statement) for value in batch.column(0).to_pylist()
    )


def _sampled(engine: WarehouseEngine, query_spec: Query, customer_id: str) -> int:
    """The count over thin slices spread over the window, scaled to the whole window."""
    window = query_spec.window
    span = window.end - window.start
    width = span * SAMPLE_FRACTION / SAMPLE_SLICES
    if width.total_seconds() <= 0:  # a window of a few microseconds: counting it is the sample
        return _count(engine, query_spec, customer_id)
    counted = 0
    for index in range(SAMPLE_SLICES):
        start = window.start + span * (index + 0.5) / SAMPLE_SLICES - width / 2
        thin = Window(start=start, start_inclusive=True, end=start + width, end_inclusive=False)
        counted += _count(engine, replace(query_spec, window=thin), customer_id)
    return round(counted * span / (width * SAMPLE_SLICES))
