"""Errors of the schedules domain, each with the HTTP status it means (rendered by insights.errors)."""

from __future__ import annotations

from insights.errors import DomainError
from queries.validation import printable


class ScheduleInvalid(DomainError):
    """A schedule the service refuses (400): `message` says what to change."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


class ScheduleNotFound(DomainError):
    """An unknown schedule id, or another customer's (404, in the error envelope)."""

    status_code = 404

    def __init__(self) -> None:
        super().__init__("No schedule of yours has this id.")
