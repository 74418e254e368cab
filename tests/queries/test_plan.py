"""The run plan stored at POST: every parameter type survives the trip through text, and a plan this code
cannot read is refused rather than guessed at."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from exports.engines.duckdb import DUCKDB
from exports.engines.postgres import POSTGRES
from queries.compiler import query_compile
from queries.plan import PlanError, plan_build, plan_columns, plan_statement
from queries.validation import query_validate

RICH = {
    "timestamp": {"$gt": "2019-11-25T00:00:00.123456+02:00", "$lt": "2019-11-26T00:00:00Z"},
    "data": {
        "CallEvent": {"fields": ["Ani", "Duration"], "filters": {"SipResponseCode": {"$in": [200, 486]}}},
        "MsgEvent": {"fields": ["To", "Segments"]},
    },
    "filters": {
        "CallEvent": {
            "Duration": {"$gt": 1.5},
            "IsTriggerAction": {"$eq": False},
            "Ani": {"$ne": "a\u00e9\u202e"},
        }
    },
    "scope": {"scope": "SessionId", "filters": {"DtmfEvent": {"DtmfInput": {"$nin": ["0"]}}}},
}


@pytest.mark.parametrize("dialect", [DUCKDB, POSTGRES], ids=lambda d: d.name)
@pytest.mark.parametrize("body", [RICH, {**RICH, "scope": None}], ids=["scoped", "unscoped"])
def test_a_plan_gives_back_the_statement_it_was_built_from(dialect, body):
    body = {k: v for k, v in body.items() if v is not None}
    query = query_validate(body, max_window=timedelta(days=31))
    statement = query_compile(query, customer_id="acme", dialect=dialect)
    text = plan_build(query, statement)
    assert text.isascii(), "ASCII-only: any text column of any database holds it"
    assert plan_statement(text) == statement
    kinds = {type(p) for p in plan_statement(text).params}
    assert {str, int, float, bool, datetime} <= kinds
    assert plan_columns(text) == ["EventName", "Ani", "Duration", "To", "Segments"]


def test_a_float_stays_a_float_and_an_integer_an_integer():
    body = {**RICH, "filters": {"CallEvent": {"Duration": {"$eq": 5.0}, "SipResponseCode": {"$eq": 5}}}}
    query = query_validate(body, max_window=timedelta(days=31))
    params = plan_statement(plan_build(query, query_compile(query, customer_id="a", dialect=DUCKDB))).params
    assert 5.0 in params and any(type(p) is float and p == 5.0 for p in params)
    assert any(type(p) is int and p == 5 for p in params)


@pytest.mark.parametrize(
    "damage",
    [
        lambda plan: {**plan, "version": 0},
        lambda plan: {**plan, "params": [["x", "1"]]},
        lambda plan: {**plan, "columns": [["Ani", "BLOB"]]},
        lambda plan: {k: v for k, v in plan.items() if k != "sql"},
    ],
)
def test_a_plan_this_code_cannot_read_is_refused(damage):
    query = query_validate(RICH, max_window=timedelta(days=31))
    plan = json.loads(plan_build(query, query_compile(query, customer_id="acme", dialect=DUCKDB)))
    with pytest.raises(PlanError):
        plan_statement(json.dumps(damage(plan)))
    with pytest.raises(PlanError):
        plan_statement("not json")
