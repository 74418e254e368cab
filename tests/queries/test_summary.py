"""A query's summary (giosg's sidedata), computed two ways, each held equal to a plain-Python reference over the
reference evaluator's rows (tests/reference.py): the export's SummaryCollector fed the engine's batches of
`query_compile(..., summary=True)` cut at random sizes, and the warehouse's own aggregates (summary_statements),
on DuckDB and on PostgreSQL, for hand-checked cases and random queries. Also: the compiled SQL without a summary
is unchanged, the export's visible columns are unaffected, and the sketch path is close and bounded.
"""

from __future__ import annotations

import itertools
import json
import math
import pickle
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from exports.engines.base import WarehouseEngine
from exports.engines.duckdb import DUCKDB
from exports.engines.postgres import POSTGRES
from exports.schema import Column
from exports.summary import SUMMARY_COLUMNS, SummaryCollector, string_hashes
from queries.catalog import catalog
from queries.compiler import SUMMARY_SOURCES, query_compile
from queries.validation import query_validate
from tests.queries.test_engine_reference import BASE, CUSTOMERS, TIMES, bodies, rows
from tests.reference import (
    Row,
    Warehouses,
    engine_export_summary,
    engine_warehouse_summary,
    reference_evaluate,
    reference_summary,
)

SUMMARY_NAMES = [name for name, _ in SUMMARY_COLUMNS]
KEYS = ["rows", "rows_per_event", "unique_sessions_count", "unique_originators_count", "approximate"]
KEYS += ["first_timestamp", "last_timestamp", "timeframe_stat", "call_duration", "disconnect_reason"]


def _summary(**figures: Any) -> dict[str, Any]:
    """A summary written out by hand: zero everywhere but the figures given (hours and days as {index: n})."""
    hours, days = figures.pop("hours", {}), figures.pop("days", {})
    return {
        "rows": 0, "rows_per_event": {}, "unique_sessions_count": 0, "unique_originators_count": 0,
        "approximate": False, "first_timestamp": None, "last_timestamp": None,
        "timeframe_stat": {"hour_in_day": [[hours.get(hour, 0), hour] for hour in range(24)],
                           "day_in_week": [[days.get(day, 0), day] for day in range(1, 8)]},
        "call_duration": {"count": 0, "sum": 0.0, "min": None, "max": None, "mean": None},
        "disconnect_reason": [],
        **figures,
    }  # fmt: skip


def assert_same_summary(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal, keys in order; a sum (and so a mean) may differ in its last bits: addition order is the engine's."""
    assert list(actual) == KEYS and list(actual["call_duration"]) == ["count", "sum", "min", "max", "mean"]
    actual, expected = json.loads(json.dumps(actual)), json.loads(json.dumps(expected))  # JSON-able, too
    for key in ("sum", "mean"):
        got, want = actual["call_duration"].pop(key), expected["call_duration"].pop(key)
        assert (got is None and want is None) or math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12), key
    assert actual == expected


def engines(warehouses: Warehouses) -> list[WarehouseEngine]:
    return [warehouses.duckdb, warehouses.postgres]  # DuckDB's is a new engine after every load


@pytest.fixture(scope="module")
def warehouses(postgres: Any) -> Iterator[Warehouses]:
    warehouses = Warehouses(postgres.create_database("summary"))
    yield warehouses
    warehouses.close()


# -- hand-checked cases ----------------------------------------------------------------------------------


def _call(when: datetime, session: str | None, originator: str | None, **fields: Any) -> Row:
    return {"EventName": "CallEvent", "CustomerId": "c1", "SessionId": session, "OriginatorId": originator,
            "TimeStamp": when, **fields}  # fmt: skip


def _event(name: str, when: datetime, session: str | None, originator: str | None, **fields: Any) -> Row:
    return {**_call(when, session, originator, **fields), "EventName": name}


