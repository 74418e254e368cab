"""The demo generator: deterministic, realistic, and loadable as it is."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from queries.ingest import (
    DEMO_CUSTOMER_KEYS,
    SEED_FLOW_ID,
    demo_batches,
    demo_customer_keys,
    demo_customers,
    demo_table,
    events_file_read,
    warehouse_schema,
)

HEX24 = re.compile(r"^[0-9a-f]{24}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
E164 = re.compile(r"^\+1[2-9][0-9]{2}[2-9][0-9]{6}$")


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return demo_table(customers=3, sessions=400, seed=11).to_pylist()


def sessions_of(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["SessionId"]].append(row)
    return grouped


def test_same_seed_same_rows_whatever_the_batch_size() -> None:
    whole = demo_table(sessions=300, seed=5)
    batched = pa.concat_tables(demo_batches(sessions=300, seed=5, chunk_sessions=7))

    assert whole.schema == warehouse_schema()
    assert whole.equals(batched)
    assert whole.equals(demo_table(sessions=300, seed=5))


def test_another_seed_gives_other_rows() -> None:
    assert not demo_table(sessions=50, seed=1).equals(demo_table(sessions=50, seed=2))


def test_zero_sessions_is_an_empty_table() -> None:
    table = demo_table(sessions=0)
    assert table.num_rows == 0 and table.schema == warehouse_schema()


def test_every_session_is_a_time_ordered_call_then_an_exit(rows: list[dict[str, Any]]) -> None:
    sessions = sessions_of(rows)
    assert len(sessions) == 400
    for events in sessions.values():
        names = [e["EventName"] for e in events]
        assert names[0] == "CallEvent" and names[-1] == "ApplicationExitEvent"
        assert names.count("CallEvent") == 1 and names.count("ApplicationExitEvent") == 1
        assert set(names[1:-1]) <= {"DtmfEvent", "MsgEvent"}
        times = [e["TimeStamp"] for e in events]
        assert times == sorted(times) and len(set(times)) == len(times)
        for common in ("CustomerId", "CustomerName", "FlowId", "FlowName", "HostId", "Passthrough"):
            assert len({e[common] for e in events}) == 1, common


def test_calls_hang_together(rows: list[dict[str, Any]]) -> None:
    for session in sessions_of(rows).values():
        call, exit_ = session[0], session[-1]
        answered = call["SipResponseCode"] == 200
        assert call["SipResponseCode"] in {200, 486, 487, 480, 503}
        assert (call["AnswerTime"] is not None) == answered
        assert call["CallDirection"] == "Inbound"
        assert call["StartTime"] == call["TimeStamp"] == exit_["StartTime"]
        if answered:
            assert call["AnswerTime"] + timedelta(seconds=call["Duration"]) == call["EndTime"]
        else:
            assert call["Duration"] == 0.0 and len(session) == 2
            assert exit_["ExitReason"] in {"Hangup", "Error"}
        assert exit_["EndTime"] == exit_["TimeStamp"] > call["EndTime"]
        assert exit_["ExitReason"] in {"Normal", "Hangup", "Error", "Timeout", "Transfer"}
        assert exit_["Path"].startswith("Inbound Call>") and exit_["Path"].endswith(">End Flow")
        assert ("Send SMS" in exit_["Path"]) == any(e["EventName"] == "MsgEvent" for e in session)


def test_fields_are_realistic(rows: list[dict[str, Any]]) -> None:
    by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_event[row["EventName"]].append(row)
        assert HEX32.match(row["SessionId"]) and HEX32.match(row["TransactionId"])
        assert (
            HEX24.match(row["FlowId"]) and HEX24.match(row["ActionId"]) and HEX24.match(row["OriginatorId"])
        )
        assert row["ApplicationRegion"] in {"us-east", "us-west", "us-central", "eu-west", "ap-southeast"}
        assert row["IsTriggerAction"] == (row["EventName"] == "CallEvent")
    assert len({r["TransactionId"] for r in rows}) == len(rows)
    assert set(by_event) == {"CallEvent", "DtmfEvent", "MsgEvent", "ApplicationExitEvent"}
    for call in by_event["CallEvent"]:
        assert E164.match(call["Ani"]) and E164.match(call["Dnis"])
    for dtmf in by_event["DtmfEvent"]:
        assert dtmf["DtmfSource"] in {"RFC2833", "INBAND", "SIPINFO"}
        assert (dtmf["DtmfInput"] is None) == (dtmf["ErrorReason"] is not None)
    assert any(d["DtmfInput"] == "0" for d in by_event["DtmfEvent"])  # the seed document's scope example
    for msg in by_event["MsgEvent"]:
        assert msg["MsgDirection"] == "Outbound" and E164.match(msg["From"]) and E164.match(msg["To"])
        assert msg["MessageType"] in {"SMS", "MMS"} and 1 <= msg["Segments"] <= 3
        assert (msg["ErrorCode"] is not None) == (msg["MsgStatus"] in {"Failed", "Undelivered"})


def test_sessions_spread_over_the_window_from_the_start_date() -> None:
    table = demo_table(customers=1, sessions=200, start=date(2020, 3, 1), days=3)
    starts = [r["StartTime"] for r in table.to_pylist() if r["EventName"] == "CallEvent"]
    assert min(starts) >= datetime(2020, 3, 1) and max(starts) < datetime(2020, 3, 4)
    assert min(starts) < datetime(2020, 3, 1, 6) and max(starts) > datetime(2020, 3, 3, 18)


def test_customer_keys_default_and_override() -> None:
    assert demo_customer_keys(3) == ("acme", "globex", "initech")
    assert demo_customer_keys(12)[:10] == DEMO_CUSTOMER_KEYS
    assert demo_customer_keys(12)[10:] == ("customer11", "customer12")
    table = demo_table(customers=["north", "south"], sessions=60)
    assert set(table.column("CustomerId").to_pylist()) == {"north", "south"}
    with pytest.raises(ValueError, match="distinct"):
        demo_table(customers=["a", "a"], sessions=1)


def test_every_customer_runs_the_seed_documents_flow_in_its_window(rows: list[dict[str, Any]]) -> None:
    window = (datetime(2019, 11, 25), datetime(2019, 11, 26))
    exits = [
        r
        for r in rows
        if r["EventName"] == "ApplicationExitEvent" and window[0] <= r["TimeStamp"] <= window[1]
    ]
    assert {r["CustomerId"] for r in exits if r["FlowId"] == SEED_FLOW_ID} == {"acme", "globex", "initech"}
    assert all(customer.flows[0].flow_id == SEED_FLOW_ID for customer in demo_customers(DEMO_CUSTOMER_KEYS))


def test_a_customer_set_up_does_not_depend_on_the_seed() -> None:
    one = demo_table(customers=1, sessions=100, seed=1).column("FlowId").unique().to_pylist()
    two = demo_table(customers=1, sessions=100, seed=2).column("FlowId").unique().to_pylist()
    assert sorted(one) == sorted(two)


def test_demo_rows_pass_the_loader_checks_unchanged(tmp_path: Path) -> None:
    table = demo_table(sessions=150, seed=4)
    path = tmp_path / "demo.parquet"
    pq.write_table(table, path)
    assert events_file_read(path).equals(table)
