"""Reads of a customer's webhook."""

from __future__ import annotations

from webhooks.models import Webhook


def webhook_takes(*, customer_id: int, type: str) -> bool:
    """Whether the customer has a webhook that takes events of `type` (one indexed read)."""
    events = Webhook.objects.filter(customer_id=customer_id).values_list("events", flat=True).first()
    return events is not None and type in events


def webhook_of(*, customer_id: int) -> Webhook | None:
    return Webhook.objects.filter(customer_id=customer_id).first()
