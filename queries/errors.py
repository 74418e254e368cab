"""Errors of the query domain, each with the HTTP status it means (rendered by insights.errors)."""

from __future__ import annotations

from typing import Any

from insights.errors import DomainError

# Seconds a client told "too many queries" waits before trying again.
RETRY_AFTER_SECONDS = 5


class QueryError(DomainError):
    """Base of the domain's errors; `message` is what the customer is shown."""


class QueryNotFound(QueryError):
    """An unknown guid, or another customer's: the original service's body, a list (it answers 500; we 404)."""

    status_code = 404

    def __init__(self) -> None:
        super().__init__("could not get QueryRequest object: QueryRequest matching query does not exist.")

    @property
    def body(self) -> Any:
        return [{"message": self.message, "code": self.status_code}]


class ConcurrencyLimitReached(QueryError):
    status_code = 429

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"max concurrent queries per user ({limit}) reached",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
        self.limit = limit


class QueryConflict(QueryError):
    """The query is in a state that does not allow the operation (e.g. cancelling a finished query)."""

    status_code = 409


class ResultGone(QueryError):
    """The result's files were deleted (retention, or after the query read its row)."""

    status_code = 410


class ResultUnavailable(QueryError):
    """The storage holding the result cannot be reached now."""

    status_code = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class PartNotFound(QueryError):
    """The query exists but has no such part: the error envelope, not the unknown-guid list."""

    status_code = 404


class QueryFailed(QueryError):
    """A run ended without a result; `message` is safe to show (no SQL, no paths, no traceback)."""
