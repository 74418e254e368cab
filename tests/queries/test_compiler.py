"""The shape of compiled SQL: customer predicate everywhere, parameters for every value, typed NULLs."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from exports.engines.base import Dialect
from exports.engines.duckdb import DUCKDB
from exports.engines.postgres import POSTGRES
from queries.catalog import catalog
from queries.compiler import query_compile
from queries.spec import Query
from queries.validation import query_validate

WINDOW = {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-26T00:00:00Z"}
DESIGN_EXAMPLE = {
    "timestamp": WINDOW,
    "data": {
        "ApplicationExitEvent": {"fields": ["FlowId", "ExitReason"]},
        "CallEvent": {"fields": ["Duration", "FlowId"], "filters": {"Duration": {"$gt": 1.5}}},
    },
    "scope": {"filters": {"DtmfEvent": {"DtmfInput": {"$eq": "0"}}, "MsgEvent": {}}, "scope": "SessionId"},
    "filters": {"ApplicationExitEvent": {"ExitReason": {"$ne": "Normal"}, "Path": {"$nin": ["a", "b"]}}},
}
CUSTOMER = "customer-7"
CUSTOMER_PREDICATE = '"CustomerId" = '


def _compile(body: dict[str, Any], dialect: Dialect = DUCKDB) -> tuple[Query, Any]:
    query = query_validate(body)
    return query, query_compile(query, customer_id=CUSTOMER, dialect=dialect)


def _branches(sql: str) -> list[str]:
    """The per-event SELECTs: the text between the scope CTE (if any) and the ORDER BY, split on UNION ALL."""
    inner = sql[sql.index(" FROM (SELECT ") + len(" FROM (") : sql.rindex(') AS "q" ORDER BY')]
    return inner.split(" UNION ALL ")


@pytest.mark.parametrize("dialect", [DUCKDB, POSTGRES], ids=lambda d: d.name)
def test_every_value_is_a_parameter_and_placeholders_match(dialect: Dialect) -> None:
    _, statement = _compile(DESIGN_EXAMPLE, dialect)
    assert statement.sql.count(dialect.placeholder()) == len(statement.params)
    assert statement.dialect == dialect.name
    for value in ("Normal", "customer-7", "DtmfEvent", "CallEvent", "2019"):
        assert value not in statement.sql
    assert statement.params.count(CUSTOMER) == 3  # two branches and the scope
    assert datetime(2019, 11, 25) in statement.params and 1.5 in statement.params


def test_customer_predicate_is_in_every_branch_and_in_the_scope() -> None:
    _, statement = _compile(DESIGN_EXAMPLE)
    branches = _branches(statement.sql)
    assert len(branches) == 2
    assert all(CUSTOMER_PREDICATE in branch for branch in branches)
    scope = statement.sql[: statement.sql.index(") SELECT ")]
    assert scope.startswith(
        'WITH "scope_sessions" AS (SELECT "SessionId" FROM "events" WHERE "CustomerId" = ?'
    )
    assert all('"SessionId" IN (SELECT "SessionId" FROM "scope_sessions")' in branch for branch in branches)


def test_unscoped_query_has_no_scope_and_still_the_customer() -> None:
    _, statement = _compile({"timestamp": WINDOW, "data": {"CallEvent": {"fields": ["Ani"]}}})
    assert "scope_sessions" not in statement.sql
    assert statement.sql == (
        'SELECT "Ani" FROM (SELECT "Ani", "TimeStamp" AS "_ts", "_row_id" AS "_rid" FROM "events"'
        ' WHERE "CustomerId" = ? AND "EventName" = ? AND "TimeStamp" >= ? AND "TimeStamp" < ?)'
        ' AS "q" ORDER BY "_ts", "_rid"'
    )
    assert statement.params == (CUSTOMER, "CallEvent", datetime(2019, 11, 25), datetime(2019, 11, 26))


def test_fields_not_requested_for_an_event_are_typed_nulls() -> None:
    _, statement = _compile(DESIGN_EXAMPLE, POSTGRES)
    exit_branch, call_branch = _branches(statement.sql)
    assert 'CAST(NULL AS double precision) AS "Duration"' in exit_branch
    assert 'CAST(NULL AS text) AS "ExitReason"' in call_branch
    assert '"FlowId"' in exit_branch and '"FlowId"' in call_branch


def test_event_name_comes_first_and_filled_for_several_events() -> None:
    query, statement = _compile(DESIGN_EXAMPLE)
    assert [c.name for c in statement.columns] == ["EventName", "FlowId", "ExitReason", "Duration"]
    assert [c.name for c in statement.columns] == [f.name for f in query.columns]
    assert all(branch.startswith('SELECT "EventName", ') for branch in _branches(statement.sql))


def test_event_name_asked_for_one_event_only_is_empty_in_the_others() -> None:
    body = {
        "timestamp": WINDOW,
        "data": {"CallEvent": {"fields": ["Ani", "EventName"]}, "MsgEvent": {"fields": ["To"]}},
    }
    _, statement = _compile(body)
    call_branch, msg_branch = _branches(statement.sql)
    assert call_branch.startswith('SELECT "Ani", "EventName", ')
    assert 'CAST(NULL AS VARCHAR) AS "EventName"' in msg_branch


def test_ne_and_nin_match_null_and_the_others_do_not() -> None:
    _, statement = _compile(DESIGN_EXAMPLE)
    assert '("ExitReason" IS NULL OR "ExitReason" <> ?)' in statement.sql
    assert '("Path" IS NULL OR "Path" NOT IN (?, ?))' in statement.sql
    assert '"Duration" > ?' in statement.sql and '"Duration" IS NULL' not in statement.sql


def test_scope_filters_are_alternatives_and_empty_scope_takes_any_record() -> None:
    _, statement = _compile(DESIGN_EXAMPLE)
    assert '(("EventName" = ? AND "DtmfInput" = ?) OR ("EventName" = ?))' in statement.sql
    body = {**DESIGN_EXAMPLE, "scope": {"filters": {}, "scope": "SessionId"}}
    _, statement = _compile(body)
    scope = statement.sql[: statement.sql.index(") SELECT ")]
    assert '"EventName"' not in scope and CUSTOMER_PREDICATE in scope


def test_window_bounds_follow_the_operators() -> None:
    body = {
        "timestamp": {"$gt": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00+01:00"},
        "data": {"CallEvent": {"fields": ["Ani"]}},
    }
    _, statement = _compile(body)
    assert '"TimeStamp" > ? AND "TimeStamp" <= ?' in statement.sql
    assert statement.params[2:4] == (datetime(2019, 11, 25), datetime(2019, 11, 25, 23))


def test_identifiers_come_from_the_catalog_only() -> None:
    _, statement = _compile(DESIGN_EXAMPLE)
    quoted = set(re.findall(r'"([^"]*)"', statement.sql))
    known = {c.name for c in catalog().warehouse_columns()} | {"events", "_row_id", "_ts", "_rid", "q"}
    assert quoted <= known | {"scope_sessions"}


def test_a_customer_is_required() -> None:
    query = query_validate(DESIGN_EXAMPLE)
    with pytest.raises(ValueError, match="customer"):
        query_compile(query, customer_id="", dialect=DUCKDB)
