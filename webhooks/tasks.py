"""Celery tasks: thin adapters that take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from webhooks.delivery import event_deliver, events_sweep
from webhooks.dispatch import DELIVER_TASK


@shared_task(name=DELIVER_TASK, acks_late=True, ignore_result=True)
def event_deliver_task(event_id: int) -> None:
    """One attempt at an event; a duplicate delivery finds it claimed, not due or finished, and does nothing."""
    event_deliver(event_id=event_id)


@shared_task(name="webhooks.sweep", ignore_result=True)
def events_sweep_task() -> int:
    return events_sweep()
