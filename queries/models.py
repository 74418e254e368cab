"""QueryRequest: one customer query, from POST to a published (or failed) result."""

from __future__ import annotations

import uuid

from django.db import models


def guid_new() -> str:
    return uuid.uuid4().hex


class QueryStatus(models.TextChoices):
    PENDING = "Pending"  # queued or running: holds one of the customer's slots
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    EXPIRED = "Expired"  # completed, files since deleted by retention


TERMINAL_STATUSES = (QueryStatus.COMPLETED, QueryStatus.FAILED, QueryStatus.CANCELED, QueryStatus.EXPIRED)


class QueryRequest(models.Model):
    guid = models.CharField(max_length=32, unique=True, default=guid_new, editable=False)
    customer = models.ForeignKey("insights.Customer", on_delete=models.PROTECT, related_name="queries")
    body = models.JSONField(help_text="The request body as the customer sent it.")
    fingerprint = models.CharField(max_length=64, db_index=True)
    compiled_sql = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=QueryStatus.choices, default=QueryStatus.PENDING)
    messages = models.JSONField(default=list, blank=True)
    cancel_requested = models.BooleanField(default=False)

    # Execution: attempt is the fencing token of the current lease; only its holder may publish.
    attempts = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    progress_rows = models.BigIntegerField(default=0)
    progress_bytes = models.BigIntegerField(default=0)

    submitted_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    destination = models.ForeignKey(
        "insights.Destination",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="queries",
        help_text="Where the files were published; empty means this server's local export directory.",
    )
    delivery_attempts = models.PositiveIntegerField(default=0)
    files = models.JSONField(
        default=list, blank=True, help_text="Published parts: path, size, rows, bytes, sha256."
    )
    manifest_path = models.CharField(max_length=500, blank=True)
    row_count = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["customer", "status"], name="query_customer_status")]
        ordering = ["-submitted_at"]

    def __str__(self) -> str:
        return self.guid

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES
