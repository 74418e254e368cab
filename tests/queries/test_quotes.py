"""The dry run's quote in process, against a real DuckDB warehouse, real local storage and the runner: estimates
checked against what the runs then do (rows, seconds), the fallbacks when counting is cut short, and the queue
ETA with a worker that holds a query and does nothing more (a frozen worker). Over HTTP on both shapes:
tests/test_quote_e2e.py."""

from __future__ import annotations

import itertools
import json
import random
import statistics
import threading
from datetime import timedelta
from typing import Any, cast

import pytest
from django.utils import timezone

from exports.engines.base import Statement, WarehouseEngine
from exports.errors import QueryCanceled
from exports.schema import Column, ColumnType
from queries import runner
from queries.history import run_shape, seconds_predict
from queries.lifecycle import query_claim, query_heartbeat
from queries.models import QueryRequest, QueryStatus, RunRecord
from queries.plan import plan_statement
from queries.row_counts import EXACT, SAMPLED, STATISTICS, BoundedWarehouse, rows_count
from queries.services import query_create
from queries.validation import query_validate
from queries.warehouse import warehouse_engine
from tests.queries.clients import api_client

# The runner's supervisor and upload threads use their own database connections: they must see the rows.
pytestmark = pytest.mark.django_db(transaction=True)

