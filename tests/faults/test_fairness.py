"""Two customers, each limited to 2 live queries, share 2 workers: the limit holds at every moment, neither
customer waits for the other's backlog to drain, and every query a customer keeps asking for gets done."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from tests.faults.invariants import TERMINAL, SlotWatch
from tests.service import HttpResponse

if TYPE_CHECKING:
    from tests.faults.conftest import Harness

pytestmark = pytest.mark.slow

CUSTOMERS = ("acme", "globex")
WANTED = 10  # queries each customer wants done
LIMIT = 2
QUERY: dict[str, Any] = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-25T12:00:00Z"},
    "data": {"CallEvent": {"fields": ["TimeStamp", "SessionId", "Ani", "Dnis", "Duration"]}},
}


@dataclass
class Demand:
    """One customer's side: what it has in flight, what is done, how often it was told to wait."""

    key: str
    in_flight: list[str] = field(default_factory=list)
    done: dict[str, tuple[str, float]] = field(default_factory=dict)  # guid -> (status, when)
    refused: int = 0

    @property
    def backlog(self) -> int:
        """Queries still wanted and not yet finished (in flight or not yet accepted)."""
        return WANTED - len(self.done)


def test_two_customers_share_two_workers_fairly(harness: Harness) -> None:
    demands = {name: Demand(key=harness.customer(name, max_concurrent=LIMIT)) for name in CUSTOMERS}
    for _ in range(2):
        harness.service.worker_start(concurrency=1)
    started_at = time.monotonic()
    with SlotWatch(harness.database_url) as slots:
        _burst(harness, demands)
        while any(demand.backlog for demand in demands.values()):
            assert time.monotonic() - started_at < 120, {n: d.backlog for n, d in demands.items()}
            for name, demand in demands.items():
                live = _poll(harness, demand)
                assert live <= LIMIT, f"{name}: {live} queries seen Pending at once (limit {LIMIT})"
            for demand in demands.values():
                _resubmit(harness, demand)
            time.sleep(0.1)
        guids = [guid for demand in demands.values() for guid in demand.done]
        verdict = harness.verdict(guids, since=started_at)
    slots.check()
    assert all(status == "Completed" for demand in demands.values() for status, _ in demand.done.values())
    assert all(demand.refused for demand in demands.values()), "the limit was never reached: no test"
    first = {name: min(when for _, when in demand.done.values()) for name, demand in demands.items()}
    last = {name: max(when for _, when in demand.done.values()) for name, demand in demands.items()}
    a, b = CUSTOMERS
    # Each customer got results while the other still had queries to run: nobody waited for a drained queue.
    assert first[a] < last[b] and first[b] < last[a], (first, last)
    harness.report(
        f"fairness: {WANTED} queries each from 2 customers (limit {LIMIT}), 2 workers",
        f"peak live per customer {dict(slots.peak)}; 429s {[d.refused for d in demands.values()]}; "
        f"first results after {first[a] - started_at:.1f} s / {first[b] - started_at:.1f} s; all Completed",
        verdict,
    )


def _burst(harness: Harness, demands: dict[str, Demand]) -> None:
    """Every customer POSTs all its queries at once."""
    posts = [demand for demand in demands.values() for _ in range(WANTED)]
    with ThreadPoolExecutor(max_workers=len(posts)) as pool:
        responses = list(pool.map(lambda demand: _request(harness, demand), posts))
    for demand, response in zip(posts, responses, strict=True):
        _record(demand, response)
    assert all(response.status in (201, 429) for response in responses), [r.status for r in responses]


def _post(harness: Harness, demand: Demand) -> int:
    response = _request(harness, demand)
    _record(demand, response)
    return int(response.status)


def _request(harness: Harness, demand: Demand) -> HttpResponse:
    return harness.service.request("POST", "/_rest/v4/dwh/Q", key=demand.key, body=QUERY)


def _record(demand: Demand, response: HttpResponse) -> None:
    if response.status == 201:
        demand.in_flight.append(response.json()["id"])
    elif response.status == 429:
        demand.refused += 1


def _resubmit(harness: Harness, demand: Demand) -> None:
    """Ask again for the queries that were refused, one POST per missing query."""
    for _ in range(demand.backlog - len(demand.in_flight)):
        if _post(harness, demand) == 429:
            return


def _poll(harness: Harness, demand: Demand) -> int:
    """Move finished queries to `done`; returns how many were seen Pending in this round.

    Every query polled was accepted before the round began and statuses only leave Pending, so the queries
    seen Pending were all Pending at once when the round began: their number may not exceed the limit.
    """
    live = 0
    for guid in list(demand.in_flight):
        status = harness.status(guid, demand.key)["status"]
        if status in TERMINAL:
            demand.in_flight.remove(guid)
            demand.done[guid] = (status, time.monotonic())
        else:
            live += 1
    return live
