"""The run plan: everything a worker needs to run a query, decided once at POST and stored with it.

A plan is the compiled `Statement` (SQL, typed parameters, output columns in order and then the hidden summary
columns (exports.summary; plans from before summaries have none), the unordered variant),
its dialect and the normalised query, written as JSON text made only of lists and scalars in order. A worker
executes the plan as stored: it never validates or compiles the body again, so nothing it runs can depend on
how a database keeps an object's keys (PostgreSQL's `jsonb` reorders them) or on a catalog that changed since.

Parameters are tagged with their type (`["t", "2019-11-25T00:00:00.000000"]`), so a float stays a float and
a timestamp a timestamp whatever a JSON store does to numbers; the text is ASCII-only JSON, which any text
column holds (PostgreSQL's `jsonb` cannot hold `\\u0000`, which a customer's string may contain).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from exports.engines.base import Statement, Unordered
from exports.schema import Column, ColumnType
from exports.summary import output_columns
from queries.spec import Query

PLAN_VERSION = 1


class PlanError(ValueError):
    """A stored plan this code cannot run (written by another version, or damaged)."""


@dataclass(frozen=True, slots=True)
class SlicePlan:
    """How a big export is cut by TimeStamp (queries.slicing): `statement` is the export's statement with a
    slice's bounds at the end of its WHERE, whose `bounds` values it does not hold (each slice appends its
    own); `timestamps` selects the TimeStamp of every row the export returns, to count and cut them."""

    statement: Statement
    bounds: int
    timestamps: Statement


def plan_build(
    query_spec: Query,
    statement: Statement,
    *,
    output: dict[str, str] | None = None,
    titles: list[str] | None = None,
    slices: SlicePlan | None = None,
) -> str:
    """The plan of a validated query and its compiled statement, as JSON text; `output` (the export's output
    options) and `titles` (the columns' names in the files: names or display names) default to the
    original service's CSV with the columns' names; `slices`: how the export may be cut (plans without it
    are exported by one worker)."""
    plan: dict[str, Any] = {
        "version": PLAN_VERSION,
        **_statement_encode(statement),
        "query": query_spec.canonical(),
        "output": output or {},
        "titles": titles or [c.name for c in output_columns(statement.columns)],
    }
    if slices is not None:
        plan["slices"] = {
            "statement": _statement_encode(slices.statement),
            "bounds": slices.bounds,
            "timestamps": _statement_encode(slices.timestamps),
        }
    return json.dumps(plan, ensure_ascii=True, separators=(",", ":"))


def plan_statement(text: str) -> Statement:
    """The statement a stored plan runs; PlanError when the plan cannot be read."""
    return _statement_decode(_plan_read(text))


def plan_slices(text: str) -> SlicePlan | None:
    """How the stored plan's export may be cut into slices; None for a plan without (exported whole)."""
    slices = _plan_read(text).get("slices")
    if slices is None:
        return None
    try:
        return SlicePlan(
            statement=_statement_decode(slices["statement"]),
            bounds=int(slices["bounds"]),
            timestamps=_statement_decode(slices["timestamps"]),
        )
    except (ValueError, TypeError, KeyError) as error:
        raise PlanError(f"unreadable plan: {error}") from None


def _plan_read(text: str) -> dict[str, Any]:
    try:
        plan = json.loads(text)
    except ValueError as error:
        raise PlanError(f"unreadable plan: {error}") from None
    if not isinstance(plan, dict) or plan.get("version") != PLAN_VERSION:
        raise PlanError(f"unknown plan version {getattr(plan, 'get', lambda _: None)('version')!r}")
    return plan


def _statement_encode(statement: Statement) -> dict[str, Any]:
    return {
        "dialect": statement.dialect,
        "sql": statement.sql,
        "params": [_param_encode(p) for p in statement.params],
        "columns": [[c.name, c.type.value] for c in statement.columns],
        "unordered": None
        if statement.unordered is None
        else [
            statement.unordered.sql,
            statement.unordered.keys_sql,
            [_param_encode(p) for p in statement.unordered.keys_params],
        ],
    }


def _statement_decode(encoded: dict[str, Any]) -> Statement:
    try:
        unordered = encoded["unordered"]
        return Statement(
            sql=encoded["sql"],
            params=tuple(_param_decode(p) for p in encoded["params"]),
            columns=tuple(Column(name, ColumnType(kind)) for name, kind in encoded["columns"]),
            dialect=encoded["dialect"],
            unordered=None
            if unordered is None
            else Unordered(
                sql=unordered[0],
                keys_sql=unordered[1],
                keys_params=tuple(_param_decode(p) for p in unordered[2]),
            ),
        )
    except PlanError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise PlanError(f"unreadable plan: {error}") from None


def plan_output(text: str) -> tuple[dict[str, str], list[str]]:
    """The output options and the column titles of a stored plan (plans from before they existed: the
    defaults, and the columns' names)."""
    try:
        plan = json.loads(text)
        titles = plan.get("titles") or [name for name, _ in plan["columns"]]
        return dict(plan.get("output") or {}), [str(title) for title in titles]
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise PlanError(f"unreadable plan: {error}") from None


def plan_columns(text: str) -> list[str]:
    """The output column names of a stored plan, in order (for display; not the hidden summary columns)."""
    return [column.name for column in output_columns(plan_statement(text).columns)]


def _param_encode(value: object) -> list[Any]:
    # bool before int: bool is an int subclass.
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", str(value)]
    if isinstance(value, float):
        return ["f", repr(value)]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError("plan timestamps are naive UTC")
        return ["t", value.isoformat(timespec="microseconds")]  # a four-digit year, unlike strftime's %Y
    if isinstance(value, date):  # a day partition's bound (after datetime: a datetime is a date)
        return ["d", value.isoformat()]
    raise TypeError(f"a plan cannot hold a parameter of type {type(value).__name__}")


def _param_decode(tagged: list[Any]) -> object:
    kind, value = tagged
    if kind == "b" and isinstance(value, bool):
        return value
    if kind == "i":
        return int(value)
    if kind == "f":
        return float(value)
    if kind == "s" and isinstance(value, str):
        return value
    if kind == "t":
        return datetime.fromisoformat(value)
    if kind == "d":
        return date.fromisoformat(value)
    raise PlanError(f"unknown parameter {tagged!r}")
