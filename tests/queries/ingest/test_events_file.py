"""Reading event files: good files become the warehouse's typed table, bad ones a `file:line: field` error."""

from __future__ import annotations

import gzip
import json
import string
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queries.catalog import catalog
from queries.ingest import LoadError, events_file_read, file_kind, warehouse_schema

CALL_CSV = (
    "EventName,TimeStamp,CustomerId,SessionId,IsTriggerAction,EventVersion,Ani,StartTime,Duration,"
    "SipResponseCode,DtmfInput,Passthrough\n"
    "CallEvent,2019-11-25T10:00:00Z,acme,s1,true,3,+14155550100,2019-11-25T10:59:59.5+01:00,12.5,200,,"
    '"{""a"":""x,y""}"\n'
    "\n"
    'DtmfEvent,2019-11-25T10:00:05.123456789Z,acme,s1,FALSE,1,,,,,0,"multi\nline"\n'
)


def row(**values: Any) -> dict[str, Any]:
    """A full warehouse row: every column NULL unless given."""
    full = dict.fromkeys(warehouse_schema().names)
    full.update(values)
    return full


CALL_ROWS = [
    row(
        EventName="CallEvent",
        TimeStamp=datetime(2019, 11, 25, 10, 0, 0),
        CustomerId="acme",
        SessionId="s1",
        IsTriggerAction=True,
        EventVersion=3,
        Ani="+14155550100",
        StartTime=datetime(2019, 11, 25, 9, 59, 59, 500000),
        Duration=12.5,
        SipResponseCode=200,
        Passthrough='{"a":"x,y"}',
    ),
    row(
        EventName="DtmfEvent",
        TimeStamp=datetime(2019, 11, 25, 10, 0, 5, 123456),  # nanoseconds truncated
        CustomerId="acme",
        SessionId="s1",
        IsTriggerAction=False,
        EventVersion=1,
        DtmfInput="0",
        Passthrough="multi\nline",
    ),
]


def write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)
    return path


