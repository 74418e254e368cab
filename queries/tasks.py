"""Celery tasks: thin adapters that take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from queries.runner import query_run


@shared_task(name="queries.run", acks_late=True, ignore_result=True)
def query_run_task(query_id: int) -> None:
    """Run a query; a duplicate delivery finds the lease held or the query finished and does nothing."""
    query_run(query_id=query_id)