SUNDAY = datetime(2020, 1, 5)  # an ISO week ends: Sunday 5 January 2020 is day 7, Monday the 6th day 1
MONDAY = SUNDAY + timedelta(days=1)
WINDOW = {"$gte": "2020-01-05T00:00:00Z", "$lt": "2020-01-07T00:00:00Z"}
NOT_CALLS = {"DtmfEvent": {"fields": ["DtmfInput"]}, "MsgEvent": {"fields": ["To"]}}
THREE_EVENTS = {"CallEvent": {"fields": ["Ani"]}, **NOT_CALLS}
LAST_INSTANT = MONDAY - timedelta(microseconds=1)  # of the week: floored to .999, never rounded up
ACROSS_MIDNIGHT = [
    _call(LAST_INSTANT, "s1", "o1", Duration=30.0, DisconnectReason="Normal"),  # s1 crosses midnight
    _event("DtmfEvent", MONDAY + timedelta(microseconds=1), "s1", None, DtmfInput="1"),
    _call(MONDAY + timedelta(minutes=30), None, "o2", DisconnectReason="Busy"),  # no Duration, no session
    _event("MsgEvent", MONDAY + timedelta(hours=13, seconds=0.123456), "s2", "o1", To="+1"),
    _call(MONDAY + timedelta(hours=13, seconds=0.123456), "s2", None, Duration=0.5),  # a tie in time
    {**_call(MONDAY, "s9", "o9", Duration=99.0, DisconnectReason="Other"), "CustomerId": "c2"},  # not ours
    _call(MONDAY + timedelta(days=1), "s1", "o3", Duration=1.0),  # after the window
    _event("DtmfEvent", MONDAY, "s3", "o4", Duration=7.0, DisconnectReason="Stray"),  # not a call's figures
]
ACROSS_MIDNIGHT_SUMMARY = _summary(
    rows=6,
    rows_per_event={"CallEvent": 3, "DtmfEvent": 2, "MsgEvent": 1},
    unique_sessions_count=3,
    unique_originators_count=3,
    first_timestamp="2020-01-05T23:59:59.999Z",
    last_timestamp="2020-01-06T13:00:00.123Z",
    hours={23: 1, 0: 3, 13: 2},
    days={7: 1, 1: 5},
    call_duration={"count": 2, "sum": 30.5, "min": 0.5, "max": 30.0, "mean": 15.25},
    disconnect_reason=[{"value": "Busy", "count": 1}, {"value": "Normal", "count": 1}],
)
# Ties: four reasons three times each, then 22 once each ("" among them, not NULL); the cut falls inside a tie.
TIED = ["a", "B", "é", "😀"] * 3 + ["", *(f"r{i:02d}" for i in range(20)), None, "z"]
TIES = [
    _call(MONDAY + timedelta(minutes=i), f"s{i % 5}", None, DisconnectReason=r) for i, r in enumerate(TIED)
]
TIES_SUMMARY = _summary(
    rows=len(TIED),
    rows_per_event={"CallEvent": len(TIED)},
    unique_sessions_count=5,
    first_timestamp="2020-01-06T00:00:00.000Z",
    last_timestamp="2020-01-06T00:34:00.000Z",
    hours={0: len(TIED)},
    days={1: len(TIED)},
    disconnect_reason=[{"value": v, "count": 3} for v in ("B", "a", "é", "😀")]
    + [{"value": v, "count": 1} for v in ("", *(f"r{i:02d}" for i in range(15)))],
)
NO_CALLS = [
    _event("DtmfEvent", SUNDAY + timedelta(hours=5), "s1", "o1", DtmfInput="1"),
    _event("MsgEvent", SUNDAY + timedelta(hours=5, minutes=1), "s1", "o1", To="+1"),
    _call(SUNDAY + timedelta(hours=6), "s2", "o2", Duration=5.0, DisconnectReason="Normal"),  # not asked for
]
NO_CALLS_SUMMARY = _summary(
    rows=2,
    rows_per_event={"DtmfEvent": 1, "MsgEvent": 1},
    unique_sessions_count=1,
    unique_originators_count=1,
    first_timestamp="2020-01-05T05:00:00.000Z",
    last_timestamp="2020-01-05T05:01:00.000Z",
    hours={5: 2},
    days={7: 2},
)
CASES = {
    "across midnight and the week's end, NULL sessions and originators": (
        ACROSS_MIDNIGHT, {"timestamp": WINDOW, "data": THREE_EVENTS}, ACROSS_MIDNIGHT_SUMMARY),
    "scoped to a session found before midnight": (
        ACROSS_MIDNIGHT,
        {"timestamp": WINDOW, "data": THREE_EVENTS,
         "scope": {"scope": "SessionId", "filters": {"DtmfEvent": {"DtmfInput": {"$eq": "1"}}}}},
        _summary(rows=2, rows_per_event={"CallEvent": 1, "DtmfEvent": 1}, unique_sessions_count=1,
                 unique_originators_count=1, first_timestamp="2020-01-05T23:59:59.999Z",
                 last_timestamp="2020-01-06T00:00:00.000Z", hours={23: 1, 0: 1}, days={7: 1, 1: 1},
                 call_duration={"count": 1, "sum": 30.0, "min": 30.0, "max": 30.0, "mean": 30.0},
                 disconnect_reason=[{"value": "Normal", "count": 1}]),
    ),
    "ties in disconnect reasons": (TIES, {"timestamp": WINDOW, "data": THREE_EVENTS}, TIES_SUMMARY),
    "only events other than calls": (NO_CALLS, {"timestamp": WINDOW, "data": NOT_CALLS}, NO_CALLS_SUMMARY),
    "no rows at all": ([], {"timestamp": WINDOW, "data": THREE_EVENTS}, _summary()),
    "no row selected": (ACROSS_MIDNIGHT, {"timestamp": WINDOW, "data": {"CallEvent": {
        "fields": ["Ani"], "filters": {"Duration": {"$gt": 100.0}}}}}, _summary()),
}  # fmt: skip


