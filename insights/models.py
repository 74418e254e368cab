"""Tenancy and access: customers, their API keys, the users who may log in for them, and issued tokens.

Secrets (API keys, access tokens) are never stored: only their SHA-256 digest (`hashed`) and a short random
`prefix` that lets an operator tell keys apart. Writes go through `insights.services`.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone


def default_max_window_days() -> int:
    """The settings value at creation time (a callable, so migrations don't freeze today's value)."""
    return int(settings.QUERY_MAX_WINDOW_DAYS)


# Limits are at least 1 (deactivate a customer to stop it), and within the smallint range, which SQLite
# does not enforce by itself.
SMALL_LIMIT = [MinValueValidator(1), MaxValueValidator(32767)]


class Customer(models.Model):
    """A tenant: it sees only warehouse rows whose `CustomerId` equals its `key`."""

    key = models.SlugField(
        max_length=64,
        unique=True,
        help_text="The CustomerId in the warehouse, and the directory under reports/.",
    )
    name = models.CharField(max_length=200)
    max_concurrent_queries = models.PositiveSmallIntegerField(
        default=2,
        validators=SMALL_LIMIT,
        help_text="Queries pending or running at once; one more is answered with 429.",
    )
    max_window_days = models.PositiveSmallIntegerField(
        default=default_max_window_days,
        validators=SMALL_LIMIT,
        help_text="Widest timestamp window a query may span, in days.",
    )
    max_bytes_per_query = models.BigIntegerField(
        default=10**12,
        validators=[MinValueValidator(1)],
        help_text="Cap on the uncompressed bytes one query may produce (default 1 TB).",
    )
    retention_days = models.PositiveSmallIntegerField(
        default=7,
        validators=SMALL_LIMIT,
        help_text="Result files older than this are deleted and the query becomes Expired.",
    )
    is_active = models.BooleanField(
        default=True, help_text="An inactive customer's keys and tokens are refused."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["key"]
        permissions = [("use_api", "Can use the Insights API")]

    def __str__(self) -> str:
        return self.key


class ApiKey(models.Model):
    """A long-lived credential of a customer, created in the admin or by `create_customer --api-key`."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="What the key is for, e.g. the system that uses it.")
    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    # SHA-256 rather than a slow password hash: the key carries 256 random bits, so guessing is hopeless at
    # any hash speed, and a per-request PBKDF2 would cost more than the whole status poll it guards.
    hashed = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix})"

    @property
    def display_prefix(self) -> str:
        """What an operator sees of the key: its public start, never the secret."""
        return f"ik_{self.prefix}…"


class ApiUser(models.Model):
    """Links a Django user to the customer it logs in for (`POST /_rest/v4/authenticate`)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_user")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="api_users")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "API user"

    def __str__(self) -> str:
        return f"{self.user} -> {self.customer}"


class AccessToken(models.Model):
    """A short-lived bearer token issued to an API user; stored as its SHA-256 digest only."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="access_tokens")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_tokens")
    prefix = models.CharField(max_length=16, editable=False)
    # A fast hash is right for the same reason as ApiKey.hashed: the token is 256 random bits.
    hashed = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(db_index=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.display_prefix} ({self.user})"

    @property
    def display_prefix(self) -> str:
        return f"it_{self.prefix}…"


class DestinationKind(models.TextChoices):
    LOCAL = "local", "Local directory (this server)"
    SFTP = "sftp", "SFTP"
    S3 = "s3", "S3 or S3-compatible"


class Destination(models.Model):
    """Where a customer's results are delivered. Secrets (SFTP password or key, S3 secret key) are stored
    encrypted with settings.SECRETS_KEY and never shown again; the rest is plain configuration."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="destinations")
    name = models.SlugField(max_length=64, help_text="How `redeliver --to` and the admin name it.")
    kind = models.CharField(max_length=8, choices=DestinationKind.choices, default=DestinationKind.LOCAL)
    is_default = models.BooleanField(default=True, help_text="New results of the customer go here.")
    # SFTP
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(
        default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    username = models.CharField(max_length=100, blank=True)
    base_dir = models.CharField(max_length=500, blank=True, default=".")
    host_key = models.TextField(
        blank=True, help_text="The server's pinned public host key, e.g. `ssh-ed25519 AAAA...` (required)."
    )
    # S3
    bucket = models.CharField(max_length=63, blank=True)
    prefix = models.CharField(max_length=500, blank=True)
    region = models.CharField(max_length=32, blank=True, default="us-east-1")
    endpoint_url = models.URLField(
        blank=True, help_text="For S3-compatible servers (MinIO ...); empty for AWS."
    )
    access_key_id = models.CharField(max_length=128, blank=True)
    secrets_encrypted = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["customer", "name"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "name"], name="destination_unique_name"),
            models.UniqueConstraint(
                fields=["customer"], condition=models.Q(is_default=True), name="destination_one_default"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer.key}/{self.name} ({self.kind})"
