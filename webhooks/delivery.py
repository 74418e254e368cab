"""Delivering events: one attempt per task run, in order per subject, retried with exponential backoff.

An attempt claims its event (a conditional UPDATE: a duplicate task, or a second worker, finds it claimed and
does nothing), checks that no earlier event of the same subject is still pending (if one is, it gives the event
back: the earlier one's end sends it), checks the URL and its addresses again, POSTs, and records the attempt.

    2xx                                 -> delivered
    5xx, timeout, connection error,     -> tried again after WEBHOOK_BACKOFF_SECONDS * 2^(attempts-1), at most
    a host that does not resolve           WEBHOOK_BACKOFF_MAX_SECONDS apart, until WEBHOOK_RETRY_HOURS after the
                                           event; then failed
    1xx, 3xx (never followed), 4xx,     -> failed at once: the receiver, or the URL, must change first
    a refused address
    no webhook, or it no longer takes   -> skipped
    the event's type

A failed or skipped event does not hold up the subject's later events.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from insights.secrets import secrets_decrypt
from webhooks.addresses import url_check
from webhooks.dispatch import event_send
from webhooks.errors import UrlRefused
from webhooks.models import (
    FINISHED_STATES,
    AttemptOutcome,
    DeliveryAttempt,
    EventState,
    Webhook,
    WebhookEvent,
)
from webhooks.signing import HEADER, signature_header
from webhooks.transport import Answer, event_post

logger = logging.getLogger(__name__)

# A retry due within this is sent to the broker with a countdown; a later one is left to the sweep (a message
# held for hours in a worker's memory, or past Redis's visibility timeout, helps nobody).
COUNTDOWN_MAX_SECONDS = 300
# The sweep sends an event again when the message sent for it is this much overdue (lost with a broker restart).
RESEND_AFTER = timedelta(minutes=5)


def claim_seconds() -> float:
    """How long an attempt holds its event: its timeouts (connect, then the answer's headers and its first
    kilobyte), plus room for the checks and the record."""
    return settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS + 2 * settings.WEBHOOK_READ_TIMEOUT_SECONDS + 30


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt."""
    base, most = settings.WEBHOOK_BACKOFF_SECONDS, settings.WEBHOOK_BACKOFF_MAX_SECONDS
    return timedelta(seconds=min(base * 2 ** min(attempts - 1, 30), most))


def event_deliver(*, event_id: int) -> str | None:
    """One attempt at the event; returns its outcome (an AttemptOutcome, or "skipped"), or None when there was
    nothing to do now (not due, claimed elsewhere, finished, or waiting for an earlier event of its subject)."""
    now = timezone.now()
    claimed_until = now + timedelta(seconds=claim_seconds())
    taken = _claimable(now).filter(pk=event_id).update(claimed_until=claimed_until)
    if not taken:
        _early_message(event_id, now)
        return None
    event = WebhookEvent.objects.get(pk=event_id)
    if _earlier_pending(event).exists():
        # Given back unclaimed; the earlier event's end sends this one (events_next_send).
        WebhookEvent.objects.filter(pk=event_id, claimed_until=claimed_until).update(claimed_until=None)
        return None
    webhook = Webhook.objects.filter(customer_id=event.customer_id).first()
    if webhook is None or event.type not in webhook.events:
        _event_end(event, claimed_until, state=EventState.SKIPPED)
        return EventState.SKIPPED.value
    answer, retryable = _attempt(webhook, event)
    return _record(event, claimed_until, webhook.url, now, answer, retryable)


def _claimable(now: datetime) -> QuerySet[WebhookEvent]:
    return WebhookEvent.objects.filter(state=EventState.PENDING, next_attempt_at__lte=now).filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    )


def _early_message(event_id: int, now: datetime) -> None:
    """A message that came before its event was due (another host's clock ran ahead) is sent again for then."""
    pending = WebhookEvent.objects.filter(pk=event_id, state=EventState.PENDING, claimed_until__isnull=True)
    due = pending.filter(next_attempt_at__gt=now).values_list("next_attempt_at", flat=True).first()
    if due is not None and (due - now).total_seconds() <= COUNTDOWN_MAX_SECONDS:
        event_send(event_id=event_id, countdown=(due - now).total_seconds())


def _earlier_pending(event: WebhookEvent) -> QuerySet[WebhookEvent]:
    return WebhookEvent.objects.filter(
        customer_id=event.customer_id,
        subject=event.subject,
        sequence__lt=event.sequence,
        state=EventState.PENDING,
    )


def _attempt(webhook: Webhook, event: WebhookEvent) -> tuple[Answer, bool]:
    """POST the event to the webhook's URL, checked again now; whether a failure is worth another attempt."""
    started = time.monotonic()
    try:
        target, addresses = url_check(webhook.url)
    except UrlRefused as refused:
        latency_ms = round((time.monotonic() - started) * 1000)
        return Answer(None, latency_ms, error=refused.reason), refused.retryable
    body = event.body.encode()
    secret = secrets_decrypt(webhook.secret_encrypted)["secret"]
    headers = {
        HEADER: signature_header(secret=secret, body=body, timestamp=int(time.time())),
        "Insights-Event-Id": event.public_id,
        "Insights-Event-Type": event.type,
    }
    answer = event_post(target=target, address=addresses[0], body=body, headers=headers)
    if answer.status_code is None:
        return answer, True  # a timeout or a connection error
    return answer, answer.status_code >= 500