@pytest.mark.postgres
@pytest.mark.parametrize("case", list(CASES))
def test_hand_checked_summaries(warehouses: Warehouses, case: str) -> None:
    data, body, expected = CASES[case]
    query = query_validate(body)
    loaded = warehouses.load(data)
    assert_same_summary(reference_summary(query, loaded, customer_id="c1"), expected)
    visible = reference_evaluate(query, loaded, customer_id="c1")
    for engine in engines(warehouses):
        for sizes in ([1], [2, 5], [1000]):
            shown, summary = engine_export_summary(engine, query, customer_id="c1", sizes=sizes)
            assert shown == visible  # the hidden columns change nothing the export shows
            assert_same_summary(summary, expected)
        assert_same_summary(engine_warehouse_summary(engine, query, customer_id="c1"), expected)


@pytest.fixture(scope="module")
def with_spark(
    postgres: Any, spark_connect: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouses]:
    spark = (spark_connect.url, tmp_path_factory.mktemp("summary_spark"))
    warehouses = Warehouses(postgres.create_database("summary_spark"), spark=spark)
    yield warehouses
    warehouses.close()


@pytest.mark.postgres
@pytest.mark.parametrize("case", list(CASES))
def test_hand_checked_summaries_on_spark(with_spark: Warehouses, case: str) -> None:
    """The same figures through the Spark engine: its batches counted by the export's collector, and its own
    aggregates (DAYOFWEEK_ISO for the weekday, the day partitions bounded like the rows)."""
    data, body, expected = CASES[case]
    query = query_validate(body)
    loaded = with_spark.load(data)
    assert with_spark.spark is not None
    shown, summary = engine_export_summary(with_spark.spark, query, customer_id="c1", sizes=[2, 5])
    assert shown == reference_evaluate(query, loaded, customer_id="c1")
    assert_same_summary(summary, expected)
    assert_same_summary(engine_warehouse_summary(with_spark.spark, query, customer_id="c1"), expected)


# -- random queries over random rows ---------------------------------------------------------------------

# The shared strategies draw timestamps from five minutes of one day; spread them (in order) over three days
# from a Sunday noon, 7 h 13 min apart, so hours, weekdays, midnight and the week's end all vary.
SPREAD_BASE = datetime(2020, 1, 5, 12)


def _spread(value: Any) -> Any:
    if not isinstance(value, datetime):
        return value
    minutes, rest = divmod(value - BASE, timedelta(minutes=1))
    return SPREAD_BASE + minutes * timedelta(hours=7, minutes=13) + rest * 999  # 1 us -> 999 us: same ms


def _json_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


SPREAD_JSON = {_json_time(t): _json_time(_spread(t)) for t in TIMES}


def _spread_body(body: Any) -> Any:
    if isinstance(body, dict):
        return {key: _spread_body(value) for key, value in body.items()}
    if isinstance(body, list):
        return [_spread_body(value) for value in body]
    return SPREAD_JSON.get(body, body) if isinstance(body, str) else body


@st.composite
def summary_rows(draw: st.DrawFn, events: tuple[str, ...], customer: str) -> list[Row]:
    """The engine tests' rows, spread in time, with originators and (on calls) disconnect reasons."""
    out = []
    for row in draw(rows(events, customer)) + draw(
        rows(events, customer)
    ):  # twice: more rows survive filters
        row = {name: _spread(value) for name, value in row.items()}
        row["OriginatorId"] = draw(st.sampled_from(["o1", "o2", "", "é", None]))
        if row["EventName"] == "CallEvent":
            row["DisconnectReason"] = draw(st.sampled_from(["Normal", "Busy", "B", "a", "", None]))
        out.append(row)
    return out


