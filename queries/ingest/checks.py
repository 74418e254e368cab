"""A file as read, checked whole against the catalog: the warehouse's table, or a `LoadError` naming its first
problem.

Every column is converted to its field's type (`conversion`); then every row must have the required fields,
a known event, and no value in a field of another event. The problem reported is the one on the earliest line
(the leftmost field on a tie), with a count of all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from queries.catalog import Catalog
from queries.ingest.conversion import Unsupported, columns_convert
from queries.ingest.problems import LoadError, Problem
from queries.ingest.raw import RawFile
from queries.ingest.warehouse import warehouse_schema

REQUIRED_FIELDS = ("EventName", "TimeStamp", "CustomerId")


@dataclass(frozen=True, slots=True)
class _RowProblem:
    row: int
    order: int  # column position: ties on one row go to the leftmost field
    field: str | None
    message: str
    count: int


def raw_check(raw: RawFile, *, source: str, events_catalog: Catalog) -> pa.Table:
    """The file as a table with exactly `warehouse_schema()`; raises LoadError if anything in it is wrong."""
    schema = warehouse_schema(events_catalog)
    types = {column.name: column.type for column in events_catalog.warehouse_columns()}
    for name in raw.columns:
        if name not in types:
            where = raw.header_line(name)
            raise LoadError(source, Problem(where, name, "not a field of any event in the catalog"))
    typed: dict[str, pa.ChunkedArray] = {}
    present: dict[str, pa.ChunkedArray] = {}
    found: list[_RowProblem] = []
    for order, (name, conversion) in enumerate(zip(types, columns_convert(raw, types), strict=True)):
        if isinstance(conversion, Unsupported):
            raise LoadError(source, Problem(raw.header_line(name), name, str(conversion)))
        typed[name], present[name] = conversion.values, conversion.present
        found.extend(_RowProblem(row, order, name, message, count) for row, message, count in conversion.bad)
    owned = _owned_masks(typed["EventName"], events_catalog)
    found.extend(_rows_check(typed, present, owned, events_catalog, list(types)))
    if found or raw.problems:
        _raise_first(raw, found, source)
    typed = _foreign_fields_clear(typed, owned)
    return pa.table([typed[f.name] for f in schema], schema=schema)


def _raise_first(raw: RawFile, found: list[_RowProblem], source: str) -> None:
    candidates = list(raw.problems[:1])
    if found:
        first = min(found, key=lambda p: (p.row, p.order))
        candidates.append(Problem(raw.line_of_row(first.row), first.field, first.message))
    count = raw.problem_count + sum(p.count for p in found)
    raise LoadError(source, min(candidates, key=lambda p: p.line or 0), count=count)


def _owned_masks(names: pa.ChunkedArray, events_catalog: Catalog) -> dict[str, pa.ChunkedArray]:
    """Event-specific field -> rows whose event has it (StartTime belongs to more than one event)."""
    is_event = {event: pc.fill_null(pc.equal(names, event), False) for event in events_catalog.events}
    owned: dict[str, pa.ChunkedArray] = {}
    for event in events_catalog.events.values():
        for own in event.own_fields:
            mask = is_event[event.name]
            owned[own.name] = pc.or_(owned[own.name], mask) if own.name in owned else mask
    return owned


def _rows_check(
    typed: dict[str, pa.ChunkedArray],
    present: dict[str, pa.ChunkedArray],
    owned: dict[str, pa.ChunkedArray],
    events_catalog: Catalog,
    order: list[str],
) -> Iterator[_RowProblem]:
    names = typed["EventName"]
    for required in REQUIRED_FIELDS:
        missing = pc.invert(present[required])
        yield from _first(missing, order.index(required), required, lambda _row: "required, but empty")
    known_event = pc.fill_null(pc.is_in(names, value_set=pa.array(list(events_catalog.events))), False)
    unknown = pc.and_(present["EventName"], pc.invert(known_event))
    yield from _first(
        unknown, order.index("EventName"), "EventName", lambda row: f"unknown event {names[row].as_py()!r}"
    )
    for name, mask in owned.items():
        foreign = pc.and_(pc.and_(present[name], known_event), pc.invert(mask))
        yield from _first(
            foreign,
            order.index(name),
            name,
            lambda row: f"not a field of {names[row].as_py()}, must be empty",
        )


def _foreign_fields_clear(
    typed: dict[str, pa.ChunkedArray], owned: dict[str, pa.ChunkedArray]
) -> dict[str, pa.ChunkedArray]:
    """NULL in fields of other events (only empty strings can be there once the checks pass)."""
    cleared = dict(typed)
    for name, mask in owned.items():
        if pc.any(pc.and_(pc.is_valid(typed[name]), pc.invert(mask))).as_py():
            cleared[name] = pc.if_else(mask, typed[name], pa.scalar(None, typed[name].type))
    return cleared


def _first(
    mask: pa.ChunkedArray, order: int, name: str, message: Callable[[int], str]
) -> Iterator[_RowProblem]:
    """The first row where `mask` holds, as a problem counting every row where it does."""
    mask = pc.fill_null(mask, False)
    row = pc.index(mask, True).as_py()
    if row is not None and row >= 0:
        yield _RowProblem(row, order, name, message(row), pc.sum(mask).as_py())
