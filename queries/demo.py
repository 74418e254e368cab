"""Deterministic demo data: realistic contact-center sessions as Arrow tables shaped like the warehouse.

A session is one caller's trip through one SmartFlow: a `CallEvent` when the call arrives, up to three
`DtmfEvent`s (main menu, account number, confirmation) while it is up, perhaps a `MsgEvent` (an SMS or MMS the
flow sends the caller), and always an `ApplicationExitEvent` closing the flow. A session's events share its
SessionId and FlowId and are ordered by TimeStamp. Session start times spread evenly over the days asked for,
so batches come out roughly in time order.

Same arguments, same rows, byte for byte (whatever `chunk_sessions`: how sessions are cut into batches does
not change them). Every random quantity has its own `random.Random` stream, seeded by a string (hashed with
SHA-512 by the standard library, so independent of PYTHONHASHSEED), and each session takes exactly one value
from each stream. A customer's set-up (flows, numbers, hosts) is seeded by its key alone, so it is the same
whatever the seed; the seed drives the sessions.

The first flow of every customer has FlowId `SEED_FLOW_ID`, the one the seed document's example queries filter
on (over 2019-11-25..26, the default window), so those examples return rows whichever demo customer runs them.

Speed: generation is vectorised. Random bytes become Arrow arrays; a session has six row slots (call, three
key presses, message, exit), each built column-wise for a whole batch, then interleaved and filtered to the
slots a session uses. A million rows take about a second.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from queries.loading import warehouse_schema

SEED_FLOW_ID = "5dcf48b453e0ab04386da7d1"
DEFAULT_START = date(2019, 11, 25)
DEFAULT_DAYS = 2
DEMO_CUSTOMER_KEYS = (
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "soylent",
    "tyrell",
)
_CUSTOMER_NAMES = {
    "acme": "Acme Corporation",
    "globex": "Globex Corporation",
    "initech": "Initech",
    "umbrella": "Umbrella Health",
    "hooli": "Hooli",
    "stark": "Stark Industries",
    "wayne": "Wayne Enterprises",
    "wonka": "Wonka Confections",
    "soylent": "Soylent Foods",
    "tyrell": "Tyrell Corporation",
}
_REGIONS = ("us-east", "us-west", "us-central", "eu-west", "ap-southeast")
_AREA_CODES = ("212", "305", "312", "404", "415", "469", "512", "617", "702", "720", "813", "972")
_FLOW_NAMES = ("Appointment Reminders", "Billing Line", "After Hours", "Order Status", "Customer Survey")
_HOSTS_PER_CUSTOMER = 3
_CARRIERS = ("Verizon Wireless", "AT&T Mobility", "T-Mobile USA", "US Cellular", "Google Voice")
_CAMPAIGNS = ("winter-promo", "renewals", "support", "collections", "onboarding")

# Call outcomes, by weight: SIP code, answered, who hangs up and why when unanswered, how the flow then exits.
_OUTCOME_WEIGHTS = (86, 6, 5, 2, 1)
_OUTCOME_CODES = (200, 486, 487, 480, 503)
_OUTCOME_ANSWERED = (True, False, False, False, False)
_OUTCOME_PARTIES = (None, "Callee", "Caller", "System", "System")
_OUTCOME_REASONS = (
    "Normal Clearing",
    "User Busy",
    "Request Terminated",
    "Temporarily Unavailable",
    "Service Unavailable",
)
_OUTCOME_EXITS = (None, "Hangup", "Hangup", "Error", "Error")
_ANSWERED_PARTIES = (("Caller", 62), ("Callee", 23), ("System", 15))
_ANSWERED_EXITS = (("Normal", 72), ("Hangup", 12), ("Transfer", 8), ("Timeout", 5), ("Error", 3))
_PRESSES = ((0, 15), (1, 45), (2, 30), (3, 10))
_DTMF_SOURCES = (("RFC2833", 80), ("INBAND", 12), ("SIPINFO", 8))
_DTMF_ERRORS = ("NoInput", "NoMatch", "MaxAttempts")
_DTMF_FAILURE_RATE = 0.06
_MENU_DIGITS = ("1", "2", "3", "4", "0", "0", "9", "*", "#")  # "0" (an agent, please) twice as likely
_MSG_STATUSES = (("Delivered", 91), ("Undelivered", 4), ("Failed", 3), ("Queued", 2))
_MSG_SEGMENTS = ((1, 70), (2, 22), (3, 8))
_UNDELIVERED_CODES = ("30003", "30005", "30006")
_FAILED_CODES = ("30007", "30008")

# A flow's actions (name, is it the trigger); every flow has each, with its own ActionId.
_ACTIONS = (
    ("Inbound Call", True),
    ("Main Menu", False),
    ("Account Number", False),
    ("Confirm", False),
    ("Send SMS", False),
    ("Transfer To Agent", False),
    ("End Flow", False),
)
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
_MSG_SLOT = 4

_MS = 1_000  # microseconds
_S = 1_000_000


@dataclass(frozen=True, slots=True)
class DemoFlow:
    flow_id: str
    name: str
    number: str  # the flow's phone number: the Dnis of its calls, the From of its messages
    originator_id: str
    passthrough_version: int
    sms_rate: float
    action_ids: tuple[str, ...]  # one per _ACTIONS entry


@dataclass(frozen=True, slots=True)
class DemoCustomer:
    key: str
    name: str
    region: str
    hosts: tuple[str, ...]
    flows: tuple[DemoFlow, ...]  # the first is the main IVR, FlowId SEED_FLOW_ID


def demo_customer_keys(count: int) -> tuple[str, ...]:
    """The first `count` demo keys: DEMO_CUSTOMER_KEYS, then `customer11`, `customer12`, ..."""
    if count < 1:
        raise ValueError("at least one customer is needed")
    extra = tuple(f"customer{n}" for n in range(len(DEMO_CUSTOMER_KEYS) + 1, count + 1))
    return (DEMO_CUSTOMER_KEYS + extra)[:count]


def demo_customers(keys: Sequence[str]) -> tuple[DemoCustomer, ...]:
    """Each customer's set-up; a function of its key (and, for the home region, its position) only."""
    return tuple(_customer(index, key) for index, key in enumerate(keys))


