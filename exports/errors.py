"""The toolkit's one error type: what failed, and whether doing the same again may succeed.

Each layer has its subclass (WarehouseError for engines, WriteError for writers, StorageError for storage),
so a caller can tell which part failed; `retryable` means the same on all of them. Messages name the kind of
failure only, never a password, a URL or SQL: they end up in logs.
"""

from __future__ import annotations


class ExportError(Exception):
    """A failure of the export toolkit. `retryable`: running the same operation again may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class WarehouseError(ExportError):
    """A warehouse engine failure."""


class WarehouseLocked(WarehouseError):
    """The warehouse file is held by another process (DuckDB: one writer, or readers, at a time)."""


class QueryCanceled(WarehouseError):
    """The statement was interrupted by cancel()."""


class WriteError(ExportError):
    """A writer could not produce its files."""


class WriteCanceled(WriteError):
    """The writer stopped because it was asked to (a cancel, the time limit, a lost lease)."""


class WriteLimitExceeded(WriteError):
    """The result outgrew its size cap."""


class StorageError(ExportError):
    """A storage backend failure."""


class ObjectNotFound(StorageError):
    """No object under that key."""


class PublishFenced(StorageError):
    """The commit check refused: nothing was published (never retryable)."""
