"""Query.fingerprint over validated bodies: equal for re-spellings of one query (key order, `$in` order and
repeats, timestamp zones and fractions, which filter layout holds a condition, 5 vs 5.0 for a FLOAT),
different when a value, a bound, a field or the scope changes."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exports.schema import ColumnType
from queries.catalog import catalog
from queries.spec import Op
from queries.validation import query_validate

CATALOG = catalog()
EVENTS = sorted(CATALOG.events)
INT64 = 2**63

Cond = tuple[str, str, Any]  # field, operator, value (a list for $in / $nin)


@dataclass(frozen=True)
class Model:
    """What a body means, independent of how it is spelled."""

    start: datetime
    end: datetime
    start_inclusive: bool
    end_inclusive: bool
    events: tuple[tuple[str, tuple[str, ...], tuple[Cond, ...]], ...]  # event, fields, conditions
    scope: tuple[tuple[str, tuple[Cond, ...]], ...] | None


# --- generating models --------------------------------------------------------------------------------------

_SCALARS = {
    ColumnType.STRING: st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8),
    ColumnType.INTEGER: st.integers(-INT64, INT64 - 1),
    ColumnType.FLOAT: st.floats(allow_nan=False, allow_infinity=False),
    ColumnType.BOOLEAN: st.booleans(),
    ColumnType.TIMESTAMP: st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)),
}


def _value(kind: ColumnType, op: str) -> st.SearchStrategy[Any]:
    if Op(op).takes_list:
        return st.lists(_SCALARS[kind], min_size=1, max_size=4, unique=True)
    return _SCALARS[kind]


@st.composite
def _conditions(draw: st.DrawFn, event: str) -> tuple[Cond, ...]:
    fields = CATALOG.events[event].fields
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(sorted(fields)), st.sampled_from(list(Op))), max_size=4, unique=True
        )
    )
    return tuple((name, op.value, draw(_value(fields[name].type, op.value))) for name, op in pairs)


@st.composite
def models(draw: st.DrawFn) -> Model:
    start = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)))
    span = draw(st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=31)))
    events = []
    for event in draw(st.lists(st.sampled_from(EVENTS), min_size=1, max_size=3, unique=True)):
        fields = draw(
            st.lists(
                st.sampled_from(sorted(CATALOG.events[event].fields)), min_size=1, max_size=5, unique=True
            )
        )
        events.append((event, tuple(fields), draw(_conditions(event))))
    scope = None
    if draw(st.booleans()):
        scope = tuple(
            (e, draw(_conditions(e)))
            for e in draw(st.lists(st.sampled_from(EVENTS), max_size=2, unique=True))
        )
    return Model(
        start=start,
        end=start + span,
        start_inclusive=draw(st.booleans()),
        end_inclusive=draw(st.booleans()),
        events=tuple(events),
        scope=scope,
    )


# --- spelling a model as a body -----------------------------------------------------------------------------


class Plain:
    """The obvious spelling: Z timestamps, given orders, every condition in the top-level `filters`."""

    def shuffled(self, items: dict[str, Any]) -> dict[str, Any]:
        return items

    def timestamp(self, value: datetime) -> str:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def scalar(self, value: Any) -> Any:
        return self.timestamp(value) if isinstance(value, datetime) else value

    def listed(self, values: list[Any]) -> list[Any]:
        return [self.scalar(v) for v in values]

    def layout(self) -> str:
        return "top"


class Varied(Plain):
    """A random re-spelling of the same query."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def shuffled(self, items: dict[str, Any]) -> dict[str, Any]:
        return {key: items[key] for key in self.draw(st.permutations(list(items)))}

    def timestamp(self, value: datetime) -> str:
        minutes = self.draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
        local = value + timedelta(minutes=minutes)
        if minutes == 0:
            zone = self.draw(st.sampled_from(["Z", "+00:00", "-00:00"]))
        else:
            sign = "+" if minutes > 0 else "-"
            zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        digits = f"{value.microsecond:06d}"
        if value.microsecond:
            fractions = ["." + digits.rstrip("0"), "." + digits, "." + digits + "000"]
        else:
            fractions = ["", ".0", ".000", ".000000000"]
        return local.strftime("%Y-%m-%dT%H:%M:%S") + self.draw(st.sampled_from(fractions)) + zone

    def scalar(self, value: Any) -> Any:
        if (
            isinstance(value, float)
            and value.is_integer()
            and abs(value) < 2**53
            and self.draw(st.booleans())
        ):
            return int(value)  # 5 for 5.0: the field's type decides
        return super().scalar(value)

    def listed(self, values: list[Any]) -> list[Any]:
        items = [*values, *self.draw(st.lists(st.sampled_from(values), max_size=2))]  # repeats
        return [self.scalar(v) for v in self.draw(st.permutations(items))]

    def layout(self) -> str:
        return self.draw(st.sampled_from(["top", "data", "both"]))


