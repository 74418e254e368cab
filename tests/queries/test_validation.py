"""query_validate: the documented error bodies byte for byte, the seed requests, the semantics of docs/DESIGN.md §3,
the precedence between errors, and property tests that no body makes it fail with anything else."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queries.catalog import catalog
from queries.spec import Op, Query
from queries.validation import QueryLimits, QueryValidationError, printable, query_validate

WINDOW = {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"}
EXIT = "ApplicationExitEvent"
DATA = {EXIT: {"fields": ["FlowId"]}}
_ABSENT: Any = object()


def q(timestamp: Any = WINDOW, data: Any = DATA, **parts: Any) -> dict[str, Any]:
    """A query body: the seed's minimal query, with parts replaced, added or (with _ABSENT) left out."""
    body = {"timestamp": timestamp, "data": data, **parts}
    return {key: value for key, value in body.items() if value is not _ABSENT}


def on(field: str, ops: Any, event: str = EXIT) -> dict[str, Any]:
    """A filters object putting `ops` on one field of one event."""
    return {event: {field: ops}}


def call(**parts: Any) -> dict[str, Any]:
    """A body requesting CallEvent (for FLOAT and INTEGER fields)."""
    return q(data={"CallEvent": {"fields": ["Duration"]}}, **parts)


def error_of(body: object, **kwargs: Any) -> QueryValidationError:
    with pytest.raises(QueryValidationError) as info:
        query_validate(body, **kwargs)
    return info.value


def text_of(error: QueryValidationError) -> str:
    """The message as a customer reads it: the string, or the object's JSON."""
    message = error.message
    return message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)


def assert_deliverable(error: QueryValidationError) -> None:
    """The body survives the way the API sends it (UTF-8, non-ASCII kept) and a PostgreSQL text column."""
    text = json.dumps(error.body, ensure_ascii=False)
    text.encode("utf-8")
    assert "\x00" not in text


def assert_body(error: QueryValidationError, expected: str) -> None:
    """Byte for byte with json.dumps' default separators, and as data."""
    assert json.dumps(error.body) == expected
    assert error.body == json.loads(expected)


# --- the documented error bodies ----------------------------------------------------------------------------

BAD_DATE = (
    '{"code": 400, "message": {"Date_Filters": {"message": "Invalid date filters [2019-10-19 01:45:36.123Z]. '
    'They must be in ISO8601 format. Example: \'YYYY-MM-DDTHH:MM:SSZ\'", "code": "422-6"}}}'
)
BAD_OPERATORS = (
    '{"code": 400, "message": {"Operators": "Invalid operators [gte, lte], '
    'try to use any of these ($gte, $lte, $gt, $lt, $ne, $eq)."}}'
)
UNKNOWN_EVENT = '{"code": 400, "message": "Application ExitEvent is not a valid schema name."}'
UNKNOWN_FIELD = '{"code": 400, "message": "Flow Id is not a valid field."}'


def test_bad_date_in_timestamp_gives_the_documented_body():
    error = error_of(q(timestamp={"$gte": "2019-10-19 01:45:36.123Z", "$lte": "2019-10-20T00:00:00Z"}))
    assert_body(error, BAD_DATE)


def test_bad_date_as_a_timestamp_filter_value_gives_the_documented_body():
    error = error_of(q(filters=on("StartTime", {"$gt": "2019-10-19 01:45:36.123Z"})))
    assert_body(error, BAD_DATE)


def test_bad_dates_are_all_listed_once_in_the_order_met():
    body = q(
        timestamp={"$gte": "2019-11-25", "$lte": "2019-11-26T00:00:00Z"},
        filters={
            EXIT: {
                "StartTime": {"$in": ["bad", "2019-11-25T00:00:00Z", "2019-11-25"]},
                "EndTime": {"$lt": "x"},
            }
        },
    )
    message = error_of(body).body["message"]["Date_Filters"]["message"]
    assert message.startswith("Invalid date filters [2019-11-25, bad, x]. They must be in ISO8601 format.")


def test_bad_operators_give_the_documented_body():
    error = error_of(q(timestamp={"gte": "2019-11-25T00:00:00Z", "lte": "2019-11-26T00:00:00Z"}))
    assert_body(error, BAD_OPERATORS)


