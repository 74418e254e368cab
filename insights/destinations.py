"""Destinations as storage backends: a customer's configuration (and decrypted secrets) in, a Storage out."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from exports.storage import storage_for
from exports.storage.base import Storage
from insights.models import Customer, Destination, DestinationKind
from insights.secrets import secrets_decrypt, secrets_encrypt

SECRET_FIELDS = {
    DestinationKind.SFTP: ("password", "private_key"),
    DestinationKind.S3: ("secret_access_key",),
    DestinationKind.LOCAL: (),
}


def destination_default(customer: Customer) -> Destination | None:
    """The customer's default destination; None means this server's local export directory."""
    return customer.destinations.filter(is_default=True).first()


def destination_secrets_set(destination: Destination, **secrets: str | None) -> None:
    """Replace the given secrets (None keeps a secret, "" clears it) and save the encrypted form."""
    allowed = SECRET_FIELDS[DestinationKind(destination.kind)]
    unknown = set(secrets) - set(allowed)
    if unknown:
        raise ValueError(f"{destination.kind} destinations have no secret {sorted(unknown)}")
    current = secrets_decrypt(destination.secrets_encrypted)
    for name, value in secrets.items():
        if value is not None:
            current[name] = value
    destination.secrets_encrypted = secrets_encrypt(current)
    destination.save(update_fields=["secrets_encrypted"])


def destination_secret_names(destination: Destination) -> list[str]:
    """Which secrets are set (never their values)."""
    return sorted(secrets_decrypt(destination.secrets_encrypted))


def destination_storage(destination: Destination | None) -> Storage:
    """The storage backend of a destination (None: local storage)."""
    if destination is None or destination.kind == DestinationKind.LOCAL:
        return storage_for("local", root=settings.EXPORT_LOCAL_DIR)
    return storage_for(destination.kind, **_config(destination))


def _config(destination: Destination) -> dict[str, Any]:
    secrets = secrets_decrypt(destination.secrets_encrypted)
    if destination.kind == DestinationKind.SFTP:
        return {
            "host": destination.host,
            "port": destination.port,
            "username": destination.username,
            "password": secrets.get("password"),
            "private_key": secrets.get("private_key"),
            "host_key": destination.host_key,
            "base_dir": destination.base_dir or ".",
        }
    return {
        "bucket": destination.bucket,
        "prefix": destination.prefix,
        "region": destination.region or "us-east-1",
        "endpoint_url": destination.endpoint_url or None,
        "access_key_id": destination.access_key_id or None,
        "secret_access_key": secrets.get("secret_access_key"),
        "presign_expires": settings.PRESIGNED_URL_SECONDS,
    }


def destination_test(destination: Destination | None, *, customer: Customer | None = None) -> None:
    """Write, read back and delete a probe file where the customer's reports go; StorageError saying what is
    wrong otherwise."""
    owner = customer or (destination.customer if destination else None)
    with destination_storage(destination) as storage:
        storage.test_connection(prefix=f"reports/{owner.key}" if owner else "")