def _customer(index: int, key: str) -> DemoCustomer:
    rng = random.Random(f"insights-demo-customer:{key}")
    region = _REGIONS[index % len(_REGIONS)]
    hosts = tuple(f"sf-{region}-{rng.randrange(1, 40):02d}" for _ in range(_HOSTS_PER_CUSTOMER))
    names = ["Main IVR", *rng.sample(_FLOW_NAMES, rng.randint(2, 4))]
    flows = tuple(
        DemoFlow(
            flow_id=SEED_FLOW_ID if position == 0 else _random_hex(rng, 24),
            name=name,
            number=f"+1{rng.choice(_AREA_CODES)}{rng.randrange(200, 1000)}{rng.randrange(10_000):04d}",
            originator_id=_random_hex(rng, 24),
            passthrough_version=rng.choice((1, 1, 2)),
            sms_rate=0.7 if name == "Appointment Reminders" else 0.2,
            action_ids=tuple(_random_hex(rng, 24) for _ in _ACTIONS),
        )
        for position, name in enumerate(names)
    )
    name = _CUSTOMER_NAMES.get(key, f"{key.title()} Inc.")
    return DemoCustomer(key=key, name=name, region=region, hosts=hosts, flows=flows)


def _random_hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def demo_batches(
    *,
    customers: int | Sequence[str] = 3,
    sessions: int,
    seed: int = 0,
    start: date | datetime = DEFAULT_START,
    days: int = DEFAULT_DAYS,
    chunk_sessions: int = 50_000,
) -> Iterator[pa.Table]:
    """Demo rows, `chunk_sessions` sessions per table, each with exactly `loading.warehouse_schema()`.

    `customers` is a count (keys from `demo_customer_keys`) or the keys themselves. `start` (a date is its
    midnight UTC; an aware datetime is converted to UTC) begins the `days` over which sessions spread.
    """
    if sessions < 0 or days < 1 or chunk_sessions < 1:
        raise ValueError("sessions must be at least 0; days and chunk_sessions at least 1")
    keys = demo_customer_keys(customers) if isinstance(customers, int) else tuple(customers)
    if not keys or len(set(keys)) != len(keys):
        raise ValueError("customer keys must be distinct, and there must be at least one")
    setup = _Setup(demo_customers(keys))
    draws = _Draws(seed)
    window = _Window(origin=_epoch_us(start), span=days * 86_400 * _S, sessions=sessions)
    for first in range(0, sessions, chunk_sessions):
        count = min(chunk_sessions, sessions - first)
        yield _chunk_table(draws, _Sessions.draw(draws, setup, window, first, count), setup)


