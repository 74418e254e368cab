"""Reads: the catalog as the API shows it, and a customer's query requests."""

from __future__ import annotations

from typing import Any

from insights.models import Customer
from queries.catalog import catalog
from queries.errors import QueryNotFound
from queries.models import QueryRequest
from queries.serializers import CatalogFieldSerializer

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
            "fields": CatalogFieldSerializer(e.fields.values(), many=True).data,
        }
        for name, e in events.items()
    }


# What a status poll reads: polling is the hottest path, so it loads no body, SQL or file list.
STATUS_FIELDS = (
    "guid",
    "status",
    "messages",
    "progress_rows",
    "progress_bytes",
    "submitted_at",
    "started_at",
    "finished_at",
)


def query_get(*, customer: Customer, guid: str, fields: tuple[str, ...] | None = None) -> QueryRequest:
    """The customer's query with that guid; another customer's guid is not found, like an unknown one.

    `fields` limits the columns loaded (e.g. STATUS_FIELDS)."""
    if len(guid) != GUID_LENGTH:
        raise QueryNotFound()
    queryset = QueryRequest.objects.only(*fields) if fields else QueryRequest.objects.all()
    try:
        return queryset.get(customer_id=customer.pk, guid=guid)
    except QueryRequest.DoesNotExist:
        raise QueryNotFound() from None
