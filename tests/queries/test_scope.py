"""The session scope, case by case, on both engines and the reference evaluator (docs/DESIGN.md §3 `scope`).

Customer c1's sessions: s1 qualifies through a DtmfEvent "0" inside the window; s2's DtmfEvent "0" lies just
before the window; s3 has a DtmfEvent "1" and an exit exactly on the (exclusive) window end; s4 has only an
exit and a message. Customer c2 reuses the SessionIds s1 and s3, with its own DtmfEvent "0" records: if
sessions leaked across customers, c1's s3 would qualify.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from queries.validation import query_validate
from tests.reference import Row, Warehouses, reference_evaluate

pytestmark = pytest.mark.postgres


def at(minute: int, hour: int = 10) -> datetime:
    return datetime(2020, 1, 1, hour, minute)


WINDOW = {"$gte": "2020-01-01T10:00:00Z", "$lt": "2020-01-01T11:00:00Z"}
ROWS: list[Row] = [
    {"CustomerId": "c1", "SessionId": "s1", "EventName": "DtmfEvent", "TimeStamp": at(5), "DtmfInput": "0"},
    {
        "CustomerId": "c1",
        "SessionId": "s1",
        "EventName": "ApplicationExitEvent",
        "TimeStamp": at(10),
        "ExitReason": "Hangup",
    },
    {"CustomerId": "c1", "SessionId": "s1", "EventName": "CallEvent", "TimeStamp": at(20), "Duration": 12.5},
    {
        "CustomerId": "c1",
        "SessionId": "s2",
        "EventName": "DtmfEvent",
        "TimeStamp": at(59, hour=9),
        "DtmfInput": "0",
    },
    {
        "CustomerId": "c1",
        "SessionId": "s2",
        "EventName": "ApplicationExitEvent",
        "TimeStamp": at(15),
        "ExitReason": "Normal",
    },
    {"CustomerId": "c1", "SessionId": "s3", "EventName": "DtmfEvent", "TimeStamp": at(30), "DtmfInput": "1"},
    {"CustomerId": "c1", "SessionId": "s3", "EventName": "CallEvent", "TimeStamp": at(40), "Duration": 3.0},
    {
        "CustomerId": "c1",
        "SessionId": "s3",
        "EventName": "ApplicationExitEvent",
        "TimeStamp": at(0, hour=11),
        "ExitReason": "Normal",
    },
    {
        "CustomerId": "c1",
        "SessionId": None,
        "EventName": "ApplicationExitEvent",
        "TimeStamp": at(45),
        "ExitReason": "Timeout",
    },
    {
        "CustomerId": "c1",
        "SessionId": "s4",
        "EventName": "ApplicationExitEvent",
        "TimeStamp": at(50),
        "ExitReason": "Error",
    },
    {
        "CustomerId": "c1",
        "SessionId": "s4",
        "EventName": "MsgEvent",
        "TimeStamp": at(55),
        "MsgStatus": "Delivered",
    },
    {"CustomerId": "c2", "SessionId": "s1", "EventName": "DtmfEvent", "TimeStamp": at(6), "DtmfInput": "0"},
    {
        "CustomerId": "c2",
        "SessionId": "s1",
        "EventName": "ApplicationExitEvent",
        "TimeStamp": at(12),
        "ExitReason": "Hangup",
    },
    {"CustomerId": "c2", "SessionId": "s3", "EventName": "DtmfEvent", "TimeStamp": at(31), "DtmfInput": "0"},
]


@pytest.fixture(scope="module")
def loaded(postgres: Any) -> Iterator[tuple[Warehouses, list[Row]]]:
    warehouses = Warehouses(postgres.create_database("scope_cases"))
    rows = warehouses.load(ROWS)
    yield warehouses, rows
    warehouses.close()


def run(
    loaded: tuple[Warehouses, list[Row]], body: dict[str, Any], customer_id: str = "c1"
) -> list[tuple[Any, ...]]:
    """The rows every engine returns, after checking that they and the reference all agree."""
    warehouses, rows = loaded
    query = query_validate(body)
    expected = reference_evaluate(query, rows, customer_id=customer_id)
    for engine, result in warehouses.results(query, customer_id=customer_id).items():
        assert result == expected, engine
    return expected.rows


def scoped(scope_filters: dict[str, Any], data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "timestamp": WINDOW,
        "data": data,
        "scope": {"filters": scope_filters, "scope": "SessionId"},
        **extra,
    }


EXITS = {"ApplicationExitEvent": {"fields": ["SessionId", "ExitReason"]}}


def test_only_sessions_with_a_matching_record_inside_the_window_qualify(loaded: Any) -> None:
    # s2's DtmfEvent "0" is a minute before the window; c2's "0" records must not qualify c1's s1 or s3.
    assert run(loaded, scoped({"DtmfEvent": {"DtmfInput": {"$eq": "0"}}}, EXITS)) == [("s1", "Hangup")]


def test_candidates_are_the_window_records_of_qualifying_sessions(loaded: Any) -> None:
    # s3 qualifies; its exit sits exactly on the exclusive window end, so only its call is returned.
    calls = {"CallEvent": {"fields": ["SessionId", "TimeStamp"]}}
    assert run(loaded, scoped({"DtmfEvent": {"DtmfInput": {"$eq": "1"}}}, calls)) == [("s3", at(40))]
    assert run(loaded, scoped({"DtmfEvent": {"DtmfInput": {"$eq": "1"}}}, EXITS)) == []


def test_several_scope_events_are_alternatives(loaded: Any) -> None:
    data = {"ApplicationExitEvent": {"fields": ["SessionId"]}, "CallEvent": {"fields": ["SessionId"]}}
    body = scoped({"DtmfEvent": {"DtmfInput": {"$eq": "1"}}, "MsgEvent": {}}, data)
    assert run(loaded, body) == [("CallEvent", "s3"), ("ApplicationExitEvent", "s4")]


def test_empty_scope_filters_take_every_session_with_a_record_in_the_window(loaded: Any) -> None:
    # The exit without a SessionId belongs to no session, so the scope drops it.
    assert run(loaded, scoped({}, EXITS)) == [("s1", "Hangup"), ("s2", "Normal"), ("s4", "Error")]
    unscoped = {"timestamp": WINDOW, "data": EXITS}
    assert (None, "Timeout") in run(loaded, unscoped)


def test_filters_narrow_the_scoped_candidates(loaded: Any) -> None:
    body = scoped({}, EXITS, filters={"ApplicationExitEvent": {"ExitReason": {"$ne": "Hangup"}}})
    assert run(loaded, body) == [("s2", "Normal"), ("s4", "Error")]
    inside = {
        "ApplicationExitEvent": {
            **EXITS["ApplicationExitEvent"],
            "filters": {"ExitReason": {"$in": ["Error"]}},
        }
    }
    assert run(loaded, scoped({"MsgEvent": {"MsgStatus": {"$eq": "Delivered"}}}, inside)) == [("s4", "Error")]


def test_another_customers_sessions_never_leak(loaded: Any) -> None:
    data = {"ApplicationExitEvent": {"fields": ["CustomerId", "SessionId"]}}
    assert run(loaded, scoped({"DtmfEvent": {"DtmfInput": {"$eq": "0"}}}, data), customer_id="c2") == [
        ("c2", "s1")
    ]
    assert run(loaded, scoped({}, data), customer_id="c3") == []
