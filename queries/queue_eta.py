"""A customer's slots, and where a new query of theirs would stand: a dry run's `slots` and `queue`.

A Pending query holds one of its customer's slots from POST to its end (a reuse that follows another query's
run holds none: queries.reuse). With every slot taken, a new query waits for `position` of them to free:
`position = in_use - limit + 1` (1 when the slots are just full), 0 while one is free.

`eta_seconds` is when that happens: the `position`-th soonest end among the customer's Pending queries. Each
one's remaining time comes from its progress and the recorded history (queries.history):
- its expected rows are the engine's estimate of its stored statement (EXPLAIN, within a small time budget),
  else unknown;
- a running query (an attempt holds a live lease) that has written rows: the time it took for those, scaled
  to the rows still expected; otherwise its expected run time minus the time it has run;
- a queued one (never started, or its worker died and the lease ran out): its whole expected run time.
Never negative (a query past its expectation may end any moment: 0), and never null while the slots are full.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from exports.errors import QueryCanceled, WarehouseError
from insights.models import Customer
from queries.history import seconds_predict, seconds_typical
from queries.models import QueryRequest, QueryStatus
from queries.plan import PlanError, plan_statement
from queries.row_counts import FALLBACK_SHARE, BoundedWarehouse
from queries.warehouse import warehouse_dialect

PENDING_FIELDS = ("plan", "started_at", "lease_expires_at", "progress_rows")


@dataclass(frozen=True, slots=True)
class Slots:
    limit: int
    in_use: int


@dataclass(frozen=True, slots=True)
class QueuePlace:
    position: int
    eta_seconds: float


def slots_held(customer: Customer) -> QuerySet[QueryRequest]:
    """The customer's queries that hold a slot: Pending, and not a reuse following another query's run."""
    return QueryRequest.objects.filter(
        customer_id=customer.pk, status=QueryStatus.PENDING, reused_from__isnull=True
    )


def queue_place(
    *, customer: Customer, warehouse: BoundedWarehouse, now: datetime | None = None
) -> tuple[Slots, QueuePlace]:
    """The customer's slots, and the place of a query they would submit now (see the module docstring)."""
    now = now or timezone.now()
    pending = list(slots_held(customer).only(*PENDING_FIELDS))
    slots = Slots(limit=customer.max_concurrent_queries, in_use=len(pending))
    position = max(0, slots.in_use - slots.limit + 1)
    if position == 0:
        return slots, QueuePlace(position=0, eta_seconds=0.0)
    engine_name = warehouse_dialect().name
    expected = _expected_rows(warehouse, pending)
    ends = sorted(_remaining(q, expected.get(q.pk), engine_name, now) for q in pending)
    return slots, QueuePlace(position=position, eta_seconds=round(ends[position - 1], 3))


def _expected_rows(warehouse: BoundedWarehouse, pending: list[QueryRequest]) -> dict[int, int]:
    """The engine's estimate of each pending query's rows, as far as the time budget goes."""
    expected: dict[int, int] = {}
    budget = settings.QUOTE_TIME_LIMIT_SECONDS * FALLBACK_SHARE
    try:
        with warehouse.bounded(budget) as engine:
            for query in pending:
                try:
                    statement = plan_statement(query.plan)
                except PlanError:
                    continue
                if statement.dialect == engine.dialect.name:
                    expected[query.pk] = max(engine.estimate(statement).rows, 0)
    except (QueryCanceled, WarehouseError):
        pass  # the rest go by the engine's typical run
    return expected


def _remaining(query: QueryRequest, rows: int | None, engine: str, now: datetime) -> float:
    """Seconds until `query` ends, by its progress and the history; never negative."""
    total = seconds_typical(engine=engine) if rows is None else seconds_predict(engine=engine, rows=rows)
    running = query.lease_expires_at is not None and query.lease_expires_at > now
    if not running or query.started_at is None:
        return max(total, 0.0)
    elapsed = max((now - query.started_at).total_seconds(), 0.0)
    done = query.progress_rows
    if rows is not None and 0 < done < rows:
        return elapsed * (rows - done) / done
    return max(total - elapsed, 0.0)
