"""Compilation: a validated `Query` and a customer in, one parameterised SQL `Statement` out (docs/DESIGN.md §3).

Hand-written SQL, for speed (a typical query compiles in tens of microseconds), under two rules that make
injection impossible by construction: identifiers come only from the catalog and pass `quote_identifier`;
every value, the customer included, is a bound parameter. Nothing a request holds is spliced into the text.

Shape, over the one wide `events` table (see `exports.engines`): one scan, whatever the number of events.

    [WITH "scope_sessions" AS (SELECT "SessionId" FROM "events"
                               WHERE "CustomerId" = ? AND <window> [AND (<scope filter> OR ...)])]
    SELECT <output columns> FROM "events"
    WHERE "CustomerId" = ? AND <window>
          AND (("EventName" = ? [AND <conditions of event 1>]) OR ...one alternative per requested event)
          [AND "SessionId" IN (SELECT "SessionId" FROM "scope_sessions")]
    ORDER BY "events"."TimeStamp", "events"."_row_id"

An output column requested by every event is the bare column; one requested by only some is
`CASE WHEN "EventName" IN (?, ...) THEN <column> END` over those events, so it keeps its type and is empty
in the other events' rows (docs/DESIGN.md §3). The exception is the `EventName` put first for a multi-event query
when no event asked for it: every row carries its event's name. The sort keys are qualified with the table
because both engines resolve a bare ORDER BY name to an output column first, and an output column of that
name may be such a CASE. One scan, not a UNION ALL of one SELECT per event: DuckDB then sorts the rows it
reads once, within the worker's memory limit (a sorted UNION ALL ran out of it at a few million rows).

The customer predicate is in the main WHERE and in the scope CTE: nothing reads another customer's rows, and
a SessionId shared by two customers never correlates across them. `_row_id` breaks TimeStamp ties so every
engine returns the same order.

Summaries (exports.summary): `summary=True` appends six hidden `_summary_*` columns after the output columns,
for the export to count as it writes; `query_compile_summary_base` selects only those, over the same rows and
unsorted, for the warehouse to aggregate (queries.summary_sql). Without `summary` nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta

from exports.engines.base import EVENTS_TABLE, ROW_ID, Dialect, Statement, Unordered
from exports.schema import Column, ColumnType, quote_identifier
from exports.summary import SUMMARY_COLUMNS
from queries.catalog import Field
from queries.spec import Condition, Op, Query, Scalar, Scope, Window

CUSTOMER_FIELD = "CustomerId"
EVENT_FIELD = "EventName"
TIME_FIELD = "TimeStamp"
SCOPE_CTE = "scope_sessions"
SLICE_TIME = "_slice_time"

# What each hidden summary column reads (exports.summary.SUMMARY_COLUMNS): a field, and the one event whose
# rows it counts in (None: every row). A call's figures must not pick up a value another event's row holds.
SUMMARY_SOURCES: dict[str, tuple[str, str | None]] = {
    "_summary_event": (EVENT_FIELD, None),
    "_summary_session": ("SessionId", None),
    "_summary_originator": ("OriginatorId", None),
    "_summary_timestamp": (TIME_FIELD, None),
    "_summary_duration": ("Duration", "CallEvent"),
    "_summary_disconnect": ("DisconnectReason", "CallEvent"),
}

_COMPARISONS = {Op.EQ: "=", Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}


class _Binder:
    """Collects parameters in text order and hands out the dialect's placeholder for each (`:pN`, N its
    position, in a "named" dialect)."""

    __slots__ = ("dialect", "params")

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.params: list[object] = []

    def bind(self, value: object) -> str:
        self.params.append(value)
        return self.dialect.placeholder(len(self.params))

    def bind_list(self, values: Iterable[Scalar]) -> str:
        return ", ".join(self.bind(v) for v in values)


def query_compile(
    query_spec: Query, *, customer_id: str, dialect: Dialect, summary: bool = False, sliced: bool = False
) -> Statement:
    """The SQL for `query_spec` as `customer_id` may see it, in `dialect`; output columns are `query_spec.columns`.

    `summary`: the hidden `exports.summary.SUMMARY_COLUMNS` follow the output columns (in the unordered form
    too, before its sort keys), for the export's SummaryCollector; the SQL is otherwise the same.

    `sliced`: the main WHERE ends with a slice's bounds, `TimeStamp >= lower AND TimeStamp < upper` (and the
    days they span, in a lake partitioned by day), whose `slice_bound_count(dialect)` values are not in the
    statement's parameters: the slice appends them (`statement_slice`). They are the last placeholders in the
    text (nothing after the WHERE is bound) and, in a "named" dialect, the highest positions. A scope's
    sessions are still those of the whole window: only the rows output are cut.
    """
    binder = _Binder(dialect)  # parameters in text order: the scope CTE, the select list, the WHERE

    def select(binder: _Binder) -> str:
        columns = [_column_sql(field, query_spec, binder) for field in query_spec.columns]
        return ", ".join([*columns, _summary_sql(binder)] if summary else columns)

    prefix, columns, source, (select_from, select_to) = _select_parts(
        query_spec, customer_id, binder, select, sliced=sliced
    )
    table = quote_identifier(EVENTS_TABLE)
    # Qualified: a bare name would sort by an output column of that name, which may be a CASE (see above).
    sort_keys = f"{table}.{quote_identifier(TIME_FIELD)}, {table}.{quote_identifier(ROW_ID)}"
    params = tuple(binder.params[: len(binder.params) - (slice_bound_count(dialect) if sliced else 0)])
    unordered = None
    # A semi-join need not keep the scan's order: only plain scans may skip the sort. Named placeholders carry
    # their position, which the keys' shorter parameter list would shift: such a dialect gets no unordered form.
    if query_spec.scope is None and dialect.paramstyle != "named":
        unordered = Unordered(
            sql=f"SELECT {columns}, {sort_keys} {source}",
            keys_sql=f"SELECT {sort_keys} {source}",
            keys_params=params[:select_from] + params[select_to:],
        )
    return Statement(
        sql=f"{prefix}SELECT {columns} {source} ORDER BY {sort_keys}",
        params=params,
        columns=tuple(field.column for field in query_spec.columns) + (_summary_columns() if summary else ()),
        dialect=dialect.name,
        unordered=unordered,
    )


def query_compile_timestamps(query_spec: Query, *, customer_id: str, dialect: Dialect) -> Statement:
    """Only the TimeStamp (as `_slice_time`) of exactly the rows `query_compile` returns, unsorted: what the
    warehouse counts and takes quantiles of to cut a big export into slices (queries.slicing)."""
    binder = _Binder(dialect)
    column = f"{quote_identifier(TIME_FIELD)} AS {quote_identifier(SLICE_TIME)}"
    prefix, columns, source, _ = _select_parts(query_spec, customer_id, binder, lambda _: column)
    return Statement(
        sql=f"{prefix}SELECT {columns} {source}",
        params=tuple(binder.params),
        columns=(Column(SLICE_TIME, ColumnType.TIMESTAMP),),
        dialect=dialect.name,
    )


def slice_bound_count(dialect: Dialect) -> int:
    """How many values a slice's bounds bind: lower and upper TimeStamp, and their days in a day-partitioned lake."""
    return 2 if dialect.day_partition is None else 4