def _record(
    event: WebhookEvent,
    claimed_until: datetime,
    url: str,
    started_at: datetime,
    answer: Answer,
    retryable: bool,
) -> str:
    now = timezone.now()
    attempts = event.attempts + 1
    code = answer.status_code
    if code is not None and 200 <= code < 300:
        outcome, state = AttemptOutcome.DELIVERED, EventState.DELIVERED
    elif retryable and now + backoff(attempts) <= event.created_at + retry_window():
        outcome, state = AttemptOutcome.RETRY, EventState.PENDING
    else:
        outcome, state = AttemptOutcome.FAILED, EventState.FAILED
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            event=event,
            customer_id=event.customer_id,
            number=attempts,
            url=url[:2000],
            started_at=started_at,
            status_code=code,
            latency_ms=answer.latency_ms,
            response_body=answer.body,
            error=answer.error[:500],
            outcome=outcome,
        )
        fields: dict[str, object] = {"attempts": attempts, "last_status_code": code, "claimed_until": None}
        if state == EventState.PENDING:
            fields.update(next_attempt_at=now + backoff(attempts), sent_at=None)
        else:
            fields.update(state=state, finished_at=now)
        WebhookEvent.objects.filter(pk=event.pk, claimed_until=claimed_until).update(**fields)
    if state == EventState.PENDING:
        _retry_send(event.pk, backoff(attempts))
    else:
        events_next_send(event)
    log = logger.info if outcome == AttemptOutcome.DELIVERED else logger.warning
    log("webhook event %s %s attempt %s: %s", event.public_id, event.type, attempts, code or answer.error)
    return outcome.value


def retry_window() -> timedelta:
    return timedelta(hours=settings.WEBHOOK_RETRY_HOURS)


def _retry_send(event_id: int, wait: timedelta) -> None:
    if wait.total_seconds() <= COUNTDOWN_MAX_SECONDS:
        event_send(event_id=event_id, countdown=wait.total_seconds())


def _event_end(event: WebhookEvent, claimed_until: datetime, *, state: EventState) -> None:
    WebhookEvent.objects.filter(pk=event.pk, claimed_until=claimed_until).update(
        state=state, finished_at=timezone.now(), claimed_until=None
    )
    events_next_send(event)


def events_next_send(event: WebhookEvent) -> None:
    """The subject's next pending event, now that `event` is out of its way."""
    following = (
        WebhookEvent.objects.filter(
            customer_id=event.customer_id, subject=event.subject, state=EventState.PENDING
        )
        .order_by("sequence")
        .values_list("pk", "next_attempt_at")
        .first()
    )
    if following is None:
        return
    wait = max((following[1] - timezone.now()).total_seconds(), 0)
    if wait <= COUNTDOWN_MAX_SECONDS:
        event_send(event_id=following[0], countdown=wait or None)


def events_sweep(*, now: datetime | None = None) -> int:
    """Beat's upkeep (every WEBHOOK_SWEEP_SECONDS): send the events that are due and first in line of their
    subject but have no message on its way (a retry too far off for a countdown, a message the broker lost, a
    worker that died mid-attempt); and delete finished events older than WEBHOOK_LOG_DAYS with their attempts.
    Returns how many were sent."""
    now = now or timezone.now()
    earlier = WebhookEvent.objects.filter(
        customer_id=OuterRef("customer_id"),
        subject=OuterRef("subject"),
        sequence__lt=OuterRef("sequence"),
        state=EventState.PENDING,
    )
    due = (
        _claimable(now)
        .filter(Q(sent_at__isnull=True) | Q(sent_at__lt=now - RESEND_AFTER))
        .exclude(Exists(earlier))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:1000]
    )
    sent = sum(event_send(event_id=event_id) for event_id in list(due))
    old = now - timedelta(days=settings.WEBHOOK_LOG_DAYS)
    WebhookEvent.objects.filter(state__in=FINISHED_STATES, finished_at__lt=old).delete()
    return sent


def event_redeliver(*, event: WebhookEvent) -> bool:
    """An operator's "deliver again" of a failed or skipped event: pending again from now, with a fresh retry
    window. False for an event that is pending or was delivered."""
    now = timezone.now()
    ended = WebhookEvent.objects.filter(pk=event.pk, state__in=[EventState.FAILED, EventState.SKIPPED])
    again = ended.update(
        state=EventState.PENDING, next_attempt_at=now, created_at=now, finished_at=None, sent_at=None
    )
    if again:
        event_send(event_id=event.pk)
    return bool(again)