def ndjson(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def rejection(path: Path) -> str:
    with pytest.raises(LoadError) as caught:
        events_file_read(path)
    return str(caught.value)


# -- good files -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["calls.csv", "calls.csv.gz", "CALLS.CSV"])
def test_csv_file_reads_to_the_typed_warehouse_table(tmp_path: Path, name: str) -> None:
    table = events_file_read(write(tmp_path, name, CALL_CSV))

    assert table.schema == warehouse_schema()
    assert table.to_pylist() == CALL_ROWS


def test_csv_empty_cell_is_null_and_a_header_only_file_has_no_rows(tmp_path: Path) -> None:
    table = events_file_read(write(tmp_path, "h.csv", "EventName,TimeStamp,CustomerId,FlowName\n"))
    assert table.num_rows == 0 and table.schema == warehouse_schema()

    table = events_file_read(
        write(
            tmp_path,
            "e.csv",
            '\ufeffEventName,TimeStamp,CustomerId,FlowName\nMsgEvent,2019-11-25T00:00:00Z,acme,""\n',
        )
    )
    assert table.to_pylist() == [
        row(EventName="MsgEvent", TimeStamp=datetime(2019, 11, 25), CustomerId="acme", FlowName=None)
    ]


@pytest.mark.parametrize("name", ["calls.ndjson", "calls.jsonl", "calls.ndjson.gz"])
def test_ndjson_file_reads_to_the_same_table(tmp_path: Path, name: str) -> None:
    content = ndjson(
        {
            "EventName": "CallEvent",
            "TimeStamp": "2019-11-25T10:00:00Z",
            "CustomerId": "acme",
            "SessionId": "s1",
            "IsTriggerAction": True,
            "EventVersion": 3,
            "Ani": "+14155550100",
            "StartTime": "2019-11-25T10:59:59.5+01:00",
            "Duration": 12.5,
            "SipResponseCode": 200,
            "DtmfInput": None,
            "Passthrough": '{"a":"x,y"}',
        },
        {
            "EventName": "DtmfEvent",
            "TimeStamp": "2019-11-25T10:00:05.123456789Z",
            "CustomerId": "acme",
            "SessionId": "s1",
            "IsTriggerAction": False,
            "EventVersion": 1,
            "DtmfInput": "0",
            "Passthrough": "multi\nline",
        },
    )
    table = events_file_read(write(tmp_path, name, "\n" + content + "   \n"))

    assert table.schema == warehouse_schema()
    assert table.to_pylist() == CALL_ROWS


def test_ndjson_takes_numbers_and_booleans_spelled_as_strings(tmp_path: Path) -> None:
    base = {"EventName": "MsgEvent", "TimeStamp": "2019-11-25T00:00:00Z", "CustomerId": "acme", "From": ""}
    typed = {**base, "Segments": 2, "IsTriggerAction": True, "EventVersion": 1}
    spelled = {**base, "Segments": " 2 ", "IsTriggerAction": "TRUE", "EventVersion": "+1"}

    strict = events_file_read(write(tmp_path, "typed.ndjson", ndjson(typed)))
    lenient = events_file_read(write(tmp_path, "spelled.ndjson", ndjson(spelled)))

    assert strict.equals(lenient)
    assert strict.to_pylist()[0]["From"] == ""  # NDJSON keeps an empty string; CSV could not


def test_parquet_file_reads_with_its_own_types(tmp_path: Path) -> None:
    source = pa.table(
        {
            "EventName": pa.array(["CallEvent", "DtmfEvent"]).dictionary_encode(),
            "TimeStamp": pa.array(
                [datetime(2019, 11, 25, 11, 0, tzinfo=UTC), datetime(2019, 11, 25, 11, 0, 5, tzinfo=UTC)],
                pa.timestamp("ns", tz="Europe/Paris"),
            ),
            "CustomerId": pa.array(["acme", "acme"], pa.large_string()),
            "SipResponseCode": pa.array([486, None], pa.int16()),
            "Duration": pa.array([3, None], pa.int32()),
            "StartTime": pa.array(["2019-11-25T11:00:00Z", None]),
            "IsTriggerAction": pa.array([True, False]),
            "ErrorReason": pa.array([None, None], pa.null()),
        }
    )
    path = tmp_path / "calls.parquet"
    pq.write_table(source, path)

    assert events_file_read(path).to_pylist() == [
        row(
            EventName="CallEvent",
            TimeStamp=datetime(2019, 11, 25, 11, 0),
            CustomerId="acme",
            SipResponseCode=486,
            Duration=3.0,
            StartTime=datetime(2019, 11, 25, 11, 0),
            IsTriggerAction=True,
        ),
        row(
            EventName="DtmfEvent",
            TimeStamp=datetime(2019, 11, 25, 11, 0, 5),
            CustomerId="acme",
            IsTriggerAction=False,
        ),
    ]


def test_file_kind_by_name() -> None:
    assert [
        file_kind(n) for n in ["a.csv", "a.CSV.GZ", "a.jsonl", "a.ndjson.gz", "a.pq", "a.json", "a.gz"]
    ] == [
        "csv",
        "csv",
        "ndjson",
        "ndjson",
        "parquet",
        None,
        None,
    ]


# -- bad files ------------------------------------------------------------------------------------------

HEADER = "EventName,TimeStamp,CustomerId,Segments,DtmfInput,IsTriggerAction,Duration,FlowName\n"
GOOD = "MsgEvent,2019-11-25T00:00:00Z,acme,1,,true,,f\n"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "unknown-column.csv",
            "EventName,TimeStamp,CustomerId,Colour\n",
            ":1: Colour: not a field of any event",
        ),
        ("duplicate.csv", "EventName,TimeStamp,CustomerId,EventName\n", ":1: EventName: column appears more"),
        ("no-header.csv", "", ":1: no header row"),
        (
            "unknown-event.csv",
            HEADER + GOOD + "FaxEvent,2019-11-25T00:00:00Z,acme,,,,,\n",
            ":3: EventName: unknown event 'FaxEvent'",
        ),
        (
            "bad-int.csv",
            HEADER + GOOD + "MsgEvent,2019-11-25T00:00:00Z,acme,two,,,,\n",
            ":3: Segments: not an integer: 'two'",
        ),
        (
            "huge-int.csv",
            HEADER + "MsgEvent,2019-11-25T00:00:00Z,acme,9223372036854775808,,,,\n",
            ":2: Segments: out of the 64-bit integer range",
        ),
        (
            "no-zone.csv",
            HEADER + GOOD + "MsgEvent,2019-11-25T00:00:00,acme,,,,,\n",
            ":3: TimeStamp: not an ISO 8601 timestamp",
        ),
        (
            "year-zero.csv",
            HEADER + GOOD + "MsgEvent,0001-01-01T00:00:00+01:00,acme,,,,,\n",
            ":3: TimeStamp: outside the years 1 to 9999: '0001-01-01T00:00:00+01:00'",
        ),
        (
            "bad-date.csv",
            HEADER + GOOD + "MsgEvent,2019-02-30T00:00:00Z,acme,,,,,\n",
            ":3: TimeStamp: not a valid date and time: '2019-02-30T00:00:00Z'",
        ),
        (
            "no-customer.csv",
            HEADER + GOOD + "MsgEvent,2019-11-25T00:00:00Z,,,,,,\n",
            ":3: CustomerId: required",
        ),
        (
            "no-customer-column.csv",
            "EventName,TimeStamp\nMsgEvent,2019-11-25T00:00:00Z\n",
            ":2: CustomerId: required",
        ),
        ("no-event.csv", HEADER + ",2019-11-25T00:00:00Z,acme,,,,,\n", ":2: EventName: required"),
        (
            "other-event.csv",
            HEADER + GOOD + "CallEvent,2019-11-25T00:00:00Z,acme,,5,,,\n",
            ":3: DtmfInput: not a field of CallEvent",
        ),
        (
            "nul.csv",
            HEADER + GOOD + "MsgEvent,2019-11-25T00:00:00Z,acme,,,,,a\x00b\n",
            ":3: FlowName: contains a NUL",
        ),
        (
            "bad-bool.csv",
            HEADER + GOOD + "MsgEvent,2019-11-25T00:00:00Z,acme,,,yes,,\n",
            ":3: IsTriggerAction: not a boolean",
        ),
        (
            "nan.csv",
            HEADER + GOOD + "CallEvent,2019-11-25T00:00:00Z,acme,,,,nan,\n",
            ":3: Duration: not a finite number",
        ),
        (
            "infinite.csv",
            HEADER + GOOD + "CallEvent,2019-11-25T00:00:00Z,acme,,,,1e999,\n",
            ":3: Duration: not a finite number",
        ),
        (
            "ragged.csv",
            HEADER + GOOD + "MsgEvent,2019-11-25T00:00:00Z,acme\n",
            ":3: expected 8 fields, found 3",
        ),
        (
            "after-multiline.csv",
            HEADER + 'MsgEvent,2019-11-25T00:00:00Z,acme,,,,,"a\nb"\n\n' + "MsgEvent,x,acme,,,,,\n",
            ":5: TimeStamp:",
        ),
        (
            "not-utf8.csv",
            (HEADER + GOOD).encode() + b"MsgEvent,2019-11-25T00:00:00Z,acme,,,,,\xff\n",
            ":3: not valid UTF-8",
        ),
        (
            "bad-int.csv.gz",
            HEADER + GOOD + GOOD + "MsgEvent,2019-11-25T00:00:00Z,acme,1.5,,,,\n",
            ":4: Segments: not an integer",
        ),
    ],
)
def test_bad_csv_is_rejected_at_its_line(
    tmp_path: Path, name: str, content: str | bytes, expected: str
) -> None:
    path = write(tmp_path, name, content)
    assert rejection(path).startswith(f"{path}{expected}")