def test_bad_operators_are_gathered_from_timestamp_and_every_filter_once_in_body_order():
    body = q(
        timestamp={"gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
        data={EXIT: {"fields": ["FlowId"], "filters": {"FlowId": {"$regex": "a", "gte": "b"}}}},
        filters=on("Path", {"eq": "c", "$eq": "d"}),
        scope={
            "scope": "SessionId",
            "filters": on("DtmfInput", {"$exists": True, "gte": 1}, event="DtmfEvent"),
        },
    )
    assert error_of(body).body["message"] == {
        "Operators": "Invalid operators [gte, $regex, eq, $exists], "
        "try to use any of these ($gte, $lte, $gt, $lt, $ne, $eq)."
    }


@pytest.mark.parametrize(
    "body",
    [
        q(data={"Application ExitEvent": {"fields": ["FlowId"]}}),
        q(data={**DATA, "Application ExitEvent": {"fields": ["FlowId"]}}),
        q(filters={"Application ExitEvent": {}}),
        q(scope={"filters": {"Application ExitEvent": {}}, "scope": "SessionId"}),
    ],
    ids=["data", "second-data-event", "filters", "scope-filters"],
)
def test_unknown_event_gives_the_documented_body(body):
    assert_body(error_of(body), UNKNOWN_EVENT)


@pytest.mark.parametrize(
    "body",
    [
        q(data={EXIT: {"fields": ["FlowId", "Flow Id"]}}),
        q(data={EXIT: {"fields": ["FlowId"], "filters": {"Flow Id": {"$eq": "x"}}}}),
        q(filters=on("Flow Id", {"$eq": "x"})),
        q(scope={"filters": on("Flow Id", {"$eq": "x"}, event="DtmfEvent"), "scope": "SessionId"}),
    ],
    ids=["data-fields", "data-filters", "filters", "scope-filters"],
)
def test_unknown_field_gives_the_documented_body(body):
    assert_body(error_of(body), UNKNOWN_FIELD)


def test_names_are_case_sensitive_and_reported_as_given():
    assert error_of(q(data={"applicationexitevent": {"fields": ["FlowId"]}})).body == {
        "code": 400,
        "message": "applicationexitevent is not a valid schema name.",
    }
    assert error_of(q(data={EXIT: {"fields": ["flowid"]}})).message == "flowid is not a valid field."


def test_names_a_response_cannot_carry_are_escaped_in_messages():
    error = error_of(q(data={"Bad\x00Event\ud800": {"fields": ["FlowId"]}}))
    assert error.message == "Bad\\x00Event\\ud800 is not a valid schema name."
    assert_deliverable(error)
    assert printable("Ünïcödé 😀 stays") == "Ünïcödé 😀 stays"


def test_a_field_of_another_event_is_not_a_valid_field():
    assert error_of(q(data={EXIT: {"fields": ["DtmfInput"]}})).message == "DtmfInput is not a valid field."


def test_too_wide_a_window_says_so_first():
    body = q(timestamp={"$gte": "2019-11-01T00:00:00Z", "$lt": "2019-12-02T00:00:00Z"})
    query_validate(body)  # 31 days: within the default
    message = error_of(body, max_window=timedelta(days=30)).message
    assert (
        message == "Query range too wide: the timestamp window spans 31 days, more than the 30 days allowed."
    )


# --- the seed document's requests ---------------------------------------------------------------------------

SEED_REQUEST_1 = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"ApplicationExitEvent": {"fields": ["FlowId"]}},
}
SEED_FIELDS = [
    "EventName", "EventVersion", "EventSku", "TimeStamp", "HostId", "CustomerId", "CustomerName",
    "Originator", "OriginatorId", "FlowId", "FlowName", "ActionId", "ActionName", "IsTriggerAction",
    "SessionId", "TransactionId", "ApplicationRegion", "PassthroughVersion", "Passthrough", "StartTime",
    "EndTime", "Path", "ExitReason",
]  # fmt: skip
SEED_REQUEST_2 = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"ApplicationExitEvent": {"fields": SEED_FIELDS}},
    "filters": {"ApplicationExitEvent": {"FlowId": {"$eq": "5dcf48b453e0ab04386da7d1"}}},
}


def test_seed_request_1_validates():
    query = query_validate(SEED_REQUEST_1)
    assert query.window.start == datetime(2019, 11, 25) and query.window.start_inclusive
    assert query.window.end == datetime(2019, 11, 26) and query.window.end_inclusive
    assert query.window.start.tzinfo is None
    assert [e.event.name for e in query.events] == [EXIT]
    assert [f.name for f in query.columns] == ["FlowId"]
    assert query.events[0].conditions == ()
    assert query.scope is None


def test_seed_request_2_validates():
    query = query_validate(SEED_REQUEST_2)
    assert [f.name for f in query.columns] == SEED_FIELDS
    [condition] = query.events[0].conditions
    assert (condition.field.name, condition.op, condition.value) == (
        "FlowId",
        Op.EQ,
        "5dcf48b453e0ab04386da7d1",
    )


def test_the_design_example_validates():
    body = {
        "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
        "data": {"ApplicationExitEvent": {"fields": ["FlowId", "ExitReason"]}},
        "scope": {"filters": {"DtmfEvent": {"DtmfInput": {"$eq": "0"}}}, "scope": "SessionId"},
        "filters": {"ApplicationExitEvent": {"ExitReason": {"$ne": "Normal"}}},
    }
    query = query_validate(body)
    assert query.scope is not None and query.scope.key.name == "SessionId"
    [scope_filter] = query.scope.filters
    assert scope_filter.event.name == "DtmfEvent"
    assert [(c.field.name, c.op, c.value) for c in scope_filter.conditions] == [("DtmfInput", Op.EQ, "0")]
    assert [(c.field.name, c.op, c.value) for c in query.events[0].conditions] == [
        ("ExitReason", Op.NE, "Normal")
    ]


