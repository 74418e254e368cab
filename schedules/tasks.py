"""Celery tasks: thin adapters that call one service."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from schedules.runs import schedules_tick


@shared_task(name="schedules.tick", ignore_result=True)
def schedules_tick_task() -> dict[str, int]:
    """Beat's tick (CELERY_BEAT_SCHEDULE): safe to run twice, and at once on several workers."""
    return asdict(schedules_tick())
