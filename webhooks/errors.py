"""Errors of the webhook API, each with the HTTP status it means (rendered by insights.errors)."""

from __future__ import annotations

from insights.errors import DomainError


class WebhookNotFound(DomainError):
    status_code = 404

    def __init__(self) -> None:
        super().__init__("No webhook is set for this account; PUT /_rest/v4/webhook sets one.")


class UrlRefused(DomainError):
    """The webhook URL is not one events may be sent to. `retryable`: it may be fine later (its host did not
    resolve); otherwise it never will be (a scheme, or an address inside the deployment's network)."""

    status_code = 400

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__({"url": [reason]})
        self.reason = reason
        self.retryable = retryable