# --- semantics ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-11-25T00:00:00Z", datetime(2019, 11, 25)),
        ("2019-11-25T00:00:00.123Z", datetime(2019, 11, 25, 0, 0, 0, 123000)),
        ("2019-11-25T00:00:00.123+01:00", datetime(2019, 11, 24, 23, 0, 0, 123000)),
        ("2019-11-25T00:00:00-05:30", datetime(2019, 11, 25, 5, 30)),
        ("2019-11-25T00:00:00+00:00", datetime(2019, 11, 25)),
        ("2019-11-25T00:00:00.000000000Z", datetime(2019, 11, 25)),
        ("2019-11-25T00:00:00.1234560Z", datetime(2019, 11, 25, 0, 0, 0, 123456)),
        ("2020-02-29T23:59:59.999999Z", datetime(2020, 2, 29, 23, 59, 59, 999999)),
    ],
)
def test_timestamps_become_naive_utc(text, expected):
    end = (expected + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    query = query_validate(q(timestamp={"$gte": text, "$lt": end}))
    assert query.window.start == expected
    assert query.window.start.tzinfo is None


def test_exclusive_bounds_are_kept():
    query = query_validate(q(timestamp={"$gt": "2019-11-25T00:00:00Z", "$lt": "2019-11-26T00:00:00Z"}))
    assert not query.window.start_inclusive and not query.window.end_inclusive


def test_a_single_instant_window_is_allowed_when_both_bounds_are_inclusive():
    query = query_validate(q(timestamp={"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-25T00:00:00Z"}))
    assert query.window.start == query.window.end


def test_the_window_may_span_exactly_max_window():
    query_validate(q(timestamp={"$gte": "2019-11-01T00:00:00Z", "$lte": "2019-12-02T00:00:00Z"}))
    body = q(timestamp={"$gte": "2019-11-01T00:00:00Z", "$lte": "2019-12-02T00:00:00.000001Z"})
    assert error_of(body).message == (
        "Query range too wide: the timestamp window spans 31 days, 0:00:00.000001, "
        "more than the 31 days allowed."
    )


def test_max_window_is_the_callers():
    body = q(timestamp={"$gte": "2019-11-01T00:00:00Z", "$lte": "2020-01-01T00:00:00Z"})
    assert query_validate(body, max_window=timedelta(days=90)).window.end == datetime(2020, 1, 1)
    assert text_of(error_of(body)).startswith("Query range too wide: ")


def test_both_filter_layouts_apply_together_and_repeats_count_once():
    body = q(
        data={EXIT: {"fields": ["FlowId"], "filters": {"FlowId": {"$ne": "a"}, "Path": {"$eq": "p"}}}},
        filters={EXIT: {"FlowId": {"$ne": "b", "$gte": "c"}, "Path": {"$eq": "p"}}},
    )
    conditions = [(c.field.name, c.op, c.value) for c in query_validate(body).events[0].conditions]
    assert conditions == [
        ("FlowId", Op.NE, "a"),
        ("Path", Op.EQ, "p"),
        ("FlowId", Op.NE, "b"),
        ("FlowId", Op.GTE, "c"),
    ]


@pytest.mark.parametrize(
    ("field", "ops", "expected"),
    [
        ("FlowId", {"$in": ["b", "a", "b"]}, {Op.IN: ("b", "a")}),
        ("FlowId", {"$nin": [""]}, {Op.NIN: ("",)}),
        ("EventVersion", {"$gt": 1, "$lte": -(2**63)}, {Op.GT: 1, Op.LTE: -(2**63)}),
        ("EventVersion", {"$eq": 2**63 - 1}, {Op.EQ: 2**63 - 1}),
        ("IsTriggerAction", {"$eq": False, "$ne": True}, {Op.EQ: False, Op.NE: True}),
        ("StartTime", {"$lt": "2019-11-25T01:00:00+01:00"}, {Op.LT: datetime(2019, 11, 25)}),
        (
            "StartTime",
            {"$in": ["2019-11-25T00:00:00Z", "2019-11-25T01:00:00+01:00"]},
            {Op.IN: (datetime(2019, 11, 25),)},
        ),
        ("Path", {"$eq": "x" * 1024}, {Op.EQ: "x" * 1024}),
        ("Path", {"$eq": "é😀'; --"}, {Op.EQ: "é😀'; --"}),
    ],
)
def test_values_are_typed_by_their_field(field, ops, expected):
    conditions = query_validate(q(filters=on(field, ops))).events[0].conditions
    assert {c.op: c.value for c in conditions} == expected
    assert all(type(c.value) is type(expected[c.op]) for c in conditions)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, 5.0), (2.5, 2.5), (-0.0, 0.0), (0, 0.0), (1e308, 1e308), (2**70, float(2**70))],
)
def test_float_values_are_floats(value, expected):
    [condition] = (
        query_validate(call(filters=on("Duration", {"$eq": value}, event="CallEvent"))).events[0].conditions
    )
    assert type(condition.value) is float and condition.value == expected
    assert str(condition.value) != "-0.0"


def test_float_in_lists_treat_one_and_one_point_zero_as_one_value():
    body = call(filters=on("Duration", {"$in": [1, 1.0, -0.0, 0]}, event="CallEvent"))
    assert query_validate(body).events[0].conditions[0].value == (1.0, 0.0)


def test_scope_may_name_any_event_and_an_empty_condition_object():
    body = q(
        scope={"scope": "SessionId", "filters": {"MsgEvent": {}, "DtmfEvent": {"DtmfInput": {"$in": ["1"]}}}}
    )
    scope = query_validate(body).scope
    assert scope is not None
    assert [(s.event.name, len(s.conditions)) for s in scope.filters] == [("MsgEvent", 0), ("DtmfEvent", 1)]


def test_scope_filters_may_be_empty():
    scope = query_validate(q(scope={"filters": {}, "scope": "SessionId"})).scope
    assert scope is not None and scope.filters == () and scope.key.name == "SessionId"


