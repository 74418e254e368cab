"""Celery tasks of the insights app: thin adapters over its services."""

from __future__ import annotations

from celery import shared_task

from insights.services import access_token_delete_expired


@shared_task(name="insights.delete_expired_tokens", ignore_result=True)
def access_tokens_delete_expired_task() -> int:
    """Expired login tokens can never authenticate again: delete them (beat, hourly)."""
    return access_token_delete_expired()