MSG = {"EventName": "MsgEvent", "TimeStamp": "2019-11-25T00:00:00Z", "CustomerId": "acme"}


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([MSG, "{not json"], ":2: not valid JSON"),
        ([MSG, "[1, 2]"], ":2: expected a JSON object, found an array"),
        ([MSG, {**MSG, "FlowName": 7}], ":2: FlowName: expected a string, found 7"),
        ([MSG, {**MSG, "Segments": 1.5}], ":2: Segments: expected an integer, found 1.5"),
        ([MSG, {**MSG, "Segments": [1]}], ":2: Segments: expected an integer, found [1]"),
        ([MSG, {**MSG, "Colour": "red"}], ":2: Colour: not a field of any event"),
        (
            [MSG, '{"EventName": "MsgEvent", "EventName": "CallEvent"}'],
            ":2: EventName: appears more than once",
        ),
        # Strictly typed files go through pyarrow's reader: lines still count blank ones.
        ([MSG, "", {**MSG, "TimeStamp": "yesterday"}], ":3: TimeStamp: not an ISO 8601 timestamp"),
        ([MSG, {**MSG, "EventName": "FaxEvent"}], ":2: EventName: unknown event 'FaxEvent'"),
        ([MSG, {**MSG, "Segments": 2**63}], ":2: Segments: out of the 64-bit integer range"),
        ([MSG, {**MSG, "CustomerId": ""}], ":2: CustomerId: required"),
        ([MSG, {**MSG, "Ani": "+1"}], ":2: Ani: not a field of MsgEvent"),
        ([MSG, {**MSG, "SipResponseCode": "x"}, "{oops"], ":2: SipResponseCode: not an integer"),
    ],
)
def test_bad_ndjson_is_rejected_at_its_line(tmp_path: Path, lines: list[Any], expected: str) -> None:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path = write(tmp_path, "events.ndjson", text)
    assert rejection(path).startswith(f"{path}{expected}")


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"EventName": ["MsgEvent", "MsgEvent", "Fax"]}, ":3: EventName: unknown event 'Fax'"),
        ({"Segments": pa.array([1, 2, 2**63], pa.uint64())}, ":3: Segments: out of the 64-bit integer range"),
        ({"Duration": pa.array([None, None, float("inf")])}, ":3: Duration: not a finite number"),
        (
            {"Segments": pa.array([None, 1.5, None])},
            ":2: Segments: type INTEGER cannot be read from a column of type double",
        ),
        (
            {"Path": pa.array([None, None, ["a"]])},
            ":3: Path: type STRING cannot be read from a column of type list",
        ),
        ({"Colour": ["a", "b", "c"]}, ":1: Colour: not a field of any event"),
        (
            {"TimeStamp": pa.array([0, 10**15, 2**62], pa.timestamp("ms"))},
            ":2: TimeStamp: outside the years 1 to 9999: 1000000000000000 ms from 1970-01-01 (and 1 more",
        ),
    ],
)
def test_bad_parquet_is_rejected_at_its_row(tmp_path: Path, columns: dict[str, Any], expected: str) -> None:
    base = {
        "EventName": ["MsgEvent"] * 3,
        "TimeStamp": pa.array([datetime(2019, 11, 25)] * 3, pa.timestamp("ms")),
        "CustomerId": ["acme"] * 3,
    }
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({**base, **columns}), path)
    assert rejection(path).startswith(f"{path}{expected}")