@pytest.mark.parametrize(
    ("data", "columns"),
    [
        ({EXIT: {"fields": ["Path", "FlowId"]}}, ["Path", "FlowId"]),
        (
            {EXIT: {"fields": ["FlowId", "Path"]}, "CallEvent": {"fields": ["Ani", "FlowId", "StartTime"]}},
            ["EventName", "FlowId", "Path", "Ani", "StartTime"],
        ),
        (
            {"DtmfEvent": {"fields": ["DtmfInput"]}, EXIT: {"fields": ["Path", "EventName"]}},
            ["DtmfInput", "Path", "EventName"],
        ),
        (
            {EXIT: {"fields": ["FlowId"]}, "CallEvent": {"fields": ["FlowId", "Ani"]}},
            ["EventName", "FlowId", "Ani"],
        ),
    ],
    ids=["one-event", "union-first-wins", "event-name-asked", "event-name-added"],
)
def test_columns(data, columns):
    query = query_validate(q(data=data))
    assert [f.name for f in query.columns] == columns
    assert [e.event.name for e in query.events] == list(data)


def test_top_level_filters_apply_to_their_own_event_only():
    body = q(
        data={EXIT: {"fields": ["FlowId"]}, "CallEvent": {"fields": ["Ani"]}},
        filters={"CallEvent": {"Ani": {"$eq": "+1"}}},
    )
    exit_query, call_query = query_validate(body).events
    assert exit_query.conditions == ()
    assert [c.value for c in call_query.conditions] == ["+1"]


# --- precedence ---------------------------------------------------------------------------------------------

BAD_OP_FILTERS = on("FlowId", {"eq": "x"})
BAD_DATE_WINDOW = {"$gte": "2019-11-25", "$lte": "2019-11-26T00:00:00Z"}
WIDE_WINDOW = {"$gte": "2019-01-01T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"}


@pytest.mark.parametrize(
    ("body", "winner"),
    [
        (q(filters=BAD_OP_FILTERS, extra=1), 'Unknown attribute "extra"'),
        (q(data=[], filters=BAD_OP_FILTERS), '"data" must be an object'),
        (q(timestamp={"$gte": "2019-11-25T00:00:00Z"}, filters=BAD_OP_FILTERS), "Operators"),
        (q(timestamp=BAD_DATE_WINDOW, filters=BAD_OP_FILTERS), "Operators"),
        (q(timestamp={"$gte": "2019-11-25"}), "no upper bound"),
        (q(timestamp=BAD_DATE_WINDOW, data={"Nope": {"fields": ["FlowId"]}}), "Date_Filters"),
        (q(timestamp=WIDE_WINDOW, data={"Nope": {"fields": ["FlowId"]}}), "Query range too wide: "),
        (
            q(data={EXIT: {"fields": ["Nope"]}, "NoEvent": {"fields": ["FlowId"]}}),
            "NoEvent is not a valid schema",
        ),
        (q(filters={"CallEvent": {"Nope": {"$eq": 1}}}), "Nope is not a valid field."),
        (q(filters={"CallEvent": {"Ani": {"$eq": 1}}}), "not in data"),
        (q(data={EXIT: {"fields": ["FlowId", "FlowId"]}}, filters=on("Path", {"$eq": 1})), "more than once"),
        (
            q(filters=on("Path", {"$eq": 1}), data={EXIT: {"fields": ["FlowId", "Path"]}}),
            "filters.ApplicationExitEvent.Path $eq",
        ),
        (q(data={"Nope1": {"fields": ["FlowId"]}, "Nope2": {"fields": ["FlowId"]}}), "Nope1 is not"),
        (q(data={EXIT: {"fields": ["Bad1"], "filters": {"Bad2": {"$eq": 1}}}}), "Bad1 is not"),
    ],
    ids=[
        "shape>operators",
        "shape-data>operators",
        "operators>bounds",
        "operators>dates",
        "bounds>dates",
        "dates>events",
        "window>events",
        "events>fields",
        "fields>cross-reference",
        "cross-reference>values",
        "duplicate-field>values",
        "values-name-event-field-operator",
        "first-unknown-event-in-body-order",
        "first-unknown-field-in-body-order",
    ],
)
def test_precedence(body, winner):
    assert winner in text_of(error_of(body))


def test_values_come_before_limits():
    body = q(filters={EXIT: {"FlowId": {"$eq": 1}, "Path": {"$eq": "p"}}})
    message = error_of(body, limits=QueryLimits(max_conditions=1)).message
    assert message == "filters.ApplicationExitEvent.FlowId $eq: expected a string, got a number."


def test_operators_are_listed_in_body_order():
    body = {"filters": BAD_OP_FILTERS, "timestamp": {"gte": "x", "$lte": "y"}, "data": DATA}
    assert error_of(body).message == {
        "Operators": "Invalid operators [eq, gte], try to use any of these ($gte, $lte, $gt, $lt, $ne, $eq)."
    }


# --- limits -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "body", "message"),
    [
        (
            QueryLimits(max_events=1),
            q(data={EXIT: {"fields": ["FlowId"]}, "CallEvent": {"fields": ["Ani"]}}),
            "The query has 2 events, more than the 1 allowed.",
        ),
        (
            QueryLimits(max_fields=2),
            q(data={EXIT: {"fields": ["FlowId", "Path"]}, "CallEvent": {"fields": ["Ani"]}}),
            "The query has 3 requested fields, more than the 2 allowed.",
        ),
        (
            QueryLimits(max_conditions=2),
            q(
                filters=on("FlowId", {"$ne": "a", "$gt": "b"}),
                scope={"scope": "SessionId", "filters": {"DtmfEvent": {"DtmfInput": {"$eq": "1"}}}},
            ),
            "The query has 3 conditions, more than the 2 allowed.",
        ),
        (
            QueryLimits(max_in_values=2),
            q(filters=on("FlowId", {"$nin": ["a", "b", "c"]})),
            "filters.ApplicationExitEvent.FlowId $nin: the list has 3 values, more than the 2 allowed.",
        ),
        (
            QueryLimits(max_string_length=3),
            q(filters=on("FlowId", {"$eq": "abcd"})),
            "filters.ApplicationExitEvent.FlowId $eq: the string has 4 characters, more than the 3 allowed.",
        ),
    ],
    ids=["events", "fields", "conditions", "in-values", "string-length"],
)
def test_limits(limits, body, message):
    assert error_of(body, limits=limits).message == message
    query_validate(body)  # within the default limits


