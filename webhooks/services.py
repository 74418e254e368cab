"""Writes on a customer's webhook: set it (which generates a new signing secret every time) and remove it."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from insights.models import Customer
from insights.secrets import secrets_encrypt
from webhooks.addresses import url_settable
from webhooks.errors import WebhookNotFound
from webhooks.models import EventState, Webhook, WebhookEvent, event_types_all
from webhooks.signing import secret_new


@dataclass(frozen=True)
class WebhookSet:
    webhook: Webhook
    secret: str  # shown once, in the answer that set it
    created: bool


def webhook_put(*, customer: Customer, url: str, events: list[str] | None = None) -> WebhookSet:
    """Set the customer's webhook (replacing the one it had) with a new signing secret; `events` None takes every
    type. Raises UrlRefused (400) for a URL events may not be sent to (checked on what its host resolves to now;
    a host that does not resolve is taken, and checked again at each delivery).

    Events already recorded and not yet delivered go to the new URL, signed with the new secret."""
    url_settable(url)
    secret = secret_new()
    webhook, created = Webhook.objects.update_or_create(
        customer=customer,
        defaults={
            "url": url,
            "events": list(events) if events is not None else event_types_all(),
            "secret_encrypted": secrets_encrypt({"secret": secret}),
            "secret_rotated_at": timezone.now(),
        },
    )
    return WebhookSet(webhook=webhook, secret=secret, created=created)


def webhook_delete(*, customer: Customer) -> None:
    """Remove the customer's webhook; its undelivered events are skipped. Raises WebhookNotFound (404)."""
    with transaction.atomic():
        deleted, _ = Webhook.objects.filter(customer=customer).delete()
        if not deleted:
            raise WebhookNotFound()
        WebhookEvent.objects.filter(customer=customer, state=EventState.PENDING).update(
            state=EventState.SKIPPED, finished_at=timezone.now(), claimed_until=None
        )