def test_the_earliest_problem_is_reported_with_the_count(tmp_path: Path) -> None:
    content = (
        HEADER
        + GOOD
        + "MsgEvent,2019-11-25T00:00:00Z,acme,,,,,a\x00\n"
        + "MsgEvent,2019-11-25T00:00:00Z,acme,x,,,,\n"
    )
    path = write(tmp_path, "two.csv", content)
    assert rejection(path) == f"{path}:3: FlowName: contains a NUL character: 'a\\x00' (and 1 more problem)"


def test_unreadable_or_unknown_files_are_rejected(tmp_path: Path) -> None:
    assert rejection(tmp_path / "missing.csv") == f"{tmp_path / 'missing.csv'}: no such file"
    assert "unknown file type" in rejection(write(tmp_path, "events.txt", "x"))
    assert "not a readable Parquet file" in rejection(write(tmp_path, "events.parquet", "not parquet"))
    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(gzip.compress((HEADER + GOOD).encode())[:-12])
    assert rejection(truncated).startswith(f"{truncated}: unreadable file: Compressed file ended")


# -- property: what a CSV writer produces from typed rows reads back as those rows ----------------------

_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\r"), max_size=12
)
_TIMES = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1))


@st.composite
def msg_rows(draw: st.DrawFn) -> dict[str, Any]:
    return row(
        EventName="MsgEvent",
        TimeStamp=draw(_TIMES),
        CustomerId=draw(_TEXT.filter(bool)),
        Carrier=draw(st.none() | _TEXT.filter(bool)),
        Segments=draw(st.none() | st.integers(-(2**63), 2**63 - 1)),
        PassthroughVersion=draw(st.none() | st.integers(0, 10)),
        IsTriggerAction=draw(st.none() | st.booleans()),
    )


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat() + "Z"
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if set(text) & set(',"\n' + string.whitespace) else text


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(msg_rows(), max_size=8))
def test_csv_of_typed_rows_reads_back_unchanged(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]]
) -> None:
    columns = [
        "EventName",
        "TimeStamp",
        "CustomerId",
        "Carrier",
        "Segments",
        "PassthroughVersion",
        "IsTriggerAction",
    ]
    lines = [",".join(columns)] + [",".join(_csv_cell(r[c]) for c in columns) for r in rows]
    path = tmp_path_factory.mktemp("csv") / "rows.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="")

    assert events_file_read(path).to_pylist() == rows


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(msg_rows(), min_size=1, max_size=8))
def test_ndjson_reads_the_same_whether_strictly_typed_or_not(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]]
) -> None:
    """A typed file takes pyarrow's reader, the same file with one value quoted the line-by-line one."""
    documents = [
        {k: (v.isoformat() + "Z" if isinstance(v, datetime) else v) for k, v in r.items() if v is not None}
        for r in rows
    ]
    directory = tmp_path_factory.mktemp("ndjson")
    strict = directory / "strict.ndjson"
    strict.write_text(ndjson(*documents), encoding="utf-8")
    lenient = directory / "lenient.ndjson"
    lenient.write_text(ndjson(*documents, {**documents[0], "PassthroughVersion": "1"}), encoding="utf-8")

    assert events_file_read(strict).to_pylist() == rows
    assert events_file_read(lenient).to_pylist()[:-1] == rows


def test_every_catalog_field_is_a_column() -> None:
    names = set(warehouse_schema().names)
    assert {f for event in catalog().events.values() for f in event.fields} == names
