"""Rows: six slots per session (call, three key presses, message, exit), each slot a full-width table for the
batch; interleaved session by session, then filtered to the slots each session uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from queries.ingest.demo.customers import ACTIONS, Setup
from queries.ingest.demo.draws import SECOND, Draws, arange, below, choose, ms_floor, text_join
from queries.ingest.demo.sessions import Sessions
from queries.ingest.warehouse import warehouse_schema

_CARRIERS = ("Verizon Wireless", "AT&T Mobility", "T-Mobile USA", "US Cellular", "Google Voice")
_DTMF_SOURCES = (("RFC2833", 80), ("INBAND", 12), ("SIPINFO", 8))
_DTMF_ERRORS = ("NoInput", "NoMatch", "MaxAttempts")
_DTMF_FAILURE_RATE = 0.06
_MENU_DIGITS = ("1", "2", "3", "4", "0", "0", "9", "*", "#")  # "0" (an agent, please) twice as likely
_MSG_STATUSES = (("Delivered", 91), ("Undelivered", 4), ("Failed", 3), ("Queued", 2))
_MSG_SEGMENTS = ((1, 70), (2, 22), (3, 8))
_UNDELIVERED_CODES = ("30003", "30005", "30006")
_FAILED_CODES = ("30007", "30008")

# Indexes into ACTIONS.
_CALL_ACTION, _SMS_ACTION, _TRANSFER_ACTION, _EXIT_ACTION = 0, 4, 5, 6
_DTMF_ACTIONS = (1, 2, 3)  # the n-th key press of a session is at the n-th of these

# Row slots of a session, in time order: (event, version, SKU). Slots 1-3 are the key presses.
_SLOTS = (
    ("CallEvent", 3, "SF-VOICE-IN"),
    ("DtmfEvent", 1, "SF-DTMF"),
    ("DtmfEvent", 1, "SF-DTMF"),
    ("DtmfEvent", 1, "SF-DTMF"),
    ("MsgEvent", 2, "SF-MSG-OUT"),
    ("ApplicationExitEvent", 1, "SF-FLOW"),
)


@dataclass(frozen=True, slots=True)
class _Slot:
    exists: pa.Array  # bool per session: does the session have this row?
    time: pa.Array  # microseconds
    action: int  # index into ACTIONS
    values: dict[str, pa.Array]  # the event's own fields


def chunk_table(draws: Draws, sessions: Sessions, setup: Setup) -> pa.Table:
    """One batch of sessions as warehouse rows, session by session, each session's rows in time order."""
    slots = [
        _call_slot(sessions, setup),
        *(_dtmf_slot(draws, sessions, press) for press in range(len(_DTMF_ACTIONS))),
        _msg_slot(draws, sessions, setup),
        _exit_slot(sessions),
    ]
    common = _common_columns(sessions, setup)
    stacked = pa.concat_tables(
        _slot_table(draws, sessions, setup, common, index, slot) for index, slot in enumerate(slots)
    )
    # Row (session i, slot k) is at k * count + i in the stack; rows go out session by session, slot by slot.
    count, width = sessions.count, len(slots)
    position = arange(count * width)
    session = pc.divide(position, width)
    order = pc.add(pc.multiply(pc.subtract(position, pc.multiply(session, width)), count), session)
    exists = pa.concat_arrays([slot.exists for slot in slots])
    return stacked.combine_chunks().take(pc.filter(order, pc.take(exists, order)))


def _common_columns(sessions: Sessions, setup: Setup) -> dict[str, pa.Array]:
    """The common fields that are the same on every row of a session."""
    flow = sessions.flow
    return {
        "HostId": sessions.host,
        "CustomerId": pc.take(setup.customer_id, flow),
        "CustomerName": pc.take(setup.customer_name, flow),
        "Originator": pa.repeat(pa.scalar("Flow"), sessions.count),
        "OriginatorId": pc.take(setup.originator_id, flow),
        "FlowId": pc.take(setup.flow_id, flow),
        "FlowName": pc.take(setup.flow_name, flow),
        "SessionId": sessions.session_id,
        "ApplicationRegion": sessions.region,
        "PassthroughVersion": pc.take(setup.passthrough_version, flow),
        "Passthrough": sessions.passthrough,
    }


def _slot_table(
    draws: Draws, sessions: Sessions, setup: Setup, common: dict[str, pa.Array], index: int, slot: _Slot
) -> pa.Table:
    count = sessions.count
    event, version, sku = _SLOTS[index]
    name, trigger = ACTIONS[slot.action]
    columns = {
        **common,
        **slot.values,
        "EventName": pa.repeat(pa.scalar(event), count),
        "EventVersion": pa.repeat(pa.scalar(version, pa.int64()), count),
        "EventSku": pa.repeat(pa.scalar(sku), count),
        "TimeStamp": _timestamps(slot.time),
        "ActionId": pc.take(setup.action_ids, pc.add(pc.multiply(sessions.flow, len(ACTIONS)), slot.action)),
        "ActionName": pa.repeat(pa.scalar(name), count),
        "IsTriggerAction": pa.repeat(pa.scalar(trigger), count),
        "TransactionId": draws.hex_ids(f"transaction-{index}", count),
    }
    schema = warehouse_schema()
    arrays = [_typed(columns.get(f.name), f.type, count) for f in schema]
    return pa.table(arrays, schema=schema)