def query_compile_summary_base(query_spec: Query, *, customer_id: str, dialect: Dialect) -> Statement:
    """Only the hidden summary columns of exactly the rows `query_compile` returns, unsorted: what the
    warehouse aggregates for a summary (queries.summary_sql). The SQL may start with the scope CTE."""
    binder = _Binder(dialect)
    prefix, columns, source, _ = _select_parts(query_spec, customer_id, binder, _summary_sql)
    return Statement(
        sql=f"{prefix}SELECT {columns} {source}",
        params=tuple(binder.params),
        columns=_summary_columns(),
        dialect=dialect.name,
    )


def _select_parts(
    query_spec: Query,
    customer_id: str,
    binder: _Binder,
    select: Callable[[_Binder], str],
    *,
    sliced: bool = False,
) -> tuple[str, str, str, tuple[int, int]]:
    """The scope CTE (with a trailing space, or ""), the select list `select` writes, `FROM ... WHERE ...`
    and the span of the select list's parameters, bound in text order; `sliced`: the WHERE ends with a slice's
    bounds (bound as None: placeholders only)."""
    if not isinstance(customer_id, str) or not customer_id:
        raise ValueError("a query compiles only for a customer: customer_id must be a non-empty string")
    if not query_spec.events:
        raise ValueError("a query needs at least one event")
    prefix = ""
    if query_spec.scope is not None:
        sessions = _scope_sql(query_spec.scope, query_spec.window, customer_id, binder)
        prefix = f"WITH {quote_identifier(SCOPE_CTE)} AS ({sessions}) "
    select_from = len(binder.params)
    columns = select(binder)
    select_to = len(binder.params)
    where = [
        f"{quote_identifier(CUSTOMER_FIELD)} = {binder.bind(customer_id)}",
        *_window_sql(query_spec.window, binder),
        _alternatives_sql(((e.event.name, e.conditions) for e in query_spec.events), binder),
    ]
    if query_spec.scope is not None:
        key = quote_identifier(query_spec.scope.key.name)
        where.append(f"{key} IN (SELECT {key} FROM {quote_identifier(SCOPE_CTE)})")
    if sliced:
        where.extend(_slice_sql(binder))
    source = f"FROM {quote_identifier(EVENTS_TABLE)} WHERE {' AND '.join(where)}"
    return prefix, columns, source, (select_from, select_to)


