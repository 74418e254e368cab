"""The shape of compiled SQL: one scan, the customer everywhere, parameters for every value, typed empties."""

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


def _main(sql: str) -> str:
    """The main SELECT: what follows the scope CTE, if any."""
    return sql[sql.index(") SELECT ") + 2 :] if sql.startswith("WITH ") else sql


def _select_list(sql: str) -> str:
    main = _main(sql)
    return main[len("SELECT ") : main.index(' FROM "events" WHERE ')]


@pytest.mark.parametrize("dialect", [DUCKDB, POSTGRES], ids=lambda d: d.name)
def test_every_value_is_a_parameter_and_placeholders_match(dialect: Dialect) -> None:
    _, statement = _compile(DESIGN_EXAMPLE, dialect)
    assert statement.sql.count(dialect.placeholder()) == len(statement.params)
    assert statement.dialect == dialect.name
    for value in ("Normal", "customer-7", "DtmfEvent", "CallEvent", "2019"):
        assert value not in statement.sql
    assert statement.params.count(CUSTOMER) == 2  # the main WHERE and the scope
    assert datetime(2019, 11, 25) in statement.params and 1.5 in statement.params


def test_several_events_are_one_scan_sorted_by_time_then_load_order() -> None:
    _, statement = _compile(DESIGN_EXAMPLE)
    main = _main(statement.sql)
    assert "UNION" not in statement.sql
    assert main.count(' FROM "events" ') == 1 and main.count("SELECT ") == 2  # the other reads the CTE
    assert main.endswith(' ORDER BY "events"."TimeStamp", "events"."_row_id"')


def test_customer_predicate_is_in_the_main_where_and_in_the_scope() -> None:
    _, statement = _compile(DESIGN_EXAMPLE)
    main = _main(statement.sql)
    assert ' FROM "events" WHERE "CustomerId" = ? AND "TimeStamp" >= ? AND "TimeStamp" < ? AND ' in main
    scope = statement.sql[: statement.sql.index(") SELECT ")]
    assert scope.startswith(
        'WITH "scope_sessions" AS (SELECT "SessionId" FROM "events" WHERE "CustomerId" = ?'
    )
    assert ' AND "SessionId" IN (SELECT "SessionId" FROM "scope_sessions") ORDER BY ' in main


def test_each_event_is_an_alternative_with_its_own_conditions() -> None:
    _, statement = _compile(DESIGN_EXAMPLE)
    assert (
        ' AND (("EventName" = ? AND ("ExitReason" IS NULL OR "ExitReason" <> ?)'
        ' AND ("Path" IS NULL OR "Path" NOT IN (?, ?))) OR ("EventName" = ? AND "Duration" > ?)) AND '
    ) in _main(statement.sql)
    where = statement.params[statement.params.index(CUSTOMER, 1) :]  # after the scope CTE's own customer
    assert where[3:] == ("ApplicationExitEvent", "Normal", "a", "b", "CallEvent", 1.5)


def test_unscoped_query_has_no_scope_and_still_the_customer() -> None:
    _, statement = _compile({"timestamp": WINDOW, "data": {"CallEvent": {"fields": ["Ani"]}}})
    assert "scope_sessions" not in statement.sql
    assert statement.sql == (
        'SELECT "Ani" FROM "events"'
        ' WHERE "CustomerId" = ? AND "TimeStamp" >= ? AND "TimeStamp" < ? AND ("EventName" = ?)'
        ' ORDER BY "events"."TimeStamp", "events"."_row_id"'
    )
    assert statement.params == (CUSTOMER, datetime(2019, 11, 25), datetime(2019, 11, 26), "CallEvent")


def test_fields_not_requested_for_an_event_are_empty_in_its_rows() -> None:
    _, statement = _compile(DESIGN_EXAMPLE, POSTGRES)
    assert _select_list(statement.sql) == (
        '"EventName", "FlowId",'
        ' CASE WHEN "EventName" IN (%s) THEN "ExitReason" END AS "ExitReason",'
        ' CASE WHEN "EventName" IN (%s) THEN "Duration" END AS "Duration"'
    )
    assert statement.params[6:8] == ("ApplicationExitEvent", "CallEvent")  # after the scope CTE's six