DAY = {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-26T00:00:00Z"}
CALLS = {"timestamp": DAY, "data": {"CallEvent": {"fields": ["SessionId", "Ani", "Duration"]}}}
SCOPED = {
    "timestamp": DAY,
    "data": {"ApplicationExitEvent": {"fields": ["FlowId", "ExitReason"]}, "CallEvent": {"fields": ["Ani"]}},
    "scope": {"filters": {"DtmfEvent": {"DtmfInput": {"$eq": "0"}}}, "scope": "SessionId"},
    "filters": {"CallEvent": {"Duration": {"$gte": 5}}},
}


def _quote(client, body, **params):
    query = "&".join(["dry_run=true", *(f"{k}={v}" for k, v in params.items())])
    return client.post(f"/_rest/v4/dwh/Q?{query}", data=json.dumps(body), content_type="application/json")


def _run(customer, body) -> QueryRequest:
    query = query_create(customer=customer, body=body)
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert query.status == QueryStatus.COMPLETED, query.messages
    return query


@pytest.mark.parametrize("body", [CALLS, SCOPED], ids=["plain", "scoped"])
def test_an_exact_count_is_the_rows_the_export_then_writes(
    customer_factory, demo_warehouse, local_exports, sent_tasks, body
):
    acme = customer_factory("acme")
    quote = _quote(api_client(acme), body)
    assert quote.status_code == 200, quote.content
    answer = quote.json()
    assert answer["estimate"]["method"] == "exact-count"
    assert not QueryRequest.objects.exists() and sent_tasks == []  # nothing created, nothing sent
    rows = _run(acme, body).row_count
    completed = QueryRequest.objects.get()
    assert rows is not None and answer["estimate"]["rows"] == rows > 0
    assert answer["fingerprint"] == completed.fingerprint
    header = next(iter(json.loads((local_exports / completed.manifest_path).read_text())["schema"]))
    assert answer["columns"][0] == header["name"]


def test_the_quote_answers_every_documented_key(customer_factory, demo_warehouse, sent_tasks):
    answer = _quote(api_client(customer_factory("acme")), CALLS).json()
    assert set(answer) == {"valid", "fingerprint", "columns", "estimate", "over_cap", "slots", "queue"}
    assert answer["valid"] is True and answer["over_cap"] is False
    assert answer["columns"] == ["SessionId", "Ani", "Duration"]
    assert set(answer["estimate"]) == {"rows", "bytes", "seconds", "method"}
    assert answer["estimate"]["bytes"] > answer["estimate"]["rows"] > 0 and answer["estimate"]["seconds"] > 0
    assert answer["slots"] == {"limit": 2, "in_use": 0}
    assert answer["queue"] == {"position": 0, "eta_seconds": 0.0}


def test_bytes_come_from_the_runs_recorded_for_that_shape(
    customer_factory, demo_warehouse, local_exports, sent_tasks
):
    acme = customer_factory("acme")
    completed = _run(acme, CALLS)
    (record,) = RunRecord.objects.all()
    assert (record.rows, record.bytes) == (completed.row_count, completed.progress_bytes)
    assert record.shape == run_shape(query_validate(CALLS).canonical()) and record.engine == "duckdb"
    quote = _quote(api_client(acme), CALLS).json()
    # The same query: its rows times the recorded bytes per row (the header's included), plus a header.
    header = len("SessionId,Ani,Duration\n")
    assert quote["estimate"]["bytes"] == record.bytes + header


def test_over_the_cap_is_still_a_quote(customer_factory, demo_warehouse, sent_tasks):
    answer = _quote(api_client(customer_factory("acme", max_bytes_per_query=100)), CALLS)
    assert answer.status_code == 200 and answer.json()["over_cap"] is True


def test_an_invalid_body_is_the_same_400_as_a_real_post(customer_factory, demo_warehouse, sent_tasks):
    client = api_client(customer_factory("acme"))
    body = {**CALLS, "data": {"Application ExitEvent": {"fields": ["FlowId"]}}}
    quoted = _quote(client, body)
    posted = client.post("/_rest/v4/dwh/Q", data=json.dumps(body), content_type="application/json")
    assert quoted.status_code == posted.status_code == 400
    assert quoted.content == posted.content
    bad = _quote(client, {**CALLS, "output": {"format": "pdf"}})
    assert bad.status_code == 400 and bad.json()["code"] == 400
    flag = client.post(
        "/_rest/v4/dwh/Q?dry_run=maybe", data=json.dumps(CALLS), content_type="application/json"
    )
    assert flag.json() == {"code": 400, "message": "dry_run must be true or false."}


def test_dry_runs_are_limited_per_minute(customer_factory, demo_warehouse, sent_tasks, settings, monkeypatch):
    settings.QUOTE_PER_MINUTE = 2
    monkeypatch.setattr("queries.quotes.time.time", lambda: 1_700_000_010.0)  # one clock minute throughout
    client = api_client(customer_factory("acme"))
    assert [_quote(client, CALLS).status_code for _ in range(2)] == [200, 200]
    refused = _quote(client, CALLS)
    assert refused.status_code == 429 and refused.json()["code"] == 429
    assert refused["Retry-After"] == "30"  # the minute turns 30 s later


# --- the fallbacks: counting cut short ------------------------------------------------------------------------


class _CountsCanceled:
    """An engine whose statements are interrupted as a deadline would (QueryCanceled) while `cuts` has some
    left; `cuts` is shared by the engines of one call (an interrupted engine is replaced by a fresh one)."""

    def __init__(self, engine, cuts: list[int]) -> None:
        self._engine, self._cuts = engine, cuts
        self.dialect = engine.dialect

    def execute(self, statement, **kwargs):
        if self._cuts[0] > 0:
            self._cuts[0] -= 1
            raise QueryCanceled("the query was canceled")
        return self._engine.execute(statement, **kwargs)

    def estimate(self, statement):
        return self._engine.estimate(statement)

    def event_counts_ready(self) -> bool:
        return self._engine.event_counts_ready()

    def cancel(self) -> None:
        self._engine.cancel()

    def close(self) -> None:
        self._engine.close()


def _warehouse(cut: int) -> BoundedWarehouse:
    cuts = [cut]
    return BoundedWarehouse(lambda: cast(WarehouseEngine, _CountsCanceled(warehouse_engine(), cuts)))


def test_a_count_cut_short_falls_back_to_a_sample_then_statistics(demo_warehouse):
    query_spec = query_validate(
        {**CALLS, "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-27T00:00:00Z"}}
    )
    exact = rows_count(BoundedWarehouse(), query_spec, customer_id="acme", limit_seconds=5)
    sampled = rows_count(_warehouse(cut=1), query_spec, customer_id="acme", limit_seconds=5)
    statistics_ = rows_count(_warehouse(cut=2), query_spec, customer_id="acme", limit_seconds=5)
    assert exact.method == EXACT and sampled.method == SAMPLED and statistics_.method == STATISTICS
    # A sixteenth of two days, scaled up: the demo's calls are spread over the days, so the same magnitude.
    assert exact.rows / 4 <= sampled.rows <= exact.rows * 4, (exact, sampled)
    assert statistics_.rows >= 0


