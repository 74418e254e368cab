"""Sessions, column-wise: every per-session value of one batch (who calls which flow when, how the call ends,
how many keys are pressed, whether a message is sent).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from queries.ingest.demo.customers import AREA_CODES, HOSTS_PER_CUSTOMER, REGIONS, Setup
from queries.ingest.demo.draws import (
    MILLISECOND,
    SECOND,
    Draws,
    arange,
    below,
    choose,
    ms_floor,
    pick,
    text_join,
)

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


@dataclass(frozen=True, slots=True)
class Window:
    """The time the sessions of the whole run spread over."""

    origin: int  # microseconds since the epoch
    span: int  # microseconds
    sessions: int  # in the whole run: session n starts in the n-th equal slot of the span


@dataclass(frozen=True, slots=True)
class Sessions:
    """Every per-session value of one batch, an array each (`draw` makes them)."""

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
    def draw(cls, draws: Draws, setup: Setup, window: Window, first: int, count: int) -> Sessions:
        def u(name: str) -> pa.Array:
            return draws.uniform(name, count)

        customer = below(u("customer"), setup.customer_count)
        # The customer's main IVR (the seed document's FlowId) takes the largest share of its calls.
        local = pc.if_else(
            pc.less(u("main-flow"), 0.4), 0, below(u("flow"), pc.take(setup.flow_counts, customer))
        )
        flow = pc.add(pc.take(setup.flow_offsets, customer), local)
        host = pc.take(setup.hosts, pc.add(pc.multiply(customer, HOSTS_PER_CUSTOMER), below(u("host"), 3)))
        elsewhere = pc.take(pa.array(REGIONS), below(u("other-region"), len(REGIONS)))
        region = pc.if_else(pc.less(u("home-region"), 0.9), pc.take(setup.region, customer), elsewhere)
        passthrough = text_join(
            '{"campaign":"',
            pc.take(pa.array(_CAMPAIGNS), below(u("campaign"), len(_CAMPAIGNS))),
            '","crmId":"',
            pc.add(below(u("crm-id"), 900_000), 100_000).cast(pa.string()),
            '"}',
        )
        passthrough = pc.if_else(pc.less(u("passthrough"), 0.7), passthrough, None)
        caller = text_join(
            "+1",
            pc.take(pa.array(AREA_CODES), below(u("caller-area"), len(AREA_CODES))),
            pc.add(below(u("caller-exchange"), 800), 200).cast(pa.string()),
            pc.utf8_lpad(below(u("caller-line"), 10_000).cast(pa.string()), 4, "0"),
        )
        position = pc.add(arange(count, first).cast(pa.float64()), u("start"))
        slot = pc.divide(pc.multiply(position, window.span), window.sessions)
        started = pc.add(ms_floor(pc.floor(slot).cast(pa.int64())), window.origin)

        outcome = pick(u("outcome"), _OUTCOME_WEIGHTS)
        answered = pc.take(pa.array(_OUTCOME_ANSWERED), outcome)
        ring = pc.multiply(pc.add(below(u("ring"), 7_500), 500), MILLISECOND)
        # Talk time: exponential, mean 90 s, plus 4 s; at most 30 minutes; none when unanswered.
        exponential = pc.multiply(pc.negate(pc.ln(pc.subtract(1.0, u("talk")))), 90.0)
        talk = ms_floor(pc.floor(pc.multiply(pc.add(exponential, 4.0), SECOND)).cast(pa.int64()))
        talk = pc.min_element_wise(talk, 1_800 * SECOND)
        talk = pc.if_else(answered, talk, 0)
        answered_at = pc.if_else(answered, pc.add(started, ring), None)
        ended = pc.add(pc.add(started, ring), talk)
        party = pc.if_else(
            answered,
            choose(u("party"), _ANSWERED_PARTIES),
            pc.take(pa.array(_OUTCOME_PARTIES, pa.string()), outcome),
        )
        presses = pc.if_else(answered, choose(u("presses"), _PRESSES, pa.int64()), 0)
        texted = pc.and_(answered, pc.less(u("texted"), pc.take(setup.sms_rate, flow)))
        exit_reason = pc.if_else(
            answered,
            choose(u("exit"), _ANSWERED_EXITS),
            pc.take(pa.array(_OUTCOME_EXITS, pa.string()), outcome),
        )
        closed = pc.add(ended, pc.multiply(pc.add(below(u("exit-delay"), 750), 150), MILLISECOND))
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
