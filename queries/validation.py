"""Query validation: a JSON-decoded request body in, a `queries.spec.Query` out (docs/DESIGN.md §3).

Pure: no ORM, no HTTP. Every problem is a `QueryValidationError` whose `body` is the 400 error envelope; four
of them are documented byte for byte (bad dates, bad operators, unknown event, unknown field).

Precedence. A body can be wrong in several ways at once; the first failing step below decides the error, and
within a step the first problem in body order wins (bad operators and bad dates are instead gathered into one
message, as documented):

1. shape: the body is an object; its keys are known; `timestamp` and `data` are present; every part has the
   right container type (objects where objects go, `fields` a non-empty list of strings, a non-empty operator
   object per filtered field, `scope` with both `filters` and `scope`, the latter "SessionId");
2. operators: every key of `timestamp` and of each field's operator object is a known operator (all bad ones
   are listed, in the order met, once each);
3. timestamp bounds: exactly one lower (`$gte`/`$gt`) and one upper (`$lte`/`$lt`) bound, nothing else,
   each a string;
4. dates: the bounds and the values of TIMESTAMP fields (where event and field are known) are ISO 8601 with
   `T` and `Z` or an offset, as `queries.timestamps` reads them (all bad ones listed); then none is finer
   than the warehouse's microsecond;
5. window: the lower bound is not after the upper one, the window holds at least one microsecond, and it spans
   at most `max_window` ("Query range too wide: ...");
6. event names, in the order met ("X is not a valid schema name.");
7. field names, in the order met ("X is not a valid field."); then no field is requested twice for one event;
8. cross-references: every event of the top-level `filters` is also in `data`;
9. values, typed by their field (null, wrong type, NUL, over-long strings, `$in`/`$nin` not a non-empty list
   or longer than the limit);
10. limits: the number of events, of requested fields and of conditions (`QueryLimits`).

Cheap by construction: one walk over the body collects what the later steps check (no copies, no generic
recursion, so no depth limit is needed: only the fixed query structure is descended), the regex is compiled
once, and each distinct date string is parsed once, all of them in one pass.

One module for one thing done thoroughly (it is long on purpose): every rule a body must meet, in the order
that decides which error a customer sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from exports.schema import ColumnType
from insights.errors import DomainError
from queries.catalog import Catalog, Event, Field, catalog
from queries.json_kinds import json_kind
from queries.spec import Condition, EventQuery, Op, Query, Scalar, Scope, ScopeFilter, Value, Window
from queries.timestamps import Instant, instants_parse

TOP_LEVEL_KEYS = ("timestamp", "data", "filters", "scope")
DATA_KEYS = ("fields", "filters")
SCOPE_KEYS = ("filters", "scope")
CORRELATION_KEY = "SessionId"
LOWER_BOUNDS = ("$gte", "$gt")
UPPER_BOUNDS = ("$lte", "$lt")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MICROSECOND = timedelta(microseconds=1)

_OPERATORS: dict[str, Op] = {op.value: op for op in Op}
_OPERATOR_LIST = ", ".join(op.value for op in Op)


class QueryValidationError(DomainError):
    """A query body the service refuses (400); `message` is a str or, for the documented cases, a dict. Its
    `body` is the error envelope of docs/DESIGN.md §3: `{"code": 400, "message": ...}`."""

    def __init__(self, message: str | dict[str, Any]) -> None:
        super().__init__(printable(message) if isinstance(message, str) else message)


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Caps on a query's size: generous for real reports, finite so no body can make compilation explode."""

    max_events: int = 16
    max_fields: int = 256  # requested fields, summed over events
    max_conditions: int = 256  # (field, operator) pairs, summed over data, filters and scope
    max_in_values: int = 1000  # items of one $in / $nin list
    max_string_length: int = 1024  # characters of one string value