def _ops(spelling: Plain, conditions: list[Cond]) -> dict[str, dict[str, Any]]:
    fields: dict[str, dict[str, Any]] = {}
    for name, op, value in conditions:
        fields.setdefault(name, {})[op] = (
            spelling.listed(value) if isinstance(value, list) else spelling.scalar(value)
        )
    return spelling.shuffled({name: spelling.shuffled(ops) for name, ops in fields.items()})


def body_of(model: Model, spelling: Plain) -> dict[str, Any]:
    lower = "$gte" if model.start_inclusive else "$gt"
    upper = "$lte" if model.end_inclusive else "$lt"
    data: dict[str, Any] = {}
    filters: dict[str, Any] = {}
    for event, fields, conditions in model.events:
        inner: list[Cond] = []
        top: list[Cond] = []
        for condition in conditions:
            layout = spelling.layout()
            if layout in ("data", "both"):
                inner.append(condition)
            if layout in ("top", "both"):
                top.append(condition)
        data[event] = spelling.shuffled(
            {"fields": list(fields), **({"filters": _ops(spelling, inner)} if inner else {})}
        )
        if top:
            filters[event] = _ops(spelling, top)
    body: dict[str, Any] = {
        "timestamp": spelling.shuffled(
            {lower: spelling.timestamp(model.start), upper: spelling.timestamp(model.end)}
        ),
        "data": data,  # event order is meaningful: it orders the columns
    }
    if filters:
        body["filters"] = spelling.shuffled(filters)
    if model.scope is not None:
        scope_filters = spelling.shuffled(
            {event: _ops(spelling, list(conds)) for event, conds in model.scope}
        )
        body["scope"] = spelling.shuffled({"scope": "SessionId", "filters": scope_filters})
    return spelling.shuffled(body)


def fingerprint(body: dict[str, Any]) -> str:
    return query_validate(body).fingerprint


# --- properties ---------------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(models(), st.data())
def test_respelling_a_query_keeps_its_fingerprint(model, data):
    plain = body_of(model, Plain())
    respelled = body_of(model, Varied(data.draw))
    assert fingerprint(respelled) == fingerprint(plain)


def _different(value: Any, kind: ColumnType) -> Any:
    """A value of the same type that differs from `value` (and stays valid)."""
    if kind is ColumnType.STRING:
        return value + "x"
    if kind is ColumnType.INTEGER:
        return value - 1 if value > 0 else value + 1
    if kind is ColumnType.FLOAT:
        return math.nextafter(value, -math.inf if value > 0 else math.inf)
    if kind is ColumnType.BOOLEAN:
        return not value
    return value + timedelta(microseconds=-1 if value.year > 2000 else 1)


def _value_changed(value: Any, kind: ColumnType) -> Any:
    if not isinstance(value, list):
        return _different(value, kind)
    new = _different(value[0], kind)
    if new not in value:
        return [*value, new]
    return value[1:]  # new is another item of a list of two or more


