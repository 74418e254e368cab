"""Where a customer's results go (DESIGN §5)."""

from __future__ import annotations

from django.conf import settings

from exports.storage import storage_for
from exports.storage.base import Storage
from insights.models import Customer


def customer_storage(customer: Customer) -> Storage:
    """The customer's export destination. Local storage until per-customer destinations exist."""
    return storage_for("local", root=settings.EXPORT_LOCAL_DIR)


def report_key(customer: Customer, name: str) -> str:
    """The storage key of a result file: `reports/<customer key>/<name>`."""
    return f"reports/{customer.key}/{name}"