def query_validate(
    body: object,
    *,
    max_window: timedelta = timedelta(days=31),
    limits: QueryLimits = QueryLimits(),
    settings_keys: tuple[str, ...] = (),
) -> Query:
    """Turn a JSON-decoded query body into a Query, or raise QueryValidationError (see the module docstring).

    `max_window` is the customer's widest allowed timestamp window (docs/DESIGN.md §4); it must be positive.
    `settings_keys`: the keys the caller took out of the body before (an export's `output`, a preview's
    `limit`), named beside the query's own when an unknown key is refused.
    """
    cat = catalog()
    raw = _body_parse(body, settings_keys)
    if raw.bad_operators:
        raise QueryValidationError(operators_message(raw.bad_operators))
    lower, upper = _bounds_check(raw.timestamp)
    instants = _dates_check(raw, lower, upper, cat, limits)
    window = _window_build(lower, upper, instants, max_window)
    events = _events_resolve(raw, cat)
    _fields_check(raw, events)
    _filters_events_check(raw)
    _values_type(raw, events, instants, limits)
    _limits_check(raw, limits)
    return _query_build(raw, window, events, cat)


def printable(text: str) -> str:
    """`text` as given, but with NUL and lone surrogates escaped (`\\x00`, `\\ud800`).

    Messages echo names and values from the body, and a JSON body can smuggle in both; neither survives a
    UTF-8 response or a PostgreSQL text column, so a message holding one would turn a 400 into a 500.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def operators_message(bad: Iterable[str]) -> dict[str, str]:
    """The documented bad-operator message (its hint lists six operators, as the original API's does)."""
    listed = ", ".join(printable(op) for op in bad)
    hint = "try to use any of these ($gte, $lte, $gt, $lt, $ne, $eq)."
    return {"Operators": f"Invalid operators [{listed}], {hint}"}


def date_filters_message(bad: Iterable[str]) -> dict[str, dict[str, str]]:
    """The documented bad-date message, listing the offending values as given."""
    listed = ", ".join(printable(text) for text in bad)
    return {
        "Date_Filters": {
            "message": f"Invalid date filters [{listed}]. They must be in ISO8601 format. "
            "Example: 'YYYY-MM-DDTHH:MM:SSZ'",
            "code": "422-6",
        }
    }


# --- 1. shape: one walk over the body -------------------------------------------------------------


@dataclass(slots=True)
class _RawCondition:
    where: str  # e.g. "filters.CallEvent.Duration", for messages
    event: str
    field: str
    op: str
    value: object
    typed: Value | None = None  # set by the values step


@dataclass(slots=True)
class _RawGroup:
    """The conditions that one of data.E.filters, filters.E or scope.filters.E puts on one event."""

    event: str
    conditions: list[_RawCondition]


@dataclass(slots=True)
class _RawData:
    event: str
    fields: list[str]
    group: _RawGroup | None  # data.E.filters


@dataclass(slots=True)
class _RawBody:
    timestamp: dict[str, object] = field(default_factory=dict)
    data: list[_RawData] = field(default_factory=list)
    filters: list[_RawGroup] = field(default_factory=list)
    scope: list[_RawGroup] | None = None
    # (event, field or None) in the order met, so name errors report the first one in the body.
    names: list[tuple[str, str | None]] = field(default_factory=list)
    bad_operators: dict[str, None] = field(default_factory=dict)  # an ordered set

    def groups(self) -> Iterator[_RawGroup]:
        for entry in self.data:
            if entry.group is not None:
                yield entry.group
        yield from self.filters
        yield from self.scope or ()

    def conditions(self) -> Iterator[_RawCondition]:
        for group in self.groups():
            yield from group.conditions


def _body_parse(body: object, settings_keys: tuple[str, ...] = ()) -> _RawBody:
    if not isinstance(body, dict):
        raise QueryValidationError(
            f'The query body must be a JSON object with "timestamp" and "data", got {json_kind(body)}.'
        )
    for key in body:
        if key not in TOP_LEVEL_KEYS:
            raise QueryValidationError(
                f'Unknown attribute "{key}" in the query body; allowed: {", ".join(TOP_LEVEL_KEYS + settings_keys)}.'
            )
    for key in ("timestamp", "data"):
        if key not in body:
            raise QueryValidationError(f'The query body must have a "{key}" attribute.')
    raw = _RawBody()
    for key, value in body.items():  # body order, so operators are reported in the order met
        if key == "timestamp":
            raw.timestamp = _timestamp_parse(value, raw)
        elif key == "data":
            raw.data = _data_parse(value, raw)
        elif key == "filters":
            raw.filters = _groups_parse(value, "filters", raw)
        else:
            raw.scope = _scope_parse(value, raw)
    return raw


def _timestamp_parse(value: object, raw: _RawBody) -> dict[str, object]:
    if not isinstance(value, dict):
        raise QueryValidationError(
            f'"timestamp" must be an object such as {{"$gte": "2019-11-25T00:00:00Z", '
            f'"$lte": "2019-11-26T00:00:00Z"}}, got {json_kind(value)}.'
        )
    for op in value:
        _operator_note(op, raw)
    return value


def _data_parse(value: object, raw: _RawBody) -> list[_RawData]:
    if not isinstance(value, dict) or not value:
        raise QueryValidationError(
            f'"data" must be an object naming at least one event, such as '
            f'{{"CallEvent": {{"fields": ["SessionId"]}}}}, got {json_kind(value, empty=True)}.'
        )
    entries = []
    for event, spec in value.items():
        where = f"data.{event}"
        raw.names.append((event, None))
        if not isinstance(spec, dict):
            raise QueryValidationError(
                f'{where} must be an object such as {{"fields": ["SessionId"]}}, got {json_kind(spec)}.'
            )
        for key in spec:
            if key not in DATA_KEYS:
                raise QueryValidationError(
                    f'Unknown attribute "{key}" in {where}; allowed: {", ".join(DATA_KEYS)}.'
                )
        if "fields" not in spec:
            raise QueryValidationError(f'{where} must have "fields", a non-empty list of field names.')
        fields = spec["fields"]
        if not isinstance(fields, list) or not fields:
            raise QueryValidationError(
                f"{where}.fields must be a non-empty list of field names, "
                f"got {json_kind(fields, empty=True)}."
            )
        for name in fields:
            if not isinstance(name, str):
                raise QueryValidationError(
                    f"{where}.fields must hold field names (strings), got {json_kind(name)}."
                )
            raw.names.append((event, name))
        group = None
        if "filters" in spec:
            group = _group_parse(event, spec["filters"], f"{where}.filters", raw)
        entries.append(_RawData(event=event, fields=fields, group=group))
    return entries


def _scope_parse(value: object, raw: _RawBody) -> list[_RawGroup]:
    if not isinstance(value, dict):
        raise QueryValidationError(
            f'"scope" must be an object with "filters" and "scope", got {json_kind(value)}.'
        )
    for key in value:
        if key not in SCOPE_KEYS:
            raise QueryValidationError(
                f'Unknown attribute "{key}" in scope; allowed: {", ".join(SCOPE_KEYS)}.'
            )
    if "filters" not in value or "scope" not in value:
        raise QueryValidationError('"scope" must have both "filters" and "scope".')
    key = value["scope"]
    if key != CORRELATION_KEY:
        shown = f'"{key}"' if isinstance(key, str) else json_kind(key)
        raise QueryValidationError(
            f'scope.scope must be "{CORRELATION_KEY}", the only correlation key, got {shown}.'
        )
    return _groups_parse(value["filters"], "scope.filters", raw)


def _groups_parse(value: object, where: str, raw: _RawBody) -> list[_RawGroup]:
    """event -> field -> {op: value}, as in the top-level `filters` and in `scope.filters`."""
    if not isinstance(value, dict):
        raise QueryValidationError(
            f'"{where}" must be an object of events, such as {{"CallEvent": {{"Ani": {{"$eq": "..."}}}}}}, '
            f"got {json_kind(value)}."
        )
    groups = []
    for event, fields in value.items():
        raw.names.append((event, None))
        groups.append(_group_parse(event, fields, f"{where}.{event}", raw))
    return groups


def _group_parse(event: str, value: object, where: str, raw: _RawBody) -> _RawGroup:
    """field -> {op: value} for one event; an empty object is allowed (no condition)."""
    if not isinstance(value, dict):
        raise QueryValidationError(
            f'{where} must be an object of fields, such as {{"FlowId": {{"$eq": "..."}}}}, '
            f"got {json_kind(value)}."
        )
    conditions = []
    for name, ops in value.items():
        raw.names.append((event, name))
        at = f"{where}.{name}"
        if not isinstance(ops, dict) or not ops:
            raise QueryValidationError(
                f"{at} must be a non-empty object of operators ({_OPERATOR_LIST}), such as "
                f'{{"$eq": ...}}, got {json_kind(ops, empty=True)}.'
            )
        for op, operand in ops.items():
            _operator_note(op, raw)
            conditions.append(_RawCondition(where=at, event=event, field=name, op=op, value=operand))
    return _RawGroup(event=event, conditions=conditions)


def _operator_note(op: str, raw: _RawBody) -> None:
    if op not in _OPERATORS:
        raw.bad_operators[str(op)] = None


# --- 3.-5. timestamp bounds, dates, window --------------------------------------------------------


_Bound = tuple[str, str]  # (operator, text as given)


def _bounds_check(timestamp: dict[str, object]) -> tuple[_Bound, _Bound]:
    for op in timestamp:
        if op not in LOWER_BOUNDS and op not in UPPER_BOUNDS:
            raise QueryValidationError(
                '"timestamp" takes one lower bound ($gte or $gt) and one upper bound ($lte or $lt), '
                f"not {op}."
            )
    return _bound_pick(timestamp, LOWER_BOUNDS, "lower"), _bound_pick(timestamp, UPPER_BOUNDS, "upper")


def _bound_pick(timestamp: dict[str, object], ops: tuple[str, str], kind: str) -> _Bound:
    present = [op for op in ops if op in timestamp]
    if not present:
        raise QueryValidationError(f'"timestamp" has no {kind} bound: add {ops[0]} or {ops[1]}.')
    if len(present) > 1:
        raise QueryValidationError(f'"timestamp" has two {kind} bounds ({ops[0]} and {ops[1]}): keep one.')
    op = present[0]
    text = timestamp[op]
    if not isinstance(text, str):
        raise QueryValidationError(
            f'timestamp {op} must be an ISO 8601 string such as "2019-11-25T00:00:00Z", '
            f"got {json_kind(text)}."
        )
    return op, text


def _dates_check(
    raw: _RawBody, lower: _Bound, upper: _Bound, cat: Catalog, limits: QueryLimits
) -> dict[str, Instant]:
    """Parse every date string once; raise the documented Date_Filters error listing all bad ones."""
    texts = _date_texts(raw, lower, upper, cat, limits)
    parsed = dict(zip(texts, instants_parse(texts), strict=True))
    bad = [text for text, instant in parsed.items() if instant is None]
    if bad:
        raise QueryValidationError(date_filters_message(bad))
    instants = {text: instant for text, instant in parsed.items() if instant is not None}
    for text, instant in instants.items():
        if not instant.exact:
            raise QueryValidationError(
                f"Date {text} is more precise than the warehouse's microsecond: "
                "give at most 6 fractional digits."
            )
    return instants


def _date_texts(raw: _RawBody, lower: _Bound, upper: _Bound, cat: Catalog, limits: QueryLimits) -> list[str]:
    """The bounds and the date strings of TIMESTAMP conditions, each once, in the order met."""
    texts = {lower[1]: None, upper[1]: None}
    for condition in raw.conditions():
        if _field_type(cat, condition.event, condition.field) is not ColumnType.TIMESTAMP:
            continue  # unknown names are reported later; other types take no dates
        if isinstance(condition.value, str):
            texts[condition.value] = None
        elif isinstance(condition.value, list) and len(condition.value) <= limits.max_in_values:
            for item in condition.value:  # a list over the limit is refused later, unparsed
                if isinstance(item, str):
                    texts[item] = None
    return list(texts)


def _window_build(
    lower: _Bound, upper: _Bound, instants: dict[str, Instant], max_window: timedelta
) -> Window:
    window = Window(
        start=instants[lower[1]].value,
        start_inclusive=lower[0] == "$gte",
        end=instants[upper[1]].value,
        end_inclusive=upper[0] == "$lte",
    )
    if window.start > window.end:
        raise QueryValidationError(f'"timestamp" lower bound {lower[1]} is after its upper bound {upper[1]}.')
    # Timestamps are stored to the microsecond, so an exclusive bound is the next microsecond inclusive: the
    # window is empty when it spans less than a microsecond per exclusive bound. Compared as a span, because
    # moving a bound itself overflows at the ends of the calendar (a $gt of 9999-12-31T23:59:59.999999Z).
    span = window.end - window.start
    exclusive_bounds = [window.start_inclusive, window.end_inclusive].count(False)
    if span < exclusive_bounds * MICROSECOND:
        raise QueryValidationError(
            f'"timestamp" window {lower[0]} {lower[1]}, {upper[0]} {upper[1]} is empty: '
            "no instant lies in it."
        )
    if span > max_window:
        raise QueryValidationError(
            f"Query range too wide: the timestamp window spans {_duration_text(span)}, "
            f"more than the {_duration_text(max_window)} allowed."
        )
    return window


def _duration_text(span: timedelta) -> str:
    if span == timedelta(days=span.days):
        return f"{span.days} day" if span.days == 1 else f"{span.days} days"
    return str(span)


# --- 6.-8. names ----------------------------------------------------------------------------------


def _field_type(cat: Catalog, event: str, name: str) -> ColumnType | None:
    spec = cat.events.get(event)
    found = spec.fields.get(name) if spec is not None else None
    return found.type if found is not None else None


def _events_resolve(raw: _RawBody, cat: Catalog) -> dict[str, Event]:
    events: dict[str, Event] = {}
    for event, _ in raw.names:
        if event not in events:
            spec = cat.events.get(event)
            if spec is None:
                raise QueryValidationError(f"{event} is not a valid schema name.")
            events[event] = spec
    return events


def _fields_check(raw: _RawBody, events: dict[str, Event]) -> None:
    for event, name in raw.names:
        if name is not None and name not in events[event].fields:
            raise QueryValidationError(f"{name} is not a valid field.")
    for entry in raw.data:
        seen: set[str] = set()
        for name in entry.fields:
            if name in seen:
                raise QueryValidationError(f"data.{entry.event}.fields names {name} more than once.")
            seen.add(name)


def _filters_events_check(raw: _RawBody) -> None:
    requested = {entry.event for entry in raw.data}
    for group in raw.filters:
        if group.event not in requested:
            raise QueryValidationError(
                f"filters names {group.event}, which is not in data: filters narrow the requested events "
                f"(use scope.filters to select sessions by another event)."
            )


# --- 9. values ------------------------------------------------------------------------------------


def _values_type(
    raw: _RawBody, events: dict[str, Event], instants: dict[str, Instant], limits: QueryLimits
) -> None:
    for condition in raw.conditions():
        spec = events[condition.event].fields[condition.field]
        condition.typed = _condition_value(condition, spec, instants, limits)


def _condition_value(
    condition: _RawCondition, spec: Field, instants: dict[str, Instant], limits: QueryLimits
) -> Value:
    where = f"{condition.where} {condition.op}"
    value = condition.value
    if not _OPERATORS[condition.op].takes_list:
        if isinstance(value, list):
            raise QueryValidationError(
                f"{where}: expected {_EXPECTED[spec.type]}, got an array (only $in and $nin take one)."
            )
        return _scalar_value(value, spec.type, where, instants, limits)
    if not isinstance(value, list) or not value:
        raise QueryValidationError(
            f"{where}: expected a non-empty array of {_EXPECTED_PLURAL[spec.type]}, "
            f"got {json_kind(value, empty=True)}."
        )
    if len(value) > limits.max_in_values:
        raise QueryValidationError(
            f"{where}: the list has {len(value)} values, more than the {limits.max_in_values} allowed."
        )
    items = (
        _scalar_value(item, spec.type, f"{where} item {i}", instants, limits) for i, item in enumerate(value)
    )
    return tuple(dict.fromkeys(items))  # duplicates removed, first occurrence order kept


_EXPECTED = {
    ColumnType.STRING: "a string",
    ColumnType.INTEGER: "an integer",
    ColumnType.FLOAT: "a number",
    ColumnType.BOOLEAN: "true or false",
    ColumnType.TIMESTAMP: "an ISO 8601 date-time string",
}
_EXPECTED_PLURAL = {
    ColumnType.STRING: "strings",
    ColumnType.INTEGER: "integers",
    ColumnType.FLOAT: "numbers",
    ColumnType.BOOLEAN: "booleans",
    ColumnType.TIMESTAMP: "ISO 8601 date-time strings",
}


def _scalar_value(
    value: object, kind: ColumnType, where: str, instants: dict[str, Instant], limits: QueryLimits
) -> Scalar:
    if kind is ColumnType.STRING and isinstance(value, str):
        if "\x00" in value:
            raise QueryValidationError(
                f"{where}: the string contains a NUL character (\\u0000), which is not allowed."
            )
        if not value.isascii() and not _is_utf8(value):
            raise QueryValidationError(
                f"{where}: the string holds a lone surrogate: it is not valid Unicode."
            )
        if len(value) > limits.max_string_length:
            raise QueryValidationError(
                f"{where}: the string has {len(value)} characters, "
                f"more than the {limits.max_string_length} allowed."
            )
        return value
    if kind is ColumnType.INTEGER and isinstance(value, int) and not isinstance(value, bool):
        if not INT64_MIN <= value <= INT64_MAX:
            raise QueryValidationError(f"{where}: the integer is outside the 64-bit range.")
        return value
    if kind is ColumnType.FLOAT and isinstance(value, int | float) and not isinstance(value, bool):
        return _float_value(value, where)
    if kind is ColumnType.BOOLEAN and isinstance(value, bool):
        return value
    if kind is ColumnType.TIMESTAMP and isinstance(value, str):
        return instants[value].value  # every such string was parsed by _dates_check
    raise QueryValidationError(f"{where}: expected {_EXPECTED[kind]}, got {json_kind(value)}.")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _float_value(value: int | float, where: str) -> float:
    # Always a float (the column is float64), so 1 and 1.0 are one value, in $in lists and fingerprints alike.
    try:
        number = float(value)
    except OverflowError:
        raise QueryValidationError(
            f"{where}: the number is outside the 64-bit floating-point range."
        ) from None
    if not math.isfinite(number):
        raise QueryValidationError(f"{where}: expected a finite number, got {number}.")
    return number + 0.0  # -0.0 becomes 0.0: they are equal in SQL, so they must not differ in the fingerprint


# --- 10. limits, and the result -------------------------------------------------------------------


def _limits_check(raw: _RawBody, limits: QueryLimits) -> None:
    counts = (
        ("events", len(raw.data), limits.max_events),
        ("requested fields", sum(len(entry.fields) for entry in raw.data), limits.max_fields),
        ("conditions", sum(1 for _ in raw.conditions()), limits.max_conditions),
    )
    for what, count, limit in counts:
        if count > limit:
            raise QueryValidationError(f"The query has {count} {what}, more than the {limit} allowed.")


def _query_build(raw: _RawBody, window: Window, events: dict[str, Event], cat: Catalog) -> Query:
    top_filters = {group.event: group for group in raw.filters}
    queries = []
    for entry in raw.data:
        spec = events[entry.event]
        groups = [entry.group, top_filters.get(entry.event)]
        conditions = [_condition(c, spec) for group in groups if group is not None for c in group.conditions]
        queries.append(
            EventQuery(
                event=spec,
                fields=tuple(spec.fields[name] for name in entry.fields),
                conditions=tuple(dict.fromkeys(conditions)),  # both layouts may repeat a condition
            )
        )
    scope = None
    if raw.scope is not None:
        scope = Scope(
            key=cat.field(CORRELATION_KEY),
            filters=tuple(
                ScopeFilter(
                    event=events[group.event],
                    conditions=tuple(
                        dict.fromkeys(_condition(c, events[group.event]) for c in group.conditions)
                    ),
                )
                for group in raw.scope
            ),
        )
    return Query(window=window, events=tuple(queries), scope=scope, columns=_columns(queries))


def _condition(raw: _RawCondition, spec: Event) -> Condition:
    if raw.typed is None:  # unreachable: the values step types every condition before the build
        raise AssertionError(f"{raw.where} {raw.op} was not typed")
    return Condition(field=spec.fields[raw.field], op=_OPERATORS[raw.op], value=raw.typed)


def _columns(queries: list[EventQuery]) -> tuple[Field, ...]:
    """Requested fields in request order, first occurrence wins; EventName first when several events mix."""
    columns: dict[str, Field] = {}
    for query in queries:
        for spec in query.fields:
            columns.setdefault(spec.name, spec)
    if len(queries) > 1 and "EventName" not in columns:
        return (queries[0].event.fields["EventName"], *columns.values())
    return tuple(columns.values())
