"""The event catalog (the data dictionary), loaded from catalog.json.

Validation, compilation, the data-dictionary endpoint and the demo generator all read it from here, so adding a
field is a one-line change to the JSON file.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exports.schema import Column, ColumnType

CATALOG_PATH = Path(__file__).with_name("catalog.json")


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: ColumnType
    display_name: str
    description: str
    common: bool

    @property
    def column(self) -> Column:
        return Column(self.name, self.type)


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    description: str
    fields: dict[str, Field]  # common fields first, then the event's own, in catalog order
    own_fields: tuple[Field, ...]


@dataclass(frozen=True, slots=True)
class Catalog:
    events: dict[str, Event]
    common: tuple[Field, ...]

    def warehouse_columns(self) -> tuple[Column, ...]:
        """Every distinct field of every event, once: the columns of the warehouse's one wide events table."""
        seen: dict[str, Column] = {}
        for field in self.common:
            seen[field.name] = field.column
        for event in self.events.values():
            for field in event.own_fields:
                seen.setdefault(field.name, field.column)
        return tuple(seen.values())

    def field(self, name: str) -> Field:
        """A common field, or the first event field of that name (all share one type, checked at load)."""
        for event in self.events.values():
            if name in event.fields:
                return event.fields[name]
        raise KeyError(name)


def _field(raw: dict[str, Any], *, common: bool) -> Field:
    return Field(
        name=raw["name"],
        type=ColumnType(raw["type"]),
        display_name=raw["display_name"],
        description=raw["description"],
        common=common,
    )


def catalog_parse(raw: dict[str, Any]) -> Catalog:
    """Build a Catalog from its JSON form, refusing duplicate names and one name with two types."""
    common = tuple(_field(f, common=True) for f in raw["common"])
    types: dict[str, ColumnType] = {f.name: f.type for f in common}
    events: dict[str, Event] = {}
    for name, spec in raw["events"].items():
        own = tuple(_field(f, common=False) for f in spec["fields"])
        fields = {f.name: f for f in common}
        for field in own:
            if field.name in fields:
                raise ValueError(f"{name}.{field.name} is defined twice")
            if types.setdefault(field.name, field.type) is not field.type:
                raise ValueError(f"{name}.{field.name} has type {field.type}, elsewhere {types[field.name]}")
            Column(field.name, field.type)  # checks the name is a safe identifier
            fields[field.name] = field
        events[name] = Event(name=name, description=spec["description"], fields=fields, own_fields=own)
    return Catalog(events=events, common=common)


@functools.cache
def catalog() -> Catalog:
    """The catalog, read once per process."""
    with CATALOG_PATH.open(encoding="utf-8") as handle:
        return catalog_parse(json.load(handle))