@pytest.mark.postgres
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(body=bodies(), draw=st.data(), customer_id=st.sampled_from(CUSTOMERS))
def test_random_summaries_equal_the_reference(
    warehouses: Warehouses, body: dict[str, Any], draw: st.DataObject, customer_id: str
) -> None:
    body = _spread_body(body)
    query = query_validate(body)
    loaded = warehouses.load(draw.draw(summary_rows(tuple(body["data"]), customer_id), label="rows"))
    expected = reference_summary(query, loaded, customer_id=customer_id)
    visible = reference_evaluate(query, loaded, customer_id=customer_id)
    # What the examples cover, in --hypothesis-show-statistics.
    event(f"rows: {min(expected['rows'], 3)}+, calls' figures: {bool(expected['call_duration']['count'])}")
    for engine in engines(warehouses):
        sizes = draw.draw(st.lists(st.integers(1, 9), min_size=1, max_size=6), label="batch sizes")
        shown, summary = engine_export_summary(engine, query, customer_id=customer_id, sizes=sizes)
        assert shown == visible
        assert_same_summary(summary, expected)
        assert_same_summary(engine_warehouse_summary(engine, query, customer_id=customer_id), expected)


# -- the compiler: nothing changes without a summary -----------------------------------------------------

PLAIN = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["Duration", "Ani"], "filters": {"Ani": {"$in": ["1", "2"]}}},
             "MsgEvent": {"fields": ["To"]}},
}  # fmt: skip
SCOPED = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-26T00:00:00Z"},
    "data": {"ApplicationExitEvent": {"fields": ["FlowId"]}},
    "scope": {"filters": {"DtmfEvent": {"DtmfInput": {"$eq": "0"}}}, "scope": "SessionId"},
}
# What the compiler wrote before summaries existed (the whole SQL, for the record).
PLAIN_WHERE = (
    'FROM "events" WHERE "CustomerId" = ? AND "TimeStamp" >= ? AND "TimeStamp" < ?'
    ' AND (("EventName" = ? AND "Ani" IN (?, ?)) OR ("EventName" = ?))'
)
PLAIN_COLUMNS = (
    '"EventName", CASE WHEN "EventName" IN (?) THEN "Duration" END AS "Duration",'
    ' CASE WHEN "EventName" IN (?) THEN "Ani" END AS "Ani", CASE WHEN "EventName" IN (?) THEN "To" END AS "To"'
)
SORT_KEYS = '"events"."TimeStamp", "events"."_row_id"'
BEFORE = {
    "plain": (
        f"SELECT {PLAIN_COLUMNS} {PLAIN_WHERE} ORDER BY {SORT_KEYS}",
        f"SELECT {PLAIN_COLUMNS}, {SORT_KEYS} {PLAIN_WHERE}",
        f"SELECT {SORT_KEYS} {PLAIN_WHERE}",
    ),
    "scoped": (
        'WITH "scope_sessions" AS (SELECT "SessionId" FROM "events" WHERE "CustomerId" = ? AND "TimeStamp" >= ?'
        ' AND "TimeStamp" < ? AND ("EventName" = ? AND "DtmfInput" = ?)) SELECT "FlowId" FROM "events"'
        ' WHERE "CustomerId" = ? AND "TimeStamp" >= ? AND "TimeStamp" < ? AND ("EventName" = ?)'
        ' AND "SessionId" IN (SELECT "SessionId" FROM "scope_sessions") ORDER BY ' + SORT_KEYS,
        None,
        None,
    ),
}
SUMMARY_SELECT = (
    '"EventName" AS "_summary_event", "SessionId" AS "_summary_session", "OriginatorId" AS "_summary_originator",'
    ' "TimeStamp" AS "_summary_timestamp", CASE WHEN "EventName" = ? THEN "Duration" END AS "_summary_duration",'
    ' CASE WHEN "EventName" = ? THEN "DisconnectReason" END AS "_summary_disconnect"'
)


