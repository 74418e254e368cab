"""The normalised query: what validation produces and compilation consumes.

Values are already typed by their field (str, int, float, bool, naive-UTC datetime); `$in`/`$nin` values are
tuples. The canonical form, and so the fingerprint, ignores key order, `$in` order and timestamp spelling.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from queries.catalog import Event, Field

Scalar = str | int | float | bool | datetime
Value = Scalar | tuple[Scalar, ...]


class Op(enum.StrEnum):
    EQ = "$eq"
    NE = "$ne"
    GT = "$gt"
    GTE = "$gte"
    LT = "$lt"
    LTE = "$lte"
    IN = "$in"
    NIN = "$nin"

    @property
    def takes_list(self) -> bool:
        return self in (Op.IN, Op.NIN)


@dataclass(frozen=True, slots=True)
class Condition:
    field: Field
    op: Op
    value: Value


@dataclass(frozen=True, slots=True)
class EventQuery:
    """One event of `data`: the fields it contributes and the conditions its records must all meet."""

    event: Event
    fields: tuple[Field, ...]
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class ScopeFilter:
    """Sessions qualify if they hold a record of `event` in the window meeting every condition."""

    event: Event
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Scope:
    key: Field  # the correlation key (SessionId)
    filters: tuple[ScopeFilter, ...]  # empty: any record of any event in the window qualifies its session


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime  # naive UTC
    start_inclusive: bool
    end: datetime  # naive UTC
    end_inclusive: bool


@dataclass(frozen=True, slots=True)
class Query:
    window: Window
    events: tuple[EventQuery, ...]  # in request order
    scope: Scope | None
    columns: tuple[Field, ...]  # output columns, in order (docs/DESIGN.md §3)

    def canonical(self) -> dict[str, Any]:
        return {
            "timestamp": {
                ("$gte" if self.window.start_inclusive else "$gt"): _canonical_value(self.window.start),
                ("$lte" if self.window.end_inclusive else "$lt"): _canonical_value(self.window.end),
            },
            "data": {
                e.event.name: {
                    "fields": sorted(f.name for f in e.fields),
                    "filters": _canonical_conditions(e.conditions),
                }
                for e in sorted(self.events, key=lambda e: e.event.name)
            },
            "scope": None
            if self.scope is None
            else {
                "scope": self.scope.key.name,
                "filters": {
                    s.event.name: _canonical_conditions(s.conditions)
                    for s in sorted(self.scope.filters, key=lambda s: s.event.name)
                },
            },
            "columns": [f.name for f in self.columns],
        }

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical form: equal for queries that always return the same file."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode("ascii")).hexdigest()


def _canonical_value(value: Value) -> Any:
    if isinstance(value, tuple):
        items = {json.dumps(_canonical_value(v), sort_keys=True): _canonical_value(v) for v in value}
        return [items[k] for k in sorted(items)]
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, float):
        return value + 0.0  # -0.0 and 0.0 are one value; the field's type, not the spelling, decides 5 vs 5.0
    return value


def _canonical_conditions(conditions: tuple[Condition, ...]) -> list[list[Any]]:
    """Sorted, de-duplicated [field, op, value] triples: two values for one (field, op) both count."""
    triples = {
        json.dumps([c.field.name, c.op.value, _canonical_value(c.value)], sort_keys=True): [
            c.field.name,
            c.op.value,
            _canonical_value(c.value),
        ]
        for c in conditions
    }
    return [triples[k] for k in sorted(triples)]