def test_a_field_of_two_events_out_of_three_names_both() -> None:
    body = {
        "timestamp": WINDOW,
        "data": {
            "CallEvent": {"fields": ["StartTime"]},
            "MsgEvent": {"fields": ["To"]},
            "ApplicationExitEvent": {"fields": ["StartTime"]},
        },
    }
    _, statement = _compile(body)
    assert 'CASE WHEN "EventName" IN (?, ?) THEN "StartTime" END AS "StartTime"' in statement.sql
    assert statement.params[:3] == ("CallEvent", "ApplicationExitEvent", "MsgEvent")


def test_event_name_comes_first_and_filled_for_several_events() -> None:
    query, statement = _compile(DESIGN_EXAMPLE)
    assert [c.name for c in statement.columns] == ["EventName", "FlowId", "ExitReason", "Duration"]
    assert [c.name for c in statement.columns] == [f.name for f in query.columns]
    assert _select_list(statement.sql).startswith('"EventName", "FlowId", CASE ')


def test_event_name_asked_for_one_event_only_is_empty_in_the_others() -> None:
    body = {
        "timestamp": WINDOW,
        "data": {"CallEvent": {"fields": ["Ani", "EventName"]}, "MsgEvent": {"fields": ["To"]}},
    }
    _, statement = _compile(body)
    assert _select_list(statement.sql) == (
        'CASE WHEN "EventName" IN (?) THEN "Ani" END AS "Ani",'
        ' CASE WHEN "EventName" IN (?) THEN "EventName" END AS "EventName",'
        ' CASE WHEN "EventName" IN (?) THEN "To" END AS "To"'
    )
    assert statement.params[:3] == ("CallEvent", "CallEvent", "MsgEvent")


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
    assert statement.params[1:3] == (datetime(2019, 11, 25), datetime(2019, 11, 25, 23))


def test_identifiers_come_from_the_catalog_only() -> None:
    _, statement = _compile(DESIGN_EXAMPLE)
    quoted = set(re.findall(r'"([^"]*)"', statement.sql))
    known = {c.name for c in catalog().warehouse_columns()} | {"events", "_row_id"}
    assert quoted <= known | {"scope_sessions"}


def test_a_customer_is_required() -> None:
    query = query_validate(DESIGN_EXAMPLE)
    with pytest.raises(ValueError, match="customer"):
        query_compile(query, customer_id="", dialect=DUCKDB)


def test_an_unscoped_query_carries_its_unordered_form_and_key_scan() -> None:
    body = {key: value for key, value in DESIGN_EXAMPLE.items() if key != "scope"}
    _, statement = _compile(body)
    unordered = statement.unordered
    assert unordered is not None
    sort_keys = '"events"."TimeStamp", "events"."_row_id"'
    # The same query without its ORDER BY and with the sort keys appended: the same parameters fit.
    assert unordered.sql == statement.sql.replace(" ORDER BY " + sort_keys, "").replace(
        ' FROM "events" ', f', {sort_keys} FROM "events" ', 1
    )
    # The key scan reads the same rows; its parameters skip the select list's (the CASE event names).
    assert unordered.keys_sql.startswith(f'SELECT {sort_keys} FROM "events" WHERE ')
    assert unordered.keys_sql.count("?") == len(unordered.keys_params)
    assert unordered.keys_sql.split(" WHERE ", 1)[1] == unordered.sql.split(" WHERE ", 1)[1]
    case_params = _select_list(statement.sql).count("?")
    assert case_params > 0
    assert unordered.keys_params == statement.params[case_params:]


def test_a_scoped_query_has_no_unordered_form() -> None:
    _, statement = _compile(DESIGN_EXAMPLE)
    assert statement.unordered is None
