"""A customer's webhook endpoint, the events recorded for it, and the log of every delivery attempt.

An event is recorded (with its body, exactly as it is sent) when a state changes, in the transaction that changes
it; a Celery task delivers it once that commits. Events of one subject (a query, a schedule) carry a `sequence`
from 1 and are delivered in that order: a later one waits until the earlier one is delivered or given up.
"""

from __future__ import annotations

import secrets

from django.db import models
from django.utils import timezone


class EventType(models.TextChoices):
    QUERY_SUBMITTED = "query.submitted"
    QUERY_STARTED = "query.started"
    QUERY_COMPLETED = "query.completed"
    QUERY_FAILED = "query.failed"
    QUERY_CANCELED = "query.canceled"
    QUERY_EXPIRING = "query.expiring"  # 24 h before retention deletes the result
    QUERY_EXPIRED = "query.expired"
    QUERY_DELETED = "query.deleted"
    SCHEDULE_PAUSED = "schedule.paused"


def event_types_all() -> list[str]:
    """Every type: what a webhook takes when its `events` were not given."""
    return [str(value) for value in EventType.values]


class Webhook(models.Model):
    """The customer's one endpoint. The signing secret is kept encrypted (insights.secrets) and shown only in
    the answer that generated it."""

    customer = models.OneToOneField("insights.Customer", on_delete=models.CASCADE, related_name="webhook")
    url = models.CharField(max_length=2000, help_text="Where events are POSTed (https in production).")
    events = models.JSONField(default=event_types_all, help_text="The event types it takes.")
    secret_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    secret_rotated_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.url}"


def event_id_new() -> str:
    return f"evt_{secrets.token_hex(16)}"


class EventState(models.TextChoices):
    PENDING = "pending"  # to be delivered (now, or at next_attempt_at)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # a 3xx or 4xx, a refused address, or still failing after WEBHOOK_RETRY_HOURS
    SKIPPED = "skipped"  # the webhook was removed, or stopped taking the type, before delivery


FINISHED_STATES = (EventState.DELIVERED, EventState.FAILED, EventState.SKIPPED)


class WebhookEvent(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=event_id_new, editable=False)
    customer = models.ForeignKey("insights.Customer", on_delete=models.CASCADE, related_name="webhook_events")
    type = models.CharField(max_length=40, choices=EventType.choices)
    subject = models.CharField(max_length=100, help_text="What changed: a query's guid, a schedule.")
    sequence = models.PositiveIntegerField(help_text="The subject's events are numbered from 1.")
    # Set for changes that happen at most once to a subject (a query's completion): a second emit of the same
    # change (a hook and the reconciliation racing) records nothing.
    once_key = models.CharField(max_length=200, null=True, blank=True, unique=True, editable=False)
    body = models.TextField(help_text="The JSON POSTed, byte for byte (every attempt sends the same).")
    created_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=16, choices=EventState.choices, default=EventState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A delivery in progress holds the event until then (a worker that dies frees it when it passes).
    claimed_until = models.DateTimeField(null=True, blank=True)
    # When the last message handed to the broker for it is due; NULL: none is (the sweep sends one).
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "subject", "sequence"], name="webhook_event_sequence_unique"
            )
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="webhook_event_due")]
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.type} {self.subject} #{self.sequence}"


class WebhookSubject(models.Model):
    """The last sequence number given to a subject's events: kept apart from the events, so that pruning old
    events (WEBHOOK_LOG_DAYS) never numbers a subject's next event from 1 again."""

    customer = models.ForeignKey("insights.Customer", on_delete=models.CASCADE, related_name="+")
    subject = models.CharField(max_length=100)
    last_sequence = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "subject"], name="webhook_subject_unique")]

    def __str__(self) -> str:
        return f"{self.subject} ({self.last_sequence})"


class AttemptOutcome(models.TextChoices):
    DELIVERED = "delivered"
    RETRY = "retry"  # a timeout, a connection error or a 5xx: tried again later
    FAILED = "failed"  # not tried again


class DeliveryAttempt(models.Model):
    """One POST of an event (the customer's delivery log in the admin)."""

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="delivery_attempts")
    customer = models.ForeignKey(
        "insights.Customer", on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    number = models.PositiveIntegerField(help_text="1 for the first attempt.")
    url = models.CharField(max_length=2000)
    started_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(help_text="From the connection to the response's headers.")
    response_body = models.TextField(blank=True, help_text="Its first 1024 bytes.")
    error = models.CharField(max_length=500, blank=True, help_text="Why there was no (good) answer.")
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)

    class Meta:
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.event} attempt {self.number}: {self.status_code or self.error}"
