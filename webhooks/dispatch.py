"""Handing an event's delivery to the broker. The task is sent by name, so nothing here imports the task module."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from insights.celery import app
from webhooks.models import WebhookEvent

logger = logging.getLogger(__name__)

DELIVER_TASK = "webhooks.deliver"


def event_send(*, event_id: int, countdown: float | None = None) -> bool:
    """Send the event's delivery task (after `countdown` seconds). Never raises: an event whose message did not go
    out is sent again by the sweep (its `sent_at` stays what it was)."""
    due = timezone.now() + timedelta(seconds=countdown or 0)
    try:
        app.send_task(DELIVER_TASK, args=(event_id,), countdown=countdown)
    except Exception:
        logger.warning(
            "webhook event %s could not be sent to the broker; the sweep will", event_id, exc_info=True
        )
        return False
    WebhookEvent.objects.filter(pk=event_id).update(sent_at=due)
    return True
