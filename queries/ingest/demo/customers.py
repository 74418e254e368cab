"""The demo customers: keys, names, home regions, hosts, and their SmartFlows (numbers, ActionIds).

A customer's set-up is seeded by its key alone, so it is the same whatever the seed of the sessions. The first
flow of every customer has FlowId `SEED_FLOW_ID`, the one the seed document's example queries filter on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

SEED_FLOW_ID = "5dcf48b453e0ab04386da7d1"
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
REGIONS = ("us-east", "us-west", "us-central", "eu-west", "ap-southeast")
AREA_CODES = ("212", "305", "312", "404", "415", "469", "512", "617", "702", "720", "813", "972")
_FLOW_NAMES = ("Appointment Reminders", "Billing Line", "After Hours", "Order Status", "Customer Survey")
HOSTS_PER_CUSTOMER = 3

# A flow's actions (name, is it the trigger); every flow has each, with its own ActionId.
ACTIONS = (
    ("Inbound Call", True),
    ("Main Menu", False),
    ("Account Number", False),
    ("Confirm", False),
    ("Send SMS", False),
    ("Transfer To Agent", False),
    ("End Flow", False),
)


@dataclass(frozen=True, slots=True)
class DemoFlow:
    flow_id: str
    name: str
    number: str  # the flow's phone number: the Dnis of its calls, the From of its messages
    originator_id: str
    passthrough_version: int
    sms_rate: float
    action_ids: tuple[str, ...]  # one per ACTIONS entry


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
    region = REGIONS[index % len(REGIONS)]
    hosts = tuple(f"sf-{region}-{rng.randrange(1, 40):02d}" for _ in range(HOSTS_PER_CUSTOMER))
    names = ["Main IVR", *rng.sample(_FLOW_NAMES, rng.randint(2, 4))]
    flows = tuple(
        DemoFlow(
            flow_id=SEED_FLOW_ID if position == 0 else _random_hex(rng, 24),
            name=name,
            number=f"+1{rng.choice(AREA_CODES)}{rng.randrange(200, 1000)}{rng.randrange(10_000):04d}",
            originator_id=_random_hex(rng, 24),
            passthrough_version=rng.choice((1, 1, 2)),
            sms_rate=0.7 if name == "Appointment Reminders" else 0.2,
            action_ids=tuple(_random_hex(rng, 24) for _ in ACTIONS),
        )
        for position, name in enumerate(names)
    )
    name = _CUSTOMER_NAMES.get(key, f"{key.title()} Inc.")
    return DemoCustomer(key=key, name=name, region=region, hosts=hosts, flows=flows)


def _random_hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


class Setup:
    """The customers' set-up as arrays, for the sessions to draw from (flows numbered across customers)."""

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
        # ActionId of (flow, action) at flow * len(ACTIONS) + action.
        self.action_ids = pa.array([action for _, flow in flows for action in flow.action_ids])