def demo_table(
    *,
    customers: int | Sequence[str] = 3,
    sessions: int,
    seed: int = 0,
    start: date | datetime = DEFAULT_START,
    days: int = DEFAULT_DAYS,
) -> pa.Table:
    """All of `demo_batches(...)` as one table (an empty one for zero sessions)."""
    tables = list(demo_batches(customers=customers, sessions=sessions, seed=seed, start=start, days=days))
    return pa.concat_tables(tables) if tables else warehouse_schema().empty_table()


def _epoch_us(start: date | datetime) -> int:
    if isinstance(start, datetime):
        moment = start.astimezone(UTC).replace(tzinfo=None) if start.tzinfo else start
    else:
        moment = datetime(start.year, start.month, start.day)
    return (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)


# ------------------------------------------------------------------------------------------------------------
# Randomness: one stream per quantity, so a session's values do not depend on where a batch starts.


class _Draws:
    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._streams: dict[str, random.Random] = {}

    def _stream(self, name: str) -> random.Random:
        if name not in self._streams:
            self._streams[name] = random.Random(f"insights-demo:{self._seed}:{name}")
        return self._streams[name]

    def uniform(self, name: str, count: int) -> pa.Array:
        """`count` values in [0, 1), with 32 bits of resolution."""
        words = pa.Array.from_buffers(
            pa.uint32(), count, [None, pa.py_buffer(self._stream(name).randbytes(4 * count))]
        )
        return pc.divide(words.cast(pa.float64()), float(2**32))

    def hex_ids(self, name: str, count: int, digits: int = 32) -> pa.Array:
        """`count` random lowercase hex strings of `digits` digits (digits even)."""
        text = self._stream(name).randbytes(count * digits // 2).hex().encode("ascii")
        offsets = pc.multiply(_arange(count + 1), digits).cast(pa.int32())
        return pa.Array.from_buffers(pa.string(), count, [None, offsets.buffers()[1], pa.py_buffer(text)])


def _arange(count: int, start: int = 0) -> pa.Array:
    """start, start+1, ... (count values) as int64, without a Python loop."""
    return pc.add(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), count)), start - 1)


def _below(u: pa.Array, n: int | pa.Array) -> pa.Array:
    """floor(u * n): an index in [0, n) from a uniform draw."""
    return pc.floor(pc.multiply(u, pc.cast(n, pa.float64()) if isinstance(n, pa.Array) else float(n))).cast(
        pa.int64()
    )


def _pick(u: pa.Array, weights: Sequence[int]) -> pa.Array:
    """The index of the weighted choice each uniform draw lands on."""
    total = sum(weights)
    index = pa.repeat(pa.scalar(0, pa.int64()), len(u))
    running = 0
    for weight in weights[:-1]:
        running += weight
        index = pc.add(index, pc.greater_equal(u, running / total).cast(pa.int64()))
    return index


def _choose(
    u: pa.Array, choices: Sequence[tuple[Any, int]], arrow_type: pa.DataType | None = None
) -> pa.Array:
    return pc.take(pa.array([value for value, _ in choices], arrow_type), _pick(u, [w for _, w in choices]))