def _mutations(model: Model) -> list[tuple[str, Model]]:
    out = [
        ("start+1us", replace(model, start=model.start + timedelta(microseconds=1))),
        ("end-1us", replace(model, end=model.end - timedelta(microseconds=1))),
        ("start-inclusive", replace(model, start_inclusive=not model.start_inclusive)),
        ("end-inclusive", replace(model, end_inclusive=not model.end_inclusive)),
        ("scope", replace(model, scope=None if model.scope is not None else ())),
    ]
    events = list(model.events)
    for i, (event, fields, conditions) in enumerate(events):
        spare = [name for name in CATALOG.events[event].fields if name not in fields]
        if spare:
            bigger = (event, (*fields, spare[0]), conditions)
            out.append((f"field+{event}", replace(model, events=_replaced(events, i, bigger))))
        for j, (name, op, value) in enumerate(conditions):
            kind = CATALOG.events[event].fields[name].type
            changed = (*conditions[:j], (name, op, _value_changed(value, kind)), *conditions[j + 1 :])
            changed_entry = (event, fields, changed)
            out.append(
                (f"value-{event}.{name}{op}", replace(model, events=_replaced(events, i, changed_entry)))
            )
            dropped = conditions[:j] + conditions[j + 1 :]
            dropped_entry = (event, fields, dropped)
            out.append(
                (f"drop-{event}.{name}{op}", replace(model, events=_replaced(events, i, dropped_entry)))
            )
    return out


def _replaced(events: list[Any], i: int, entry: Any) -> tuple[Any, ...]:
    return tuple([*events[:i], entry, *events[i + 1 :]])


@settings(max_examples=200)
@given(models(), st.data())
def test_changing_a_query_changes_its_fingerprint(model, data):
    original = fingerprint(body_of(model, Plain()))
    name, mutated = data.draw(st.sampled_from(_mutations(model)), label="mutation")
    assert fingerprint(body_of(mutated, Varied(data.draw))) != original, name


# --- examples -----------------------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["FlowId", "Duration"]}},
}


def with_(**parts: Any) -> dict[str, Any]:
    return {**BASE, **parts}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            with_(timestamp={"$gte": "2019-11-25T01:00:00+01:00", "$lte": "2019-11-25T19:00:00.000-05:00"}),
            with_(timestamp={"$lte": "2019-11-26T00:00:00Z", "$gte": "2019-11-25T00:00:00.000000Z"}),
        ),
        (
            with_(filters={"CallEvent": {"Ani": {"$in": ["1", "2"]}, "Dnis": {"$ne": "3"}}}),
            with_(filters={"CallEvent": {"Dnis": {"$ne": "3"}, "Ani": {"$in": ["2", "1", "2"]}}}),
        ),
        (
            with_(filters={"CallEvent": {"Duration": {"$gte": 5, "$in": [1, 0]}}}),
            with_(filters={"CallEvent": {"Duration": {"$in": [0.0, -0.0, 1.0], "$gte": 5.0}}}),
        ),
        (
            with_(filters={"CallEvent": {"Ani": {"$eq": "1"}}}),
            with_(data={"CallEvent": {"filters": {"Ani": {"$eq": "1"}}, "fields": ["FlowId", "Duration"]}}),
        ),
    ],
    ids=["timestamp-spelling", "key-and-in-order", "float-spelling", "filter-layout"],
)
def test_same_query_same_fingerprint(a, b):
    assert fingerprint(a) == fingerprint(b)


@pytest.mark.parametrize(
    "b",
    [
        with_(timestamp={"$gt": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"}),
        with_(data={"CallEvent": {"fields": ["Duration", "FlowId"]}}),
        with_(data={"CallEvent": {"fields": ["FlowId", "Duration"]}, "MsgEvent": {"fields": ["FlowId"]}}),
        with_(filters={"CallEvent": {"Duration": {"$gte": 5.5}}}),
        with_(scope={"scope": "SessionId", "filters": {}}),
        with_(scope={"scope": "SessionId", "filters": {"DtmfEvent": {}}}),
    ],
    ids=["exclusive-bound", "column-order", "another-event", "a-filter", "empty-scope", "scope-event"],
)
def test_different_query_different_fingerprint(b):
    assert fingerprint(b) != fingerprint(BASE)


def test_fingerprint_is_sha256_hex():
    value = fingerprint(BASE)
    assert len(value) == 64 and int(value, 16) >= 0


def test_one_operator_twice_on_a_field_is_not_the_same_as_once():
    both = with_(
        data={"CallEvent": {"fields": ["FlowId", "Duration"], "filters": {"Ani": {"$eq": "a"}}}},
        filters={"CallEvent": {"Ani": {"$eq": "b"}}},
    )
    once = with_(filters={"CallEvent": {"Ani": {"$eq": "b"}}})
    assert len(query_validate(both).events[0].conditions) == 2
    assert fingerprint(both) != fingerprint(once)