def test_default_limits_are_finite():
    limits = QueryLimits()
    assert 0 < limits.max_string_length <= 1024 and 0 < limits.max_in_values <= 10_000
    assert text_of(error_of(q(filters=on("FlowId", {"$in": ["a"] * (limits.max_in_values + 1)})))).endswith(
        f"more than the {limits.max_in_values} allowed."
    )


# --- a table of invalid bodies ------------------------------------------------------------------------------

# Far past the recursion limit: the validator must never descend into a value.
_NESTED: Any = []
for _ in range(10_000):
    _NESTED = [_NESTED]

INVALID = [
    ("body-array", [], "The query body must be a JSON object"),
    ("body-string", "query", "got a string"),
    ("body-null", None, "got null"),
    ("body-number", 1.5, "got a number"),
    ("unknown-top-level-key", q(limit=5), 'Unknown attribute "limit" in the query body'),
    ("top-level-key-case", q(timestamp=_ABSENT, Timestamp=WINDOW), 'Unknown attribute "Timestamp"'),
    ("missing-timestamp", q(timestamp=_ABSENT), 'must have a "timestamp" attribute'),
    ("missing-data", q(data=_ABSENT), 'must have a "data" attribute'),
    ("timestamp-array", q(timestamp=[]), '"timestamp" must be an object'),
    ("timestamp-string", q(timestamp="2019-11-25T00:00:00Z"), '"timestamp" must be an object'),
    ("timestamp-empty", q(timestamp={}), '"timestamp" has no lower bound: add $gte or $gt.'),
    ("timestamp-no-upper", q(timestamp={"$gt": "2019-11-25T00:00:00Z"}), "no upper bound: add $lte or $lt."),
    ("timestamp-two-lower", q(timestamp={**WINDOW, "$gt": "2019-11-25T00:00:00Z"}), "two lower bounds"),
    ("timestamp-two-upper", q(timestamp={**WINDOW, "$lt": "2019-11-26T00:00:00Z"}), "two upper bounds"),
    ("timestamp-eq", q(timestamp={**WINDOW, "$eq": "2019-11-25T00:00:00Z"}), "not $eq"),
    (
        "timestamp-bad-operator",
        q(timestamp={"$gte": "2019-11-25T00:00:00Z", "lt": "x"}),
        "Invalid operators [lt]",
    ),
    (
        "timestamp-number",
        q(timestamp={**WINDOW, "$gte": 1574640000}),
        "timestamp $gte must be an ISO 8601 string",
    ),
    ("timestamp-null", q(timestamp={**WINDOW, "$lte": None}), "timestamp $lte must be an ISO 8601 string"),
    ("date-space", q(timestamp={**WINDOW, "$gte": "2019-11-25 00:00:00Z"}), "[2019-11-25 00:00:00Z]"),
    ("date-no-zone", q(timestamp={**WINDOW, "$gte": "2019-11-25T00:00:00"}), "[2019-11-25T00:00:00]"),
    ("date-only", q(timestamp={**WINDOW, "$gte": "2019-11-25"}), "Invalid date filters [2019-11-25]"),
    ("date-feb-30", q(timestamp={**WINDOW, "$gte": "2019-02-30T00:00:00Z"}), "Date_Filters"),
    ("date-hour-24", q(timestamp={**WINDOW, "$gte": "2019-11-25T24:00:00Z"}), "Date_Filters"),
    ("date-offset-24h", q(timestamp={**WINDOW, "$gte": "2019-11-25T00:00:00+24:00"}), "Date_Filters"),
    ("date-lowercase-z", q(timestamp={**WINDOW, "$gte": "2019-11-25T00:00:00z"}), "Date_Filters"),
    ("date-fullwidth-digit", q(timestamp={**WINDOW, "$gte": "\uff12019-11-25T00:00:00Z"}), "Date_Filters"),
    ("date-trailing-newline", q(timestamp={**WINDOW, "$gte": "2019-11-25T00:00:00Z\n"}), "Date_Filters"),
    ("date-before-year-1", q(timestamp={**WINDOW, "$gte": "0001-01-01T00:00:00+01:00"}), "Date_Filters"),
    ("date-sub-microsecond", q(timestamp={**WINDOW, "$gte": "2019-11-25T00:00:00.0000001Z"}), "microsecond"),
    (
        "lower-after-upper",
        q(timestamp={"$gte": "2019-11-26T00:00:00Z", "$lte": "2019-11-25T00:00:00Z"}),
        "lower bound 2019-11-26T00:00:00Z is after its upper bound 2019-11-25T00:00:00Z",
    ),
    ("empty-window", q(timestamp={"$gt": "2019-11-25T00:00:00Z", "$lt": "2019-11-25T00:00:00Z"}), "is empty"),
    (
        "empty-window-one-microsecond",
        q(timestamp={"$gt": "2019-11-25T00:00:00Z", "$lt": "2019-11-25T00:00:00.000001Z"}),
        "is empty",
    ),
    (
        "empty-window-mixed",
        q(timestamp={"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-25T00:00:00Z"}),
        "is empty",
    ),
    (
        "too-wide",
        q(timestamp={"$gte": "2019-10-01T00:00:00Z", "$lt": "2019-11-26T00:00:00Z"}),
        "Query range too",
    ),
    ("data-empty", q(data={}), '"data" must be an object naming at least one event'),
    ("data-array", q(data=[EXIT]), '"data" must be an object'),
    ("data-entry-array", q(data={EXIT: ["FlowId"]}), "data.ApplicationExitEvent must be an object"),
    ("data-entry-no-fields", q(data={EXIT: {}}), 'data.ApplicationExitEvent must have "fields"'),
    ("data-fields-empty", q(data={EXIT: {"fields": []}}), "got an empty array"),
    (
        "data-fields-string",
        q(data={EXIT: {"fields": "FlowId"}}),
        "non-empty list of field names, got a string",
    ),
    ("data-fields-number", q(data={EXIT: {"fields": [1]}}), "must hold field names (strings), got a number"),
    ("data-fields-twice", q(data={EXIT: {"fields": ["FlowId", "FlowId"]}}), "names FlowId more than once"),
    (
        "data-unknown-key",
        q(data={EXIT: {"fields": ["FlowId"], "columns": []}}),
        'Unknown attribute "columns"',
    ),
    (
        "data-filters-array",
        q(data={EXIT: {"fields": ["FlowId"], "filters": []}}),
        "filters must be an object",
    ),
    ("filters-array", q(filters=[]), '"filters" must be an object of events'),
    (
        "filters-event-string",
        q(filters={EXIT: "x"}),
        "filters.ApplicationExitEvent must be an object of fields",
    ),
    (
        "filters-shorthand-equality",
        q(filters={EXIT: {"FlowId": "abc"}}),
        "must be a non-empty object of operators",
    ),
    ("filters-no-operator", q(filters=on("FlowId", {})), "got an empty object"),
    (
        "filters-event-not-in-data",
        q(filters={"CallEvent": {}}),
        "filters names CallEvent, which is not in data",
    ),
    ("filters-regex", q(filters=on("FlowId", {"$regex": "^a"})), "Invalid operators [$regex]"),
    ("filters-operator-case", q(filters=on("FlowId", {"$EQ": "a"})), "Invalid operators [$EQ]"),
    (
        "in-string",
        q(filters=on("FlowId", {"$in": "a"})),
        "$in: expected a non-empty array of strings, got a string",
    ),
    (
        "in-empty",
        q(filters=on("FlowId", {"$nin": []})),
        "$nin: expected a non-empty array of strings, got an empty",
    ),
    ("eq-array", q(filters=on("FlowId", {"$eq": ["a"]})), "$eq: expected a string, got an array"),
    ("eq-null", q(filters=on("FlowId", {"$eq": None})), "FlowId $eq: expected a string, got null"),
    ("ne-object", q(filters=on("FlowId", {"$ne": {}})), "FlowId $ne: expected a string, got an object"),
    ("string-number", q(filters=on("FlowId", {"$eq": 5})), "expected a string, got a number"),
    ("string-nul", q(filters=on("FlowId", {"$eq": "a\x00b"})), "NUL character"),
    ("string-lone-surrogate", q(filters=on("FlowId", {"$eq": "a\ud800"})), "lone surrogate"),
    ("string-too-long", q(filters=on("FlowId", {"$eq": "x" * 1025})), "the string has 1025 characters"),
    ("integer-string", q(filters=on("EventVersion", {"$eq": "5"})), "EventVersion $eq: expected an integer"),
    ("integer-bool", q(filters=on("EventVersion", {"$eq": True})), "expected an integer, got a boolean"),
    ("integer-float", q(filters=on("EventVersion", {"$gt": 5.5})), "expected an integer, got a number"),
    (
        "integer-integral-float",
        q(filters=on("EventVersion", {"$gt": 5.0})),
        "expected an integer, got a number",
    ),
    ("integer-too-big", q(filters=on("EventVersion", {"$lt": 2**63})), "outside the 64-bit range"),
    ("integer-too-small", q(filters=on("EventVersion", {"$lt": -(2**63) - 1})), "outside the 64-bit range"),
    (
        "float-bool",
        call(filters=on("Duration", {"$gt": False}, event="CallEvent")),
        "expected a number, got a boolean",
    ),
    ("float-string", call(filters=on("Duration", {"$gt": "1.5"}, event="CallEvent")), "expected a number"),
    ("float-nan", call(filters=on("Duration", {"$gt": float("nan")}, event="CallEvent")), "finite number"),
    (
        "float-infinity",
        call(filters=on("Duration", {"$lt": float("inf")}, event="CallEvent")),
        "finite number",
    ),
    (
        "float-huge-int",
        call(filters=on("Duration", {"$lt": 10**400}, event="CallEvent")),
        "floating-point range",
    ),
    (
        "boolean-string",
        q(filters=on("IsTriggerAction", {"$eq": "true"})),
        "expected true or false, got a string",
    ),
    ("boolean-number", q(filters=on("IsTriggerAction", {"$eq": 1})), "expected true or false, got a number"),
    ("timestamp-field-number", q(filters=on("StartTime", {"$gt": 0})), "StartTime $gt: expected an ISO 8601"),
    (
        "timestamp-field-bad",
        q(filters=on("TimeStamp", {"$gt": "yesterday"})),
        "Invalid date filters [yesterday]",
    ),
    (
        "in-item-wrong-type",
        q(filters=on("FlowId", {"$in": ["a", 1]})),
        "FlowId $in item 1: expected a string",
    ),
    ("in-item-null", q(filters=on("FlowId", {"$nin": [None]})), "$nin item 0: expected a string, got null"),
    ("in-too-long", q(filters=on("FlowId", {"$in": ["a"] * 1001})), "the list has 1001 values"),
    ("scope-array", q(scope=[]), '"scope" must be an object with "filters" and "scope", got an array'),
    ("scope-null", q(scope=None), '"scope" must be an object'),
    ("scope-no-key", q(scope={"filters": {}}), '"scope" must have both "filters" and "scope".'),
    ("scope-no-filters", q(scope={"scope": "SessionId"}), '"scope" must have both "filters" and "scope".'),
    (
        "scope-unknown-key",
        q(scope={"filters": {}, "scope": "SessionId", "x": 1}),
        'Unknown attribute "x" in scope',
    ),
    (
        "scope-other-key",
        q(scope={"filters": {}, "scope": "FlowId"}),
        'must be "SessionId", the only correlation',
    ),
    ("scope-key-case", q(scope={"filters": {}, "scope": "sessionid"}), 'got "sessionid"'),
    ("scope-key-null", q(scope={"filters": {}, "scope": None}), "got null"),
    (
        "scope-filters-array",
        q(scope={"filters": [], "scope": "SessionId"}),
        '"scope.filters" must be an object',
    ),
    (
        "scope-unknown-event",
        q(scope={"filters": {"Nope": {}}, "scope": "SessionId"}),
        "Nope is not a valid schema",
    ),
    (
        "scope-field-no-operator",
        q(scope={"filters": {"DtmfEvent": {"DtmfInput": {}}}, "scope": "SessionId"}),
        "scope.filters.DtmfEvent.DtmfInput must be a non-empty object of operators",
    ),
    (
        "scope-bad-value",
        q(scope={"filters": {"DtmfEvent": {"DtmfInput": {"$eq": 0}}}, "scope": "SessionId"}),
        "scope.filters.DtmfEvent.DtmfInput $eq: expected a string, got a number",
    ),
    (
        "data-filters-bad-value",
        q(data={EXIT: {"fields": ["FlowId"], "filters": {"Path": {"$in": [True]}}}}),
        "data.ApplicationExitEvent.filters.Path $in item 0: expected a string, got a boolean",
    ),
    ("deeply-nested-value", q(filters=on("FlowId", {"$eq": _NESTED})), "expected a string, got an array"),
    (
        "deeply-nested-in",
        q(filters=on("FlowId", {"$in": _NESTED})),
        "$in item 0: expected a string, got an array",
    ),
]


