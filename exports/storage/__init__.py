"""Storage backends, chosen by kind: `storage_for("local", root=...)`.

A new backend (SFTP, S3, ...) is one module or package here with one `Storage` subclass, plus one line in
_BACKENDS. Modules are imported on first use, so a backend's client library (paramiko, boto3) loads
only where it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from exports.errors import ObjectNotFound, StorageError
from exports.storage.base import ObjectStat, Storage, key_validate

# kind -> "module:Class"
_BACKENDS: dict[str, str] = {
    "local": "exports.storage.local:LocalStorage",
    "sftp": "exports.storage.sftp:SftpStorage",
    "s3": "exports.storage.s3:S3Storage",
}


def storage_kinds() -> list[str]:
    return sorted(_BACKENDS)


def storage_for(kind: str, **config: Any) -> Storage:
    """A backend of the given kind built from its configuration; StorageError for an unknown kind or a
    configuration the backend does not accept."""
    try:
        target = _BACKENDS[kind]
    except KeyError:
        raise StorageError(f"unknown storage kind {kind!r} (known: {', '.join(storage_kinds())})") from None
    module_name, _, class_name = target.partition(":")
    backend: type[Storage] = getattr(importlib.import_module(module_name), class_name)
    try:
        return backend(**config)
    except TypeError as exc:
        raise StorageError(f"invalid {kind} storage configuration: {exc}") from exc


__all__ = [
    "ObjectNotFound",
    "ObjectStat",
    "Storage",
    "StorageError",
    "key_validate",
    "storage_for",
    "storage_kinds",
]