def _typed(values: pa.Array | None, arrow_type: pa.DataType, count: int) -> pa.Array:
    if values is None:
        return pa.nulls(count, arrow_type)
    return values if values.type == arrow_type else values.cast(arrow_type)


def _timestamps(micros: pa.Array) -> pa.Array:
    return micros.cast(pa.int64()).cast(pa.timestamp("us"))


def _call_slot(sessions: Sessions, setup: Setup) -> _Slot:
    count = sessions.count
    return _Slot(
        exists=pa.repeat(pa.scalar(True), count),
        time=sessions.started,
        action=_CALL_ACTION,
        values={
            "CallDirection": pa.repeat(pa.scalar("Inbound"), count),
            "Ani": sessions.caller,
            "Dnis": pc.take(setup.number, sessions.flow),
            "StartTime": _timestamps(sessions.started),
            "AnswerTime": _timestamps(sessions.answered_at),
            "EndTime": _timestamps(sessions.ended),
            "Duration": pc.divide(sessions.talk.cast(pa.float64()), float(SECOND)),
            "DisconnectParty": sessions.party,
            "DisconnectReason": sessions.reason,
            "SipResponseCode": sessions.code,
        },
    )


def _dtmf_slot(draws: Draws, sessions: Sessions, press: int) -> _Slot:
    """The `press`-th key press (0-based) of the sessions that have one, spaced evenly through the call."""
    count = sessions.count
    offset = pc.divide(pc.multiply(sessions.talk, press + 1), pc.add(sessions.presses, 1))
    action = _DTMF_ACTIONS[press]
    u = draws.uniform(f"dtmf-{press}-digits", count)
    if action == _DTMF_ACTIONS[0]:
        digits = pc.take(pa.array(_MENU_DIGITS), below(u, len(_MENU_DIGITS)))
    elif action == _DTMF_ACTIONS[1]:
        digits = pc.utf8_lpad(below(u, 100_000_000).cast(pa.string()), 8, "0")
    else:
        digits = pc.take(pa.array(("1", "2")), below(u, 2))
    failed = pc.less(draws.uniform(f"dtmf-{press}-failed", count), _DTMF_FAILURE_RATE)
    error = pc.take(
        pa.array(_DTMF_ERRORS), below(draws.uniform(f"dtmf-{press}-error", count), len(_DTMF_ERRORS))
    )
    return _Slot(
        exists=pc.greater(sessions.presses, press),
        time=pc.add(sessions.answered_at, ms_floor(offset)),
        action=action,
        values={
            "DtmfInput": pc.if_else(failed, None, digits),
            "DtmfSource": choose(draws.uniform(f"dtmf-{press}-source", count), _DTMF_SOURCES),
            "ErrorReason": pc.if_else(failed, error, None),
        },
    )


def _msg_slot(draws: Draws, sessions: Sessions, setup: Setup) -> _Slot:
    """The message the flow sends the caller near the end of the call, in the sessions that send one."""
    count = sessions.count

    def u(name: str) -> pa.Array:
        return draws.uniform(f"msg-{name}", count)

    mms = pc.less(u("mms"), 0.12)
    status = choose(u("status"), _MSG_STATUSES)
    undelivered = pc.take(pa.array(_UNDELIVERED_CODES), below(u("undelivered-code"), len(_UNDELIVERED_CODES)))
    failed = pc.take(pa.array(_FAILED_CODES), below(u("failed-code"), len(_FAILED_CODES)))
    error = pc.if_else(
        pc.equal(status, "Undelivered"), undelivered, pc.if_else(pc.equal(status, "Failed"), failed, None)
    )
    return _Slot(
        exists=sessions.texted,
        time=pc.add(sessions.answered_at, ms_floor(pc.divide(pc.multiply(sessions.talk, 9), 10))),
        action=_SMS_ACTION,
        values={
            "MsgDirection": pa.repeat(pa.scalar("Outbound"), count),
            "From": pc.take(setup.number, sessions.flow),
            "To": sessions.caller,
            "MessageType": pc.if_else(mms, "MMS", "SMS"),
            "MsgStatus": status,
            "Segments": pc.if_else(mms, 1, choose(u("segments"), _MSG_SEGMENTS, pa.int64())),
            "Carrier": pc.take(pa.array(_CARRIERS), below(u("carrier"), len(_CARRIERS))),
            "ErrorCode": error,
        },
    )


def _exit_slot(sessions: Sessions) -> _Slot:
    presses = sessions.presses

    def step(taken: pa.Array, action: int) -> pa.Array:
        return pc.if_else(taken, ">" + ACTIONS[action][0], "")

    path = text_join(
        ACTIONS[_CALL_ACTION][0],
        *(step(pc.greater(presses, press), action) for press, action in enumerate(_DTMF_ACTIONS)),
        step(sessions.texted, _SMS_ACTION),
        step(pc.equal(sessions.exit_reason, "Transfer"), _TRANSFER_ACTION),
        ">" + ACTIONS[_EXIT_ACTION][0],
    )
    return _Slot(
        exists=pa.repeat(pa.scalar(True), sessions.count),
        time=sessions.closed,
        action=_EXIT_ACTION,
        values={
            "StartTime": _timestamps(sessions.started),
            "EndTime": _timestamps(sessions.closed),
            "Path": path,
            "ExitReason": sessions.exit_reason,
        },
    )