def test_the_invalid_table_is_large_and_distinct():
    assert len(INVALID) >= 45
    assert len({name for name, _, _ in INVALID}) == len(INVALID)


@pytest.mark.parametrize(
    ("body", "expected"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_bodies_are_refused_clearly(body, expected):
    error = error_of(body)
    assert isinstance(error.message, str | dict)
    assert error.body == {"code": 400, "message": error.message}
    assert_deliverable(error)
    assert expected in text_of(error), text_of(error)


# --- properties ---------------------------------------------------------------------------------------------

_CATALOG = catalog()
_NAMES = sorted(
    {"timestamp", "data", "filters", "scope", "fields", "SessionId"}
    | set(_CATALOG.events)
    | {name for event in _CATALOG.events.values() for name in event.fields}
    | {op.value for op in Op}
)
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_JSON = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
)
# Names and values the validator knows, so the random bodies also get past the first checks.
_KEYS = st.sampled_from(_NAMES) | st.text(max_size=8)
_LEAVES = (
    st.sampled_from(["2019-11-25T00:00:00Z", "2019-11-25T12:00:00+01:00", "SessionId", "a", "2019-11-25"])
    | _SCALARS
)
_NEAR_JSON = st.recursive(
    _LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=4),
    max_leaves=40,
)


def _validate_or_refuse(body: object) -> Query | None:
    try:
        return query_validate(body)
    except QueryValidationError as error:
        assert isinstance(error.message, str | dict)
        assert_deliverable(error)  # whatever the body held
        return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_JSON)
