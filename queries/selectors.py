"""Reads: the catalog as the API shows it, and a customer's query requests."""

from __future__ import annotations

from typing import Any

from insights.models import Customer
from queries.catalog import catalog
from queries.errors import QueryNotFound
from queries.models import QueryRequest

GUID_LENGTH = 32


def catalog_describe(*, verbose: bool = False) -> dict[str, Any]:
    """GET /dwh/Q: each event's own fields (the seed's shape); verbose adds every field with its type,
    description and display name, the common fields included (flagged `common`)."""
    events = catalog().events
    if not verbose:
        return {name: {"fields": [f.name for f in e.own_fields]} for name, e in events.items()}
    return {
        name: {
            "description": e.description,
            "fields": [
                {
                    "name": f.name,
                    "type": f.type.value,
                    "display_name": f.display_name,
                    "description": f.description,
                    "common": f.common,
                }
                for f in e.fields.values()
            ],
        }
        for name, e in events.items()
    }


def query_get(*, customer: Customer, guid: str) -> QueryRequest:
    """The customer's query with that guid; another customer's guid is not found, like an unknown one."""
    if len(guid) != GUID_LENGTH:
        raise QueryNotFound()
    try:
        return QueryRequest.objects.get(customer_id=customer.pk, guid=guid)
    except QueryRequest.DoesNotExist:
        raise QueryNotFound() from None
