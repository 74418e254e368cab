"""Errors of the query domain. The API turns each into one JSON error shape (insights.errors)."""

from __future__ import annotations


class QueryError(Exception):
    """Base of the domain's errors; `message` is what the customer is shown."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class QueryNotFound(QueryError):
    def __init__(self) -> None:
        super().__init__("could not get QueryRequest object: QueryRequest matching query does not exist.")


class ConcurrencyLimitReached(QueryError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"max concurrent queries per user ({limit}) reached")
        self.limit = limit


class QueryConflict(QueryError):
    """The query is in a state that does not allow the operation (e.g. cancelling a finished query)."""


class QueryFailed(QueryError):
    """A run ended without a result; `message` is safe to show (no SQL, no paths, no traceback)."""
