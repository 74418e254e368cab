"""Reads: the catalog as the API shows it, and a customer's query requests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q

from insights.models import Customer
from queries.catalog import catalog
from queries.errors import QueryNotFound
from queries.models import QueryRequest, QueryStatus
from queries.reuse import follower_settle, followers_settle
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
    "reused_from",  # a reuse still following another query's run is settled when read (queries.reuse)
)


def query_get(*, customer: Customer, guid: str, fields: tuple[str, ...] | None = None) -> QueryRequest:
    """The customer's query with that guid; another customer's guid is not found, like an unknown one.

    `fields` limits the columns loaded (e.g. STATUS_FIELDS)."""
    if len(guid) != GUID_LENGTH:
        raise QueryNotFound()
    queryset = QueryRequest.objects.only(*fields) if fields else QueryRequest.objects.all()
    try:
        query = queryset.get(customer_id=customer.pk, guid=guid)
    except QueryRequest.DoesNotExist:
        raise QueryNotFound() from None
    if query.status == QueryStatus.PENDING and query.reused_from_id is not None and follower_settle(query):
        query = queryset.get(pk=query.pk)
    return query


@dataclass(frozen=True)
class ExportFilters:
    """What a customer's list of exports is narrowed to (GET /dwh/exports)."""

    status: str | None = None
    since: datetime | None = None  # submitted at or after
    until: datetime | None = None  # submitted before
    after: tuple[datetime, int] | None = None  # the cursor: (submitted_at, id) of the last one already seen


def exports_page(
    *, customer: Customer, filters: ExportFilters, limit: int
) -> tuple[list[QueryRequest], bool]:
    """The customer's queries, newest first, at most `limit`, and whether more follow."""
    followers_settle(customer=customer)  # reuses whose original ended show its end
    queryset = QueryRequest.objects.filter(customer_id=customer.pk).select_related("customer")
    if filters.status:
        queryset = queryset.filter(status=filters.status)
    if filters.since:
        queryset = queryset.filter(submitted_at__gte=filters.since)
    if filters.until:
        queryset = queryset.filter(submitted_at__lt=filters.until)
    if filters.after:
        submitted_at, pk = filters.after
        queryset = queryset.filter(Q(submitted_at__lt=submitted_at) | Q(submitted_at=submitted_at, pk__lt=pk))
    rows = list(queryset.order_by("-submitted_at", "-pk")[: limit + 1])
    return rows[:limit], len(rows) > limit
