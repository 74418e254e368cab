"""Recording an event: what a state change calls, in the transaction that makes the change.

`event_emit` writes the event (its body, exactly as it will be POSTed) and hands its delivery to Celery once the
caller's transaction commits, so a change that rolls back announces nothing, and one that commits is delivered
at least once (the sweep, webhooks.delivery.events_sweep, sends whatever the broker lost).
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import UTC, datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from webhooks.dispatch import event_send
from webhooks.models import EventType, WebhookEvent, WebhookSubject
from webhooks.selectors import webhook_takes

logger = logging.getLogger(__name__)


def instant_text(moment: datetime) -> str:
    """UTC to the millisecond with a Z, as the API writes every instant."""
    moment = moment.astimezone(UTC) if timezone.is_aware(moment) else moment
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event_emit(
    *, customer_id: int, type: str, data: dict[str, Any], subject: str, once: bool = False
) -> str | None:
    """Record event `type` about `subject` (a query's guid, a schedule) for the customer's webhook; delivered
    after the caller's transaction commits, after the subject's earlier events. Returns the event id, or None
    when nothing was recorded: the customer's webhook does not take `type` (or there is none), or `once` and this
    subject already had an event of this type (a change that happens at most once, announced twice).

    Never raises for the database: the state change that calls it matters more than its announcement (it runs
    in a savepoint, so the caller's transaction goes on). An unknown `type` is a ValueError (a bug).
    """
    if type not in EventType.values:
        raise ValueError(f"unknown webhook event type {type!r}")
    if not webhook_takes(customer_id=customer_id, type=type):
        return None
    once_key = f"{customer_id}:{subject}:{type}" if once else None
    try:
        if once_key is not None and WebhookEvent.objects.filter(once_key=once_key).exists():
            return None
        with transaction.atomic():
            event = WebhookEvent(
                customer_id=customer_id,
                type=type,
                subject=subject,
                sequence=_sequence_next(customer_id=customer_id, subject=subject),
                once_key=once_key,
                created_at=timezone.now(),
            )
            event.body = event_body(event, data)
            event.save()
            transaction.on_commit(functools.partial(event_send, event_id=event.pk))
    except IntegrityError:
        return None  # the same once-only change, recorded by a concurrent emit
    except DatabaseError:
        logger.exception("webhook event %s for %s could not be recorded", type, subject)
        return None
    return event.public_id


def event_body(event: WebhookEvent, data: dict[str, Any]) -> str:
    """The JSON POSTed: `{"id", "type", "created_at", "sequence", "data"}` (ASCII, so its text is its bytes)."""
    body = {
        "id": event.public_id,
        "type": event.type,
        "created_at": instant_text(event.created_at),
        "sequence": event.sequence,
        "data": data,
    }
    return json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":"))


def _sequence_next(*, customer_id: int, subject: str) -> int:
    """The subject's next sequence number. The counter row stays locked until the caller commits, so two
    changes of one subject are numbered in the order they commit (SQLite: the IMMEDIATE transaction's lock)."""
    counter, _ = WebhookSubject.objects.select_for_update().get_or_create(
        customer_id=customer_id, subject=subject
    )
    counter.last_sequence += 1
    counter.save(update_fields=["last_sequence"])
    return counter.last_sequence
