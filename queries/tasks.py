"""Celery tasks: thin adapters that take ids and call one service."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from queries.dispatch import RUN_TASK, SLICE_TASK
from queries.maintenance import leases_reap, results_expire, uploads_sweep
from queries.reuse import followers_settle
from queries.runner import query_run
from queries.slice_runner import slice_run
from queries.webhook_events import webhook_events_catch_up


@shared_task(name=RUN_TASK, acks_late=True, ignore_result=True)
def query_run_task(query_id: int) -> None:
    """Run a query; a duplicate delivery finds the lease held or the query finished and does nothing."""
    query_run(query_id=query_id)


@shared_task(name=SLICE_TASK, acks_late=True, ignore_result=True)
def slice_run_task(slice_id: int) -> None:
    """Run one slice of a big export; a duplicate delivery finds it held, done or its query ended."""
    slice_run(slice_id=slice_id)


@shared_task(name="queries.expire_results", ignore_result=True)
def results_expire_task() -> int:
    return results_expire()


@shared_task(name="queries.sweep_uploads", ignore_result=True)
def uploads_sweep_task() -> int:
    return uploads_sweep()


@shared_task(name="queries.reap_leases", ignore_result=True)
def leases_reap_task() -> dict[str, int]:
    return asdict(leases_reap())


@shared_task(name="queries.settle_reuses", ignore_result=True)
def followers_settle_task() -> int:
    """Reuses following a run that ended (queries.reuse) take its end, also when nobody reads them."""
    return followers_settle()


@shared_task(name="queries.webhook_events", ignore_result=True)
def webhook_events_catch_up_task() -> int:
    """query.expiring, and endings no state change announced (queries.webhook_events)."""
    return webhook_events_catch_up()
