"""The demo generator's entry points: demo sessions as batches of warehouse rows, or as one table."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa

from queries.ingest.demo.customers import Setup, demo_customer_keys, demo_customers
from queries.ingest.demo.draws import SECOND, Draws
from queries.ingest.demo.rows import chunk_table
from queries.ingest.demo.sessions import Sessions, Window
from queries.ingest.warehouse import warehouse_schema

DEFAULT_START = date(2019, 11, 25)
DEFAULT_DAYS = 2


def demo_batches(
    *,
    customers: int | Sequence[str] = 3,
    sessions: int,
    seed: int = 0,
    start: date | datetime = DEFAULT_START,
    days: int = DEFAULT_DAYS,
    chunk_sessions: int = 50_000,
) -> Iterator[pa.Table]:
    """Demo rows, `chunk_sessions` sessions per table, each with exactly `warehouse_schema()`.

    `customers` is a count (keys from `demo_customer_keys`) or the keys themselves. `start` (a date is its
    midnight UTC; an aware datetime is converted to UTC) begins the `days` over which sessions spread.
    """
    if sessions < 0 or days < 1 or chunk_sessions < 1:
        raise ValueError("sessions must be at least 0; days and chunk_sessions at least 1")
    keys = demo_customer_keys(customers) if isinstance(customers, int) else tuple(customers)
    if not keys or len(set(keys)) != len(keys):
        raise ValueError("customer keys must be distinct, and there must be at least one")
    setup = Setup(demo_customers(keys))
    draws = Draws(seed)
    window = Window(origin=_epoch_us(start), span=days * 86_400 * SECOND, sessions=sessions)
    for first in range(0, sessions, chunk_sessions):
        count = min(chunk_sessions, sessions - first)
        yield chunk_table(draws, Sessions.draw(draws, setup, window, first, count), setup)


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