def test_a_deadline_interrupts_the_count_and_the_next_statement_runs_on_a_fresh_engine(demo_warehouse):
    opened = []

    def engine_open():
        opened.append(warehouse_engine())
        return opened[-1]

    # A statement that runs for minutes on any machine.
    slow = Statement(
        sql="SELECT COUNT(*) AS n FROM range(10000000000) t WHERE hash(t.range) % 7 = 3",
        params=(),
        columns=(Column("n", ColumnType.INTEGER),),
        dialect="duckdb",
    )
    warehouse = BoundedWarehouse(engine_open)
    with pytest.raises(QueryCanceled), warehouse.bounded(0.2) as engine:
        list(engine.execute(slow))
    counted = rows_count(warehouse, query_validate(CALLS), customer_id="acme", limit_seconds=5)
    assert counted.method == EXACT and counted.rows > 0 and len(opened) == 2
    warehouse.close()


# --- seconds, from recorded runs ------------------------------------------------------------------------------


def _windows() -> list[dict]:
    """Four windows of acme's calls whose row counts differ by more than the "same size" factor."""
    return [
        {**CALLS, "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lt": f"2019-11-25T{hour:02d}:00:00Z"}}
        for hour in (3, 8, 16)
    ] + [{**CALLS, "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-27T00:00:00Z"}}]


def test_after_20_recorded_runs_the_predicted_seconds_are_within_2x_of_the_measured(
    customer_factory, demo_warehouse, local_exports, sent_tasks
):
    acme = customer_factory("acme", max_concurrent_queries=100)
    bodies = _windows()
    runs: dict[int, list[float]] = {}
    for _ in range(5):
        for body in bodies:
            done = _run(acme, body)
            assert done.finished_at and done.started_at and done.row_count
            seconds = (done.finished_at - done.started_at).total_seconds()
            runs.setdefault(done.row_count, []).append(seconds)
    assert RunRecord.objects.count() == 20
    sizes = sorted(runs)
    assert all(b / a > 1.25 for a, b in itertools.pairwise(sizes)), sizes  # four distinct sizes
    client = api_client(acme)
    for body in bodies:
        estimate = _quote(client, body).json()["estimate"]
        measured = statistics.median(runs[estimate["rows"]])
        assert measured / 2 <= estimate["seconds"] <= measured * 2, (estimate, runs[estimate["rows"]])


def test_a_size_between_the_recorded_ones_follows_the_fitted_line(db):
    """Recorded history only: 20 runs of four sizes costing 0.05 s + 1 s per million rows, each off by up to
    +-30%; a size seen before and one between them are predicted within 2x of that cost."""
    from insights.models import Customer

    customer = Customer.objects.create(key="acme", name="Acme")
    noise = random.Random(16)
    for rows in [1_000, 20_000, 300_000, 2_000_000] * 5:
        RunRecord.objects.create(
            customer=customer,
            engine="duckdb",
            shape="s" * 64,
            rows=rows,
            bytes=rows * 40,
            seconds=(0.05 + rows / 1e6) * noise.uniform(0.7, 1.3),
            finished_at=timezone.now(),
        )
    for rows in (20_000, 2_000_000, 100_000, 1_000_000):
        cost = 0.05 + rows / 1e6
        assert cost / 2 <= seconds_predict(engine="duckdb", rows=rows) <= cost * 2, rows
    assert seconds_predict(engine="postgresql", rows=1_000) > 0  # no history of that engine: the default


# --- the queue: a frozen worker ----------------------------------------------------------------------------