def test_arbitrary_json_is_validated_or_refused(body):
    _validate_or_refuse(body)


RICH_BODY = {
    "timestamp": {"$gt": "2019-11-25T00:00:00.5+01:00", "$lt": "2019-11-26T00:00:00Z"},
    "data": {
        EXIT: {"fields": ["FlowId", "StartTime"], "filters": {"StartTime": {"$gte": "2019-11-25T00:00:00Z"}}},
        "CallEvent": {"fields": ["Duration", "SipResponseCode", "IsTriggerAction"]},
    },
    "filters": {
        "CallEvent": {
            "Duration": {"$gt": 1.5, "$lte": 60},
            "SipResponseCode": {"$in": [200, 486], "$ne": 500},
            "IsTriggerAction": {"$eq": False},
        }
    },
    "scope": {
        "scope": "SessionId",
        "filters": {"DtmfEvent": {"DtmfInput": {"$nin": ["0", "9"]}}, "MsgEvent": {}},
    },
}
VALID_BODIES = [SEED_REQUEST_1, SEED_REQUEST_2, RICH_BODY]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node of a JSON value (the root is the empty path)."""
    paths = [prefix]
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        paths.extend(_paths(child, (*prefix, key)))
    return paths


def _edited(node: Any, path: tuple[Any, ...], edit: Any) -> Any:
    """A copy of `node` with edit(child) applied at `path` (only the nodes along the path are copied)."""
    if not path:
        return edit(node)
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _edited(node[path[0]], path[1:], edit)
    return copy


@st.composite
def _mutated_bodies(draw: st.DrawFn) -> Any:
    """A valid body with one node replaced, one key removed or one key added: it reaches every step."""
    body = draw(st.sampled_from(VALID_BODIES))
    path = draw(st.sampled_from(_paths(body)))
    kind = draw(st.sampled_from(["replace", "remove", "add"]))
    if kind == "replace" or not path:
        replacement = draw(_NEAR_JSON)
        return _edited(body, path, lambda _: replacement)
    if kind == "remove":
        return _edited(body, path[:-1], lambda parent: _without(parent, path[-1]))
    key, value = draw(_KEYS), draw(_NEAR_JSON)
    return _edited(
        body,
        path,
        lambda node: (
            {**node, key: value}
            if isinstance(node, dict)
            else [*node, value]
            if isinstance(node, list)
            else value
        ),
    )


def _without(parent: Any, key: Any) -> Any:
    if isinstance(parent, dict):
        return {k: v for k, v in parent.items() if k != key}
    return [v for i, v in enumerate(parent) if i != key]


def test_the_valid_bodies_are_valid():
    for body in VALID_BODIES:
        query_validate(body)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_bodies())
def test_mutated_bodies_are_validated_or_refused(body):
    _validate_or_refuse(body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    timestamp=st.just(WINDOW) | _NEAR_JSON,
    data=st.dictionaries(
        st.sampled_from(sorted(_CATALOG.events)) | st.text(max_size=5), _NEAR_JSON, max_size=3
    ),
    optional=st.fixed_dictionaries({}, optional={"filters": _NEAR_JSON, "scope": _NEAR_JSON}),
)
def test_query_shaped_json_is_validated_or_refused(timestamp, data, optional):
    _validate_or_refuse({"timestamp": timestamp, "data": data, **optional})


@settings(max_examples=200)
@given(
    fields=st.lists(st.sampled_from(sorted(_CATALOG.events[EXIT].fields)), min_size=1, unique=True),
    in_values=st.lists(st.text(max_size=5).filter(lambda s: "\x00" not in s), min_size=1, max_size=5),
)
def test_valid_bodies_validate(fields, in_values):
    query = query_validate(q(data={EXIT: {"fields": fields}}, filters=on("Path", {"$in": in_values})))
    assert [f.name for f in query.columns] == fields
    assert query.events[0].conditions[0].value == tuple(dict.fromkeys(in_values))


HOSTILE = st.sampled_from(
    [
        "'",
        '"',
        "'; DROP TABLE events; --",
        "' OR '1'='1",
        "\x00",
        "a\x00b",
        "--",
        ";",
        "\\",
        "%s",
        "{}",
        "${x}",
        "\u202e",
        "\ud800",
        "😀",
        "\u210c",
        "\uff26",
        "",
        " ",
        "x" * 10_000,
        "é" * 1024,
        "é" * 1025,
    ]
) | st.text(max_size=50)


@settings(max_examples=150)
@given(HOSTILE)
def test_hostile_event_names_are_refused(name):
    if name in _CATALOG.events:
        return
    error = error_of(q(data={name: {"fields": ["FlowId"]}}))
    assert error.message == f"{printable(name)} is not a valid schema name."
    assert_deliverable(error)


@settings(max_examples=150)
@given(HOSTILE)
def test_hostile_field_names_are_refused(name):
    if name in _CATALOG.events[EXIT].fields:
        return
    assert error_of(q(data={EXIT: {"fields": [name]}})).message == f"{printable(name)} is not a valid field."
    assert error_of(q(filters=on(name, {"$eq": "x"}))).message == f"{printable(name)} is not a valid field."


@settings(max_examples=150)
@given(HOSTILE)
def test_hostile_operators_are_refused(op):
    if op in {o.value for o in Op}:
        return
    assert error_of(q(filters=on("FlowId", {op: "x"}))).message == {
        "Operators": f"Invalid operators [{printable(op)}], "
        "try to use any of these ($gte, $lte, $gt, $lt, $ne, $eq)."
    }


@settings(max_examples=150)
@given(HOSTILE)
def test_hostile_values_are_literal_or_refused(value):
    acceptable = (
        "\x00" not in value
        and printable(value) == value  # no lone surrogate
        and len(value) <= QueryLimits().max_string_length
    )
    for ops in ({"$eq": value}, {"$in": [value, "x"]}):
        try:
            query = query_validate(q(filters=on("FlowId", ops)))
        except QueryValidationError as error:
            assert not acceptable, error.message
            assert_deliverable(error)
        else:
            assert acceptable
            [condition] = query.events[0].conditions
            assert condition.value in (value, (value, "x"), (value,))


@settings(max_examples=100)
@given(HOSTILE)
def test_hostile_dates_are_listed_as_given(text):
    body = q(timestamp={"$gte": text, "$lte": "2019-11-26T00:00:00Z"})
    assert error_of(body).message == {
        "Date_Filters": {
            "message": f"Invalid date filters [{printable(text)}]. They must be in ISO8601 format. "
            "Example: 'YYYY-MM-DDTHH:MM:SSZ'",
            "code": "422-6",
        }
    }