@pytest.mark.parametrize("name, body", [("plain", PLAIN), ("scoped", SCOPED)])
def test_sql_without_summary_is_as_before(name: str, body: dict[str, Any]) -> None:
    statement = query_compile(query_validate(body), customer_id="c1", dialect=DUCKDB)
    unordered = statement.unordered
    assert (statement.sql, unordered and unordered.sql, unordered and unordered.keys_sql) == BEFORE[name]
    assert statement == query_compile(query_validate(body), customer_id="c1", dialect=DUCKDB, summary=False)


@settings(max_examples=300)
@given(body=bodies(), dialect=st.sampled_from([DUCKDB, POSTGRES]))
def test_summary_columns_come_last_and_change_nothing_else(body: dict[str, Any], dialect: Any) -> None:
    query = query_validate(body)
    plain = query_compile(query, customer_id="c1", dialect=dialect)
    summed = query_compile(query, customer_id="c1", dialect=dialect, summary=True)
    hidden = ", " + SUMMARY_SELECT.replace("?", dialect.placeholder())
    assert summed.columns == plain.columns + tuple(Column(name, kind) for name, kind in SUMMARY_COLUMNS)
    where = ' FROM "events" WHERE "CustomerId" = '
    main = plain.sql.rindex(where)  # the main SELECT's FROM (the scope CTE's comes first)
    assert summed.sql == plain.sql[:main] + hidden + plain.sql[main:]
    before = plain.sql[:main].count(
        dialect.placeholder()
    )  # the summary's parameters follow the select list's
    assert summed.params == (*plain.params[:before], "CallEvent", "CallEvent", *plain.params[before:])
    if plain.unordered is None:
        assert summed.unordered is None
        return
    assert summed.unordered is not None
    keys = ", " + SORT_KEYS + where
    assert summed.unordered.sql == plain.unordered.sql.replace(keys, hidden + keys, 1)
    assert summed.unordered.keys_sql == plain.unordered.keys_sql
    assert summed.unordered.keys_params == plain.unordered.keys_params


def test_hidden_columns_have_their_fields_types() -> None:
    assert list(SUMMARY_SOURCES) == SUMMARY_NAMES
    for name, kind in SUMMARY_COLUMNS:
        assert catalog().field(SUMMARY_SOURCES[name][0]).type is kind, name
    assert {event for _, event in SUMMARY_SOURCES.values()} == {None, "CallEvent"}


# -- the collector alone: the sketch, memory, hashing ----------------------------------------------------


def _batch(sessions: pa.Array, reasons: pa.Array | None = None) -> pa.RecordBatch:
    """Calls of `sessions` (their originators too) at one instant, lasting a second, for `reasons` (or NULL)."""
    size = len(sessions)
    reasons = reasons if reasons is not None else pa.nulls(size, pa.string())
    times = pa.array([SUNDAY] * size, pa.timestamp("us"))
    columns = [pa.array(["CallEvent"] * size), sessions, sessions, times, pa.array([1.0] * size), reasons]
    return pa.RecordBatch.from_arrays(columns, names=SUMMARY_NAMES)


def _ids(start: int, stop: int, prefix: str = "session-") -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(range(start, stop)), pa.string()), "")


def test_distinct_counts_are_exact_up_to_the_limit_then_estimated_closely() -> None:
    exact = SummaryCollector(exact_limit=1000)
    exact.add(_batch(_ids(0, 600)))
    exact.add(_batch(_ids(400, 1000)))  # overlapping batches: 1000 distinct in all
    assert (exact.result()["unique_sessions_count"], exact.result()["approximate"]) == (1000, False)
    exact.add(_batch(_ids(999, 1001)))
    assert exact.result()["approximate"] is True
    for distinct in (5_000, 200_000):
        estimated = SummaryCollector(exact_limit=1000)
        for start in range(0, distinct, 4096):
            estimated.add(_batch(_ids(start, min(distinct, start + 4096))))
            estimated.add(_batch(_ids(start, min(distinct, start + 100))))  # repeats count once
        result = estimated.result()
        assert result["approximate"] is True and result["rows"] > distinct
        for key in ("unique_sessions_count", "unique_originators_count"):
            assert abs(result[key] - distinct) <= 0.03 * distinct, (key, result[key])