def _summary_sql(binder: _Binder) -> str:
    """The hidden summary columns, in SUMMARY_COLUMNS order: a field, or a CASE keeping it to one event."""
    items = []
    for name, _ in SUMMARY_COLUMNS:
        field, event = SUMMARY_SOURCES[name]
        column = quote_identifier(field)
        if event is not None:
            column = f"CASE WHEN {quote_identifier(EVENT_FIELD)} = {binder.bind(event)} THEN {column} END"
        items.append(f"{column} AS {quote_identifier(name)}")
    return ", ".join(items)


def _summary_columns() -> tuple[Column, ...]:
    return tuple(Column(name, column_type) for name, column_type in SUMMARY_COLUMNS)


def _column_sql(field: Field, query_spec: Query, binder: _Binder) -> str:
    """One output column: bare where every event has it, else a CASE on the events that requested it."""
    requesting = [e.event.name for e in query_spec.events if any(f.name == field.name for f in e.fields)]
    column = _column(field)
    # EventName that no event asked for was put first by validation: every row carries its event's name.
    if len(requesting) == len(query_spec.events) or (field.name == EVENT_FIELD and not requesting):
        return column
    if not requesting:  # validation never outputs a column nobody asked for; keep the meaning anyway
        return f"CASE WHEN FALSE THEN {column} END AS {column}"
    events = binder.bind_list(requesting)
    return f"CASE WHEN {quote_identifier(EVENT_FIELD)} IN ({events}) THEN {column} END AS {column}"


def _scope_sql(scope: Scope, window: Window, customer_id: str, binder: _Binder) -> str:
    """The customer's sessions with a record in the window matching any one scope filter (no filters: any)."""
    key = quote_identifier(scope.key.name)
    where = [f"{quote_identifier(CUSTOMER_FIELD)} = {binder.bind(customer_id)}", *_window_sql(window, binder)]
    if scope.filters:
        where.append(_alternatives_sql(((f.event.name, f.conditions) for f in scope.filters), binder))
    return f"SELECT {key} FROM {quote_identifier(EVENTS_TABLE)} WHERE {' AND '.join(where)}"


def _alternatives_sql(alternatives: Iterable[tuple[str, tuple[Condition, ...]]], binder: _Binder) -> str:
    """Records of any one of the events, each meeting all of its own conditions."""
    terms = []
    for event_name, conditions in alternatives:
        parts = [f"{quote_identifier(EVENT_FIELD)} = {binder.bind(event_name)}"]
        parts.extend(_condition_sql(condition, binder) for condition in conditions)
        terms.append(f"({' AND '.join(parts)})")
    return terms[0] if len(terms) == 1 else f"({' OR '.join(terms)})"


def _window_sql(window: Window, binder: _Binder) -> tuple[str, ...]:
    """The window on TimeStamp; in a lake partitioned by day (`Dialect.day_partition`), also its days, which
    the rows in the window are within: what lets the engine skip every other day's files."""
    column = quote_identifier(TIME_FIELD)
    lower = ">=" if window.start_inclusive else ">"
    upper = "<=" if window.end_inclusive else "<"
    bounds = f"{column} {lower} {binder.bind(window.start)}", f"{column} {upper} {binder.bind(window.end)}"
    day = binder.dialect.day_partition
    if day is None:
        return bounds
    # Timestamps have microseconds: an exclusive end at midnight leaves that day out.
    end = window.end if window.end_inclusive else window.end - timedelta(microseconds=1)
    days = quote_identifier(day)
    first, last = binder.bind(window.start.date()), binder.bind(end.date())
    return (*bounds, f"{days} >= {first}", f"{days} <= {last}")


def _slice_sql(binder: _Binder) -> tuple[str, ...]:
    """A slice's bounds on TimeStamp, lower inclusive and upper exclusive, and the days they span (see
    `_window_sql`); placeholders only, the values come with the slice."""
    column = quote_identifier(TIME_FIELD)
    bounds = f"{column} >= {binder.bind(None)}", f"{column} < {binder.bind(None)}"
    day = binder.dialect.day_partition
    if day is None:
        return bounds
    days = quote_identifier(day)
    return (*bounds, f"{days} >= {binder.bind(None)}", f"{days} <= {binder.bind(None)}")


def _condition_sql(condition: Condition, binder: _Binder) -> str:
    """One condition. `$ne`/`$nin` match NULL (a missing value is not equal to x); every other operator fails
    on NULL, which SQL's three-valued logic already does."""
    column = _column(condition.field)
    op, value = condition.op, condition.value
    if op is Op.NE:
        return f"({column} IS NULL OR {column} <> {binder.bind(value)})"
    if op.takes_list:
        values = value if isinstance(value, tuple) else (value,)
        if (
            not values
        ):  # validation refuses empty lists; keep the meaning anyway: IN () is false, NOT IN () true
            return "FALSE" if op is Op.IN else "TRUE"
        if op is Op.IN:
            return f"{column} IN ({binder.bind_list(values)})"
        return f"({column} IS NULL OR {column} NOT IN ({binder.bind_list(values)}))"
    return f"{column} {_COMPARISONS[op]} {binder.bind(value)}"


def _column(field: Field) -> str:
    return quote_identifier(field.name)
