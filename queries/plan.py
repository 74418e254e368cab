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
from datetime import datetime
from typing import Any

from exports.engines.base import Statement, Unordered
from exports.schema import Column, ColumnType
from exports.summary import output_columns
from queries.spec import Query

PLAN_VERSION = 1


class PlanError(ValueError):
    """A stored plan this code cannot run (written by another version, or damaged)."""


def plan_build(
    query_spec: Query,
    statement: Statement,
    *,
    output: dict[str, str] | None = None,
    titles: list[str] | None = None,
) -> str:
    """The plan of a validated query and its compiled statement, as JSON text; `output` (the export's output
    options) and `titles` (the columns' names in the files: names or display names) default to the
    original service's CSV with the columns' names."""
    plan: dict[str, Any] = {
        "version": PLAN_VERSION,
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
        "query": query_spec.canonical(),
        "output": output or {},
        "titles": titles or [c.name for c in output_columns(statement.columns)],
    }
    return json.dumps(plan, ensure_ascii=True, separators=(",", ":"))


def plan_statement(text: str) -> Statement:
    """The statement a stored plan runs; PlanError when the plan cannot be read."""
    try:
        plan = json.loads(text)
        if plan.get("version") != PLAN_VERSION:
            raise PlanError(f"unknown plan version {plan.get('version')!r}")
        unordered = plan["unordered"]
        return Statement(
            sql=plan["sql"],
            params=tuple(_param_decode(p) for p in plan["params"]),
            columns=tuple(Column(name, ColumnType(kind)) for name, kind in plan["columns"]),
            dialect=plan["dialect"],
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
    raise PlanError(f"unknown parameter {tagged!r}")
