"""A query's summary computed by the warehouse (the synchronous `POST /dwh/summary`): the same object the export's
SummaryCollector builds from the rows it writes (exports.summary), here from aggregate SQL.

The rows are exactly the export's: `query_compile_summary_base` is the export's own SELECT (its scope CTE, its
WHERE) with only the hidden summary columns and no sort, wrapped as a derived table (a subquery may hold its
own WITH on both engines). Three statements, each one scan of those rows, in this order:

    totals:     SELECT COUNT(*), COUNT(DISTINCT session), COUNT(DISTINCT originator), MIN(ts), MAX(ts),
                       COUNT(duration), SUM(duration), MIN(duration), MAX(duration) FROM (<base>) AS "summary_rows"
    breakdown:  SELECT event, EXTRACT(HOUR FROM ts), EXTRACT(ISODOW FROM ts), COUNT(*) ... GROUP BY the three
                (at most events x 24 x 7 rows: per event, per hour and per weekday from one scan)
    reasons:    SELECT reason, COUNT(*) ... WHERE reason IS NOT NULL GROUP BY reason
                ORDER BY COUNT(*) DESC, reason LIMIT 20

Run each with the engine (`engine.execute`, whose batches follow each statement's `columns`) and hand the rows
to `summary_from_results`. Identifiers are the catalog's and our own aliases; every value is a bound parameter.
Timestamps are naive UTC on both engines (PostgreSQL's session runs in UTC), so EXTRACT gives UTC hours and
days; text sorts by code point (DuckDB compares bytes, PostgreSQL's text columns are COLLATE "C").
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from exports.engines.base import Dialect, Statement
from exports.schema import Column, ColumnType, quote_identifier
from exports.summary import (
    DISCONNECT,
    DURATION,
    EVENT,
    ORIGINATOR,
    SESSION,
    TIMESTAMP,
    TOP_REASONS,
    SummaryFigures,
    summary_object,
)
from queries.compiler import query_compile_summary_base
from queries.spec import Query

ROWS_ALIAS = "summary_rows"


def summary_statements(query_spec: Query, *, customer_id: str, dialect: Dialect) -> list[Statement]:
    """The three aggregate statements of `query_spec`'s summary as `customer_id` may see it (see the module
    docstring), in the order `summary_from_results` expects their rows."""
    base = query_compile_summary_base(query_spec, customer_id=customer_id, dialect=dialect)
    rows = f"FROM ({base.sql}) AS {quote_identifier(ROWS_ALIAS)}"
    integer = dialect.type_names[ColumnType.INTEGER.value]
    session, originator, timestamp, duration = (
        quote_identifier(name) for name in (SESSION, ORIGINATOR, TIMESTAMP, DURATION)
    )
    event, reason = quote_identifier(EVENT), quote_identifier(DISCONNECT)

    def statement(select: list[tuple[str, str, ColumnType]], rest: str = "") -> Statement:
        items = ", ".join(f"{sql} AS {quote_identifier(alias)}" for sql, alias, _ in select)
        return Statement(
            sql=f"SELECT {items} {rows}{rest}",
            params=base.params,
            columns=tuple(Column(alias, column_type) for _, alias, column_type in select),
            dialect=dialect.name,
        )

    totals = statement(
        [
            ("COUNT(*)", "rows", ColumnType.INTEGER),
            (f"COUNT(DISTINCT {session})", "sessions", ColumnType.INTEGER),
            (f"COUNT(DISTINCT {originator})", "originators", ColumnType.INTEGER),
            (f"MIN({timestamp})", "first", ColumnType.TIMESTAMP),
            (f"MAX({timestamp})", "last", ColumnType.TIMESTAMP),
            (f"COUNT({duration})", "duration_count", ColumnType.INTEGER),
            (f"SUM({duration})", "duration_sum", ColumnType.FLOAT),
            (f"MIN({duration})", "duration_min", ColumnType.FLOAT),
            (f"MAX({duration})", "duration_max", ColumnType.FLOAT),
        ]
    )
    # EXTRACT gives numeric on PostgreSQL and BIGINT on DuckDB: the cast makes both integers.
    breakdown = statement(
        [
            (event, "event", ColumnType.STRING),
            (f"CAST(EXTRACT(HOUR FROM {timestamp}) AS {integer})", "hour", ColumnType.INTEGER),
            (
                f"CAST(EXTRACT({dialect.iso_weekday} FROM {timestamp}) AS {integer})",
                "day",
                ColumnType.INTEGER,
            ),
            ("COUNT(*)", "rows", ColumnType.INTEGER),
        ],
        " GROUP BY " + ", ".join(quote_identifier(alias) for alias in ("event", "hour", "day")),
    )
    # The top reasons by count, then by code point (the LIMIT must cut where summary_object's order does).
    order = f"{quote_identifier('rows')} DESC, {quote_identifier('reason')}"
    reasons = statement(
        [(reason, "reason", ColumnType.STRING), ("COUNT(*)", "rows", ColumnType.INTEGER)],
        f" WHERE {reason} IS NOT NULL GROUP BY {reason} ORDER BY {order} LIMIT {TOP_REASONS:d}",
    )
    return [totals, breakdown, reasons]


def summary_from_results(results: list[list[tuple[Any, ...]]]) -> dict[str, Any]:
    """The summary object (exports.summary.summary_object) from the rows of `summary_statements`, in order.

    Counts are exact (`"approximate": false`); the warehouse counts distinct values itself.
    """
    totals, breakdown, reasons = results
    (
        (rows, sessions, originators, first, last, duration_count, duration_sum, duration_min, duration_max),
    ) = totals
    per_event: Counter[str] = Counter()
    hours, days = [0] * 24, [0] * 7
    for event, hour, day, count in breakdown:  # at most events x 24 x 7 rows
        if not (0 <= hour < 24 and 1 <= day <= 7):  # a negative index would hide a wrong day numbering
            raise ValueError(f"not an hour and an ISO weekday: {hour}, {day}")
        per_event[event] += count
        hours[hour] += count
        days[day - 1] += count
    return summary_object(
        SummaryFigures(
            rows=rows,
            rows_per_event=dict(per_event),
            unique_sessions=sessions,
            unique_originators=originators,
            approximate=False,
            first=first,
            last=last,
            hours=hours,
            days=days,
            duration_count=duration_count,
            duration_sum=duration_sum or 0.0,
            duration_min=duration_min,
            duration_max=duration_max,
            reasons=[(value, count) for value, count in reasons],
        )
    )
