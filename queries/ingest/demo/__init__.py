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

- `batches`: the entry points, `demo_batches` and `demo_table`;
- `customers`: the demo customers and their flows, and the same as arrays;
- `draws`: the random streams, drawn a batch at a time;
- `sessions`: every per-session value of a batch;
- `rows`: sessions to warehouse rows.
"""

from queries.ingest.demo.batches import DEFAULT_DAYS, DEFAULT_START, demo_batches, demo_table
from queries.ingest.demo.customers import (
    DEMO_CUSTOMER_KEYS,
    SEED_FLOW_ID,
    DemoCustomer,
    DemoFlow,
    demo_customer_keys,
    demo_customers,
)

__all__ = [
    "DEFAULT_DAYS",
    "DEFAULT_START",
    "DEMO_CUSTOMER_KEYS",
    "SEED_FLOW_ID",
    "DemoCustomer",
    "DemoFlow",
    "demo_batches",
    "demo_customer_keys",
    "demo_customers",
    "demo_table",
]