def _join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation (NULL if any part is NULL)."""
    return pc.binary_join_element_wise(*parts, "")


def _ms(micros: pa.Array) -> pa.Array:
    """Rounded down to the millisecond, as the platform records times."""
    return pc.multiply(pc.divide(micros, _MS), _MS)


# ------------------------------------------------------------------------------------------------------------
# The customers' set-up as arrays, and the window the sessions spread over.


class _Setup:
    def __init__(self, customers: tuple[DemoCustomer, ...]) -> None:
        flows = [(index, flow) for index, customer in enumerate(customers) for flow in customer.flows]
        self.customer_count = len(customers)
        self.flow_counts = pa.array([len(c.flows) for c in customers], pa.int64())
        self.flow_offsets = pa.array(
            [sum(len(c.flows) for c in customers[:index]) for index in range(len(customers))], pa.int64()
        )
        self.region = pa.array([c.region for c in customers])
        self.hosts = pa.array([host for c in customers for host in c.hosts])
        self.customer_id = pa.array([customers[index].key for index, _ in flows])
        self.customer_name = pa.array([customers[index].name for index, _ in flows])
        self.flow_customer = pa.array([index for index, _ in flows], pa.int64())
        self.flow_id = pa.array([flow.flow_id for _, flow in flows])
        self.flow_name = pa.array([flow.name for _, flow in flows])
        self.number = pa.array([flow.number for _, flow in flows])
        self.originator_id = pa.array([flow.originator_id for _, flow in flows])
        self.passthrough_version = pa.array([flow.passthrough_version for _, flow in flows], pa.int64())
        self.sms_rate = pa.array([flow.sms_rate for _, flow in flows], pa.float64())
        # ActionId of (flow, action) at flow * len(_ACTIONS) + action.
        self.action_ids = pa.array([action for _, flow in flows for action in flow.action_ids])


@dataclass(frozen=True, slots=True)
class _Window:
    origin: int  # microseconds since the epoch
    span: int  # microseconds
    sessions: int  # in the whole run: session n starts in the n-th equal slot of the span


# ------------------------------------------------------------------------------------------------------------
# Sessions, column-wise: every per-session value of one batch.


@dataclass(frozen=True, slots=True)
class _Sessions:
    count: int
    flow: pa.Array  # global flow index
    session_id: pa.Array
    host: pa.Array
    region: pa.Array
    passthrough: pa.Array
    caller: pa.Array
    started: pa.Array  # microseconds
    code: pa.Array
    answered: pa.Array
    answered_at: pa.Array  # NULL when unanswered
    talk: pa.Array  # microseconds
    ended: pa.Array
    party: pa.Array
    reason: pa.Array
    presses: pa.Array  # 0..3 key presses
    texted: pa.Array  # whether the flow sent a message
    exit_reason: pa.Array
    closed: pa.Array  # when the flow exits

    @classmethod
    def draw(cls, draws: _Draws, setup: _Setup, window: _Window, first: int, count: int) -> _Sessions:
        def u(name: str) -> pa.Array:
            return draws.uniform(name, count)

        customer = _below(u("customer"), setup.customer_count)
        # The customer's main IVR (the seed document's FlowId) takes the largest share of its calls.
        local = pc.if_else(
            pc.less(u("main-flow"), 0.4), 0, _below(u("flow"), pc.take(setup.flow_counts, customer))
        )
        flow = pc.add(pc.take(setup.flow_offsets, customer), local)
        host = pc.take(setup.hosts, pc.add(pc.multiply(customer, _HOSTS_PER_CUSTOMER), _below(u("host"), 3)))
        elsewhere = pc.take(pa.array(_REGIONS), _below(u("other-region"), len(_REGIONS)))
        region = pc.if_else(pc.less(u("home-region"), 0.9), pc.take(setup.region, customer), elsewhere)
        passthrough = _join(
            '{"campaign":"',
            pc.take(pa.array(_CAMPAIGNS), _below(u("campaign"), len(_CAMPAIGNS))),
            '","crmId":"',
            pc.add(_below(u("crm-id"), 900_000), 100_000).cast(pa.string()),
            '"}',
        )
        passthrough = pc.if_else(pc.less(u("passthrough"), 0.7), passthrough, None)
        caller = _join(
            "+1",
            pc.take(pa.array(_AREA_CODES), _below(u("caller-area"), len(_AREA_CODES))),
            pc.add(_below(u("caller-exchange"), 800), 200).cast(pa.string()),
            pc.utf8_lpad(_below(u("caller-line"), 10_000).cast(pa.string()), 4, "0"),
        )
        position = pc.add(_arange(count, first).cast(pa.float64()), u("start"))
        slot = pc.divide(pc.multiply(position, window.span), window.sessions)
        started = pc.add(_ms(pc.floor(slot).cast(pa.int64())), window.origin)

        outcome = _pick(u("outcome"), _OUTCOME_WEIGHTS)
        answered = pc.take(pa.array(_OUTCOME_ANSWERED), outcome)
        ring = pc.multiply(pc.add(_below(u("ring"), 7_500), 500), _MS)
        # Talk time: exponential, mean 90 s, plus 4 s; at most 30 minutes; none when unanswered.
        exponential = pc.multiply(pc.negate(pc.ln(pc.subtract(1.0, u("talk")))), 90.0)
        talk = _ms(pc.floor(pc.multiply(pc.add(exponential, 4.0), _S)).cast(pa.int64()))
        talk = pc.min_element_wise(talk, 1_800 * _S)
        talk = pc.if_else(answered, talk, 0)
        answered_at = pc.if_else(answered, pc.add(started, ring), None)
        ended = pc.add(pc.add(started, ring), talk)
        party = pc.if_else(
            answered,
            _choose(u("party"), _ANSWERED_PARTIES),
            pc.take(pa.array(_OUTCOME_PARTIES, pa.string()), outcome),
        )
        presses = pc.if_else(answered, _choose(u("presses"), _PRESSES, pa.int64()), 0)
        texted = pc.and_(answered, pc.less(u("texted"), pc.take(setup.sms_rate, flow)))
        exit_reason = pc.if_else(
            answered,
            _choose(u("exit"), _ANSWERED_EXITS),
            pc.take(pa.array(_OUTCOME_EXITS, pa.string()), outcome),
        )
        closed = pc.add(ended, pc.multiply(pc.add(_below(u("exit-delay"), 750), 150), _MS))
        return cls(
            count=count,
            flow=flow,
            session_id=draws.hex_ids("session-id", count),
            host=host,
            region=region,
            passthrough=passthrough,
            caller=caller,
            started=started,
            code=pc.take(pa.array(_OUTCOME_CODES, pa.int64()), outcome),
            answered=answered,
            answered_at=answered_at,
            talk=talk,
            ended=ended,
            party=party,
            reason=pc.take(pa.array(_OUTCOME_REASONS), outcome),
            presses=presses,
            texted=texted,
            exit_reason=exit_reason,
            closed=closed,
        )


# ------------------------------------------------------------------------------------------------------------
# Rows: six slots per session, each slot a full-width table for the batch; interleaved, then filtered.


@dataclass(frozen=True, slots=True)
class _Slot:
    exists: pa.Array  # bool per session: does the session have this row?
    time: pa.Array  # microseconds
    action: int  # index into _ACTIONS
    values: dict[str, pa.Array]  # the event's own fields


def _chunk_table(draws: _Draws, sessions: _Sessions, setup: _Setup) -> pa.Table:
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
    position = _arange(count * width)
    session = pc.divide(position, width)
    order = pc.add(pc.multiply(pc.subtract(position, pc.multiply(session, width)), count), session)
    exists = pa.concat_arrays([slot.exists for slot in slots])
    return stacked.combine_chunks().take(pc.filter(order, pc.take(exists, order)))


def _common_columns(sessions: _Sessions, setup: _Setup) -> dict[str, pa.Array]:
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
    draws: _Draws, sessions: _Sessions, setup: _Setup, common: dict[str, pa.Array], index: int, slot: _Slot
) -> pa.Table:
    count = sessions.count
    event, version, sku = _SLOTS[index]
    name, trigger = _ACTIONS[slot.action]
    columns = {
        **common,
        **slot.values,
        "EventName": pa.repeat(pa.scalar(event), count),
        "EventVersion": pa.repeat(pa.scalar(version, pa.int64()), count),
        "EventSku": pa.repeat(pa.scalar(sku), count),
        "TimeStamp": _timestamps(slot.time),
        "ActionId": pc.take(setup.action_ids, pc.add(pc.multiply(sessions.flow, len(_ACTIONS)), slot.action)),
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


def _call_slot(sessions: _Sessions, setup: _Setup) -> _Slot:
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
            "Duration": pc.divide(sessions.talk.cast(pa.float64()), float(_S)),
            "DisconnectParty": sessions.party,
            "DisconnectReason": sessions.reason,
            "SipResponseCode": sessions.code,
        },
    )


def _dtmf_slot(draws: _Draws, sessions: _Sessions, press: int) -> _Slot:
    """The `press`-th key press (0-based) of the sessions that have one, spaced evenly through the call."""
    count = sessions.count
    offset = pc.divide(pc.multiply(sessions.talk, press + 1), pc.add(sessions.presses, 1))
    action = _DTMF_ACTIONS[press]
    u = draws.uniform(f"dtmf-{press}-digits", count)
    if action == _DTMF_ACTIONS[0]:
        digits = pc.take(pa.array(_MENU_DIGITS), _below(u, len(_MENU_DIGITS)))
    elif action == _DTMF_ACTIONS[1]:
        digits = pc.utf8_lpad(_below(u, 100_000_000).cast(pa.string()), 8, "0")
    else:
        digits = pc.take(pa.array(("1", "2")), _below(u, 2))
    failed = pc.less(draws.uniform(f"dtmf-{press}-failed", count), _DTMF_FAILURE_RATE)
    error = pc.take(
        pa.array(_DTMF_ERRORS), _below(draws.uniform(f"dtmf-{press}-error", count), len(_DTMF_ERRORS))
    )
    return _Slot(
        exists=pc.greater(sessions.presses, press),
        time=pc.add(sessions.answered_at, _ms(offset)),
        action=action,
        values={
            "DtmfInput": pc.if_else(failed, None, digits),
            "DtmfSource": _choose(draws.uniform(f"dtmf-{press}-source", count), _DTMF_SOURCES),
            "ErrorReason": pc.if_else(failed, error, None),
        },
    )


def _msg_slot(draws: _Draws, sessions: _Sessions, setup: _Setup) -> _Slot:
    """The message the flow sends the caller near the end of the call, in the sessions that send one."""
    count = sessions.count

    def u(name: str) -> pa.Array:
        return draws.uniform(f"msg-{name}", count)

    mms = pc.less(u("mms"), 0.12)
    status = _choose(u("status"), _MSG_STATUSES)
    undelivered = pc.take(
        pa.array(_UNDELIVERED_CODES), _below(u("undelivered-code"), len(_UNDELIVERED_CODES))
    )
    failed = pc.take(pa.array(_FAILED_CODES), _below(u("failed-code"), len(_FAILED_CODES)))
    error = pc.if_else(
        pc.equal(status, "Undelivered"), undelivered, pc.if_else(pc.equal(status, "Failed"), failed, None)
    )
    return _Slot(
        exists=sessions.texted,
        time=pc.add(sessions.answered_at, _ms(pc.divide(pc.multiply(sessions.talk, 9), 10))),
        action=_SMS_ACTION,
        values={
            "MsgDirection": pa.repeat(pa.scalar("Outbound"), count),
            "From": pc.take(setup.number, sessions.flow),
            "To": sessions.caller,
            "MessageType": pc.if_else(mms, "MMS", "SMS"),
            "MsgStatus": status,
            "Segments": pc.if_else(mms, 1, _choose(u("segments"), _MSG_SEGMENTS, pa.int64())),
            "Carrier": pc.take(pa.array(_CARRIERS), _below(u("carrier"), len(_CARRIERS))),
            "ErrorCode": error,
        },
    )


def _exit_slot(sessions: _Sessions) -> _Slot:
    presses = sessions.presses

    def step(taken: pa.Array, action: int) -> pa.Array:
        return pc.if_else(taken, ">" + _ACTIONS[action][0], "")

    path = _join(
        _ACTIONS[_CALL_ACTION][0],
        *(step(pc.greater(presses, press), action) for press, action in enumerate(_DTMF_ACTIONS)),
        step(sessions.texted, _SMS_ACTION),
        step(pc.equal(sessions.exit_reason, "Transfer"), _TRANSFER_ACTION),
        ">" + _ACTIONS[_EXIT_ACTION][0],
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