def test_with_a_frozen_worker_and_two_pending_queries_the_queue_position_is_1(
    customer_factory, demo_warehouse, sent_tasks
):
    acme = customer_factory("acme", max_concurrent_queries=2)
    held, queued = query_create(customer=acme, body=CALLS), query_create(customer=acme, body=SCOPED)
    claim = query_claim(query_id=held.pk)  # the worker took it, then froze: no heartbeat, no progress
    assert claim is not None
    client = api_client(acme)
    answer = _quote(client, CALLS).json()
    assert answer["slots"] == {"limit": 2, "in_use": 2}
    assert answer["queue"]["position"] == 1
    assert answer["queue"]["eta_seconds"] is not None and answer["queue"]["eta_seconds"] >= 0
    # Long past any expectation (an hour, no rows written): still not negative.
    QueryRequest.objects.filter(pk=held.pk).update(started_at=timezone.now() - timedelta(hours=1))
    QueryRequest.objects.filter(pk=queued.pk).update(
        started_at=timezone.now() - timedelta(hours=1), lease_expires_at=timezone.now() + timedelta(minutes=1)
    )
    late = _quote(client, CALLS).json()["queue"]
    assert late["position"] == 1 and late["eta_seconds"] == 0.0


def test_the_eta_follows_the_running_queries_progress(customer_factory, demo_warehouse, sent_tasks):
    acme = customer_factory("acme", max_concurrent_queries=1)
    held = query_create(customer=acme, body=CALLS)
    claim = query_claim(query_id=held.pk)
    assert claim is not None
    engine = warehouse_engine()
    expected_rows = engine.estimate(plan_statement(held.plan)).rows
    engine.close()
    assert expected_rows >= 4
    # A quarter of the rows written in 30 s: three quarters are left, about 90 s more.
    query_heartbeat(claim=claim, rows=expected_rows // 4, bytes_written=1000)
    QueryRequest.objects.filter(pk=held.pk).update(started_at=timezone.now() - timedelta(seconds=30))
    queue = _quote(api_client(acme), CALLS).json()["queue"]
    left = 30 * (expected_rows - expected_rows // 4) / (expected_rows // 4)
    assert queue["position"] == 1
    assert left * 0.9 <= queue["eta_seconds"] <= left * 1.1, (queue, left)


# --- warm engines ------------------------------------------------------------------------------------------


class _Recorded:
    def __init__(self) -> None:
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()

    def reusable(self) -> bool:
        return True


def test_an_engine_is_kept_warm_for_the_next_call_and_closed_once_idle(settings, monkeypatch):
    from queries.warm_engines import WarmEngines

    settings.QUOTE_ENGINE_IDLE_SECONDS = 1
    monkeypatch.setattr("queries.warm_engines.warehouse_engine", _Recorded)
    pool = WarmEngines("QUOTE_ENGINE_IDLE_SECONDS")
    first: Any = pool.take()
    pool.give_back(first)
    assert id(pool.take()) == id(first) and not first.closed.is_set()  # the same engine, still open
    pool.discard(first)  # failed or interrupted: closed, never lent again
    assert first.closed.is_set() and id(pool.take()) != id(first)
    second: Any = pool.take()
    pool.give_back(second)
    assert second.closed.wait(timeout=30)  # idle past its second: the sweeper closes it
    assert id(pool.take()) != id(second)
    settings.QUOTE_ENGINE_IDLE_SECONDS = 0
    third: Any = pool.take()
    pool.give_back(third)
    assert third.closed.is_set()  # keeping is off: closed at once


def test_a_warm_engine_serves_one_warehouse_only(settings, monkeypatch):
    from queries.warm_engines import WarmEngines

    settings.QUOTE_ENGINE_IDLE_SECONDS = 60
    monkeypatch.setattr("queries.warm_engines.warehouse_engine", _Recorded)
    pool = WarmEngines("QUOTE_ENGINE_IDLE_SECONDS")
    settings.WAREHOUSE_URL = "duckdb:///one.duckdb"
    one = pool.take()
    pool.give_back(one)
    settings.WAREHOUSE_URL = "duckdb:///two.duckdb"
    assert pool.take() is not one
    settings.WAREHOUSE_URL = "duckdb:///one.duckdb"
    assert pool.take() is one
    pool.close_all()
