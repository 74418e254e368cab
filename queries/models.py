"""QueryRequest: one customer query, from POST to a published (or failed) result."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.db import models
from django.utils import timezone


def guid_new() -> str:
    return uuid.uuid4().hex


class QueryStatus(models.TextChoices):
    PENDING = "Pending"  # queued or running: holds one of the customer's slots
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    EXPIRED = "Expired"  # completed, files since deleted by retention
    DELETED = "Deleted"  # ended, and deleted at the customer's request (its files with it)


TERMINAL_STATUSES = (
    QueryStatus.COMPLETED,
    QueryStatus.FAILED,
    QueryStatus.CANCELED,
    QueryStatus.EXPIRED,
    QueryStatus.DELETED,
)


class QueryRequest(models.Model):
    guid = models.CharField(max_length=32, unique=True, default=guid_new, editable=False)
    customer = models.ForeignKey("insights.Customer", on_delete=models.PROTECT, related_name="queries")
    # Text, not a JSONField: PostgreSQL's jsonb would reorder the customer's keys (and so its columns).
    body = models.TextField(
        help_text="The request body as the customer sent it (JSON, in its own key order)."
    )
    fingerprint = models.CharField(max_length=64, db_index=True)
    # The export's own settings (POST keys beside the query): how its files are written and named.
    output = models.JSONField(default=dict, blank=True, help_text="The effective output options.")
    description = models.TextField(blank=True, max_length=500)
    filename = models.CharField(
        max_length=100,
        blank=True,
        help_text="Names the zip bundle and the downloads; storage keys use the guid.",
    )
    author = models.CharField(max_length=150, blank=True, help_text="The API key's or the user's name.")
    plan = models.TextField(
        blank=True,
        help_text="What a run executes, compiled once at POST (queries.plan): SQL, parameters, columns.",
    )
    status = models.CharField(max_length=16, choices=QueryStatus.choices, default=QueryStatus.PENDING)
    messages = models.JSONField(default=list, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # When the run was last handed to the broker; NULL: never, or the hand-over failed (the reaper retries).
    enqueued_at = models.DateTimeField(null=True, blank=True)

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
    summary = models.TextField(
        blank=True,
        default="",
        help_text="The result's summary figures, JSON text in its documented key order, counted in the export's "
        "pass; empty until Completed (and for queries completed before summaries were kept).",
    )
    # The publication journal: what an attempt is about to place at its destination (destination, files,
    # manifest), written just before the first final name appears and cleared when the query ends. An
    # attempt that died mid-publish leaves it behind for the next one to finish or roll back (queries.journal).
    publication = models.JSONField(null=True, blank=True)
    # A reused result (queries.reuse): this query runs nothing and takes no slot; it shows the result of the
    # query it names (the first one that ran), or follows it to its end while that one is still Pending.
    reused_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reuses",
        help_text="The query whose result this one shares (max_age); empty when it ran itself.",
    )

    class Meta:
        indexes = [models.Index(fields=["customer", "status"], name="query_customer_status")]
        ordering = ["-submitted_at"]

    def __str__(self) -> str:
        return self.guid

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def body_json(self) -> Any:
        """The body, decoded (objects keep the customer's key order)."""
        return json.loads(self.body)


class SliceState(models.TextChoices):
    QUEUED = "queued"  # waiting for a worker (again, after a retryable failure or a dead worker)
    RUNNING = "running"  # leased by a worker
    DONE = "done"  # its parts are at the destination, under hidden names, waiting for the query's last step


class QuerySlice(models.Model):
    """One TimeStamp range of a big export, written by a worker of its own (queries.slicing). A run of the
    query (its attempt) cuts it into slices; the last slice to finish numbers every slice's parts in time
    order, writes the manifest and publishes the query. Rows of older attempts are leftovers to sweep."""

    query = models.ForeignKey(QueryRequest, on_delete=models.CASCADE, related_name="slices")
    attempt = models.PositiveIntegerField(help_text="The query's attempt that cut this slice.")
    index = models.PositiveIntegerField(help_text="Its place in time order, from 0.")
    lower = models.DateTimeField(help_text="TimeStamp from (inclusive), naive UTC as the warehouse's.")
    upper = models.DateTimeField(help_text="TimeStamp until (exclusive).")
    state = models.CharField(max_length=16, choices=SliceState.choices, default=SliceState.QUEUED)
    runs = models.PositiveIntegerField(default=0, help_text="Workers that took it: the slice's own fence.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    rows = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    parts = models.JSONField(
        default=list,
        blank=True,
        help_text="Its parts at the destination: hidden key, size, rows, bytes, sha256.",
    )
    summary_state = models.BinaryField(
        null=True, blank=True, help_text="Its rows' summary, to merge with the other slices' (pickled)."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["query", "attempt", "index"], name="query_slice_unique"),
        ]
        ordering = ["query", "attempt", "index"]

    def __str__(self) -> str:
        return f"{self.query_id}/{self.attempt}/{self.index}"


class IdempotencyKey(models.Model):
    """A customer's `Idempotency-Key` and the query its first POST created (queries.idempotency): a POST
    repeating the key within IDEMPOTENCY_KEY_HOURS gets that query back instead of a new one."""

    customer = models.ForeignKey(
        "insights.Customer", on_delete=models.CASCADE, related_name="idempotency_keys"
    )
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(
        max_length=64,
        help_text="The query's fingerprint and its export settings, hashed: what 'the same body' is.",
    )
    query = models.ForeignKey(QueryRequest, on_delete=models.CASCADE, related_name="idempotency_keys")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "key"], name="idempotency_key_unique")]

    def __str__(self) -> str:
        return self.key


class RunRecord(models.Model):
    """One completed run, as the quote's estimates learn from it (queries.history): how many rows and
    uncompressed bytes it wrote for which events and fields, and how long it ran on which engine."""

    customer = models.ForeignKey("insights.Customer", on_delete=models.CASCADE, related_name="run_records")
    engine = models.CharField(max_length=32, help_text="The warehouse dialect the run read from.")
    shape = models.CharField(max_length=64, help_text="sha256 of the events and output columns (sorted).")
    output_format = models.CharField(max_length=16, default="csv")
    rows = models.BigIntegerField()
    bytes = models.BigIntegerField(help_text="Uncompressed bytes written (the CSV's, for csv).")
    seconds = models.FloatField(help_text="From the run's start to Completed.")
    finished_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["engine", "finished_at"], name="run_record_engine"),
            models.Index(fields=["shape", "finished_at"], name="run_record_shape"),
        ]

    def __str__(self) -> str:
        return f"{self.engine} {self.rows} rows in {self.seconds:.3f} s"