def test_memory_stays_bounded_whatever_the_distinct_values() -> None:
    collector = SummaryCollector(exact_limit=10_000, reasons_limit=1_000)
    held, peaks = [], []
    tracemalloc.start()  # numpy reports its buffers to tracemalloc: the hashing's temporaries count
    try:
        for start in range(0, 400_000, 8192):
            tracemalloc.reset_peak()
            collector.add(_batch(_ids(start, start + 8192), _ids(start, start + 8192, "reason-")))
            peaks.append(tracemalloc.get_traced_memory()[1])
            held.append(collector.nbytes)
    finally:
        tracemalloc.stop()
    # Past the limits: two 16 KiB sketches, at most 1,000 reasons, at most a limit's worth of pending hashes.
    assert max(held) < 2 * (2 * 10_000 + 8192) * 8 + 100_000
    assert max(held[-10:]) < 100_000
    assert max(peaks[-20:]) <= max(peaks[:20]) * 1.5  # the last batches need no more than the first ones
    result = collector.result()
    assert result["approximate"] is True and len(result["disconnect_reason"]) == 20


def test_the_most_frequent_reasons_survive_the_reason_limit() -> None:
    collector = SummaryCollector(reasons_limit=100)
    for start in range(0, 5000, 500):
        frequent = pa.array(["Busy"] * 300 + ["Normal"] * 200)
        collector.add(_batch(_ids(start, start + 500), frequent))
        collector.add(_batch(_ids(start, start + 500), _ids(start, start + 500, "rare-")))
    result = collector.result()
    assert result["approximate"] is True
    top = [(reason["value"], reason["count"]) for reason in result["disconnect_reason"][:2]]
    assert top == [("Busy", 3000), ("Normal", 2000)]


def test_an_empty_stream_and_empty_batches_give_the_empty_summary() -> None:
    collector = SummaryCollector()
    assert_same_summary(collector.result(), _summary())
    collector.add(_batch(pa.array([], pa.string())))
    assert_same_summary(collector.result(), _summary())


def test_string_hashes_tell_values_apart_however_the_array_is_held() -> None:
    values = ["", "a", "a\0", "\0", "abcdefgh", "abcdefgh\0", "abcdefghi", "é", "😀" * 9]
    values += ["x" * 1000, "x" * 1001]  # long ones: many 8-byte words
    hashes = string_hashes(pa.array(values))
    assert len(set(hashes.tolist())) == len(values)
    sliced = pa.array(["before", *values, "after"]).slice(1, len(values))
    assert string_hashes(sliced).tolist() == hashes.tolist()
    assert string_hashes(pa.array(values, pa.large_string())).tolist() == hashes.tolist()
    many = string_hashes(_ids(0, 200_000))
    assert len(set(many.tolist())) == 200_000
    with pytest.raises(ValueError):
        string_hashes(pa.array(["a", None]))


def _slices_merged(batches: list[pa.RecordBatch], cuts: list[int], **limits: int) -> dict[str, Any]:
    """The summary of `batches` counted in slices (cut before each index of `cuts`), each slice's collector
    pickled as a slice worker stores it, then merged in order."""
    edges = [0, *cuts, len(batches)]
    merged = SummaryCollector(**limits)
    for start, stop in itertools.pairwise(edges):
        part = SummaryCollector(**limits)
        for batch in batches[start:stop]:
            part.add(batch)
        merged.merge(pickle.loads(pickle.dumps(part)))  # noqa: S301 - our own bytes
    return merged.result()


def test_slices_merged_give_the_summary_of_the_whole() -> None:
    batches = [
        _batch(_ids(start, start + 300), _ids(start % 700, start % 700 + 300, "reason-"))
        for start in range(0, 3000, 250)  # overlapping sessions and reasons across slices
    ]
    whole = SummaryCollector()
    for batch in batches:
        whole.add(batch)
    for cuts in ([], [1], [3, 4, 9], list(range(1, len(batches)))):
        assert _slices_merged(batches, cuts) == whole.result(), cuts


def test_slices_merged_past_the_exact_limit_estimate_as_closely() -> None:
    batches = [_batch(_ids(start, start + 4096)) for start in range(0, 60_000, 3000)]
    distinct = 57_000 + 4096
    for cuts in ([], [2], [5, 10, 15]):
        result = _slices_merged(batches, cuts, exact_limit=1000)
        assert result["approximate"] is True, cuts
        assert abs(result["unique_sessions_count"] - distinct) <= 0.03 * distinct, (cuts, result)
    # One slice exact and another past the limit: the exact one's values go into the sketch.
    small = _slices_merged([_batch(_ids(0, 500)), *batches], [1], exact_limit=1000)
    assert abs(small["unique_sessions_count"] - distinct) <= 0.03 * distinct
