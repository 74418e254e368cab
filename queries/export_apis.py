"""The exports resource (/_rest/v4/dwh/exports...): a customer's queries as exports, to list, read, fetch and
delete (Coveo's exports API, on our queries). Thin views over selectors and services."""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import UTC, datetime
from typing import Any

from django.http import HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from exports.bundle import zip_stream
from exports.storage.base import Storage
from insights.errors import DomainError
from queries import api_schema as doc
from queries.apis import QueryApiBase
from queries.delivery import query_storage
from queries.errors import QueryConflict, ResultGone
from queries.models import QueryRequest, QueryStatus
from queries.selectors import ExportFilters, exports_page, query_get
from queries.serializers import ExportPageSerializer, ExportSerializer
from queries.services import export_delete
from queries.timestamps import instant_parse

logger = logging.getLogger(__name__)

DEFAULT_LIMIT, MAX_LIMIT = 50, 500


class BadListParameter(DomainError):
    """A query-string parameter the API cannot read (400)."""


_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _redirect_wanted(params: Any) -> bool:
    if "redirect" not in params:
        return False
    wanted = _BOOLEANS.get(params["redirect"].lower())
    if wanted is None:
        raise BadListParameter("redirect must be true or false.")
    return wanted


class ExportCollectionApi(QueryApiBase):
    @extend_schema(
        operation_id="export_list",
        summary="The customer's exports, newest first",
        description="Cursor pagination: follow `next` until it is null. Another customer's queries never appear.",
        tags=["exports"],
        parameters=[
            OpenApiParameter(
                "status", OpenApiTypes.STR, enum=QueryStatus.values, description="Only this status."
            ),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="Submitted at or after (ISO 8601)."),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="Submitted before (ISO 8601)."),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                description="Page size (50).",
            ),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="From the previous page's `next`."),
            *doc.secured_headers(),
        ],
        responses=doc.secured({200: ExportPageSerializer, 400: doc.error("A parameter cannot be read.")}),
    )
    def get(self, request: Request) -> Response:
        filters, limit = _list_parameters(request)
        page, more = exports_page(customer=self.customer(request), filters=filters, limit=limit)
        following = None
        if more:
            query = request.query_params.copy()
            query["cursor"] = _cursor_encode(page[-1])
            following = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        body = {"exports": page, "next": following}
        return Response(ExportPageSerializer(body, context={"request": request}).data)


class ExportDetailApi(QueryApiBase):
    @extend_schema(
        operation_id="export_get",
        summary="One export, or (`?redirect=true`) its result",
        description="`?redirect=true`: one part is a 303 to its download (a presigned URL on S3); several parts "
        "are a zip of every part and the manifest, streamed. A query that has not Completed is a 409.",
        tags=["exports"],
        parameters=[
            doc.GUID,
            OpenApiParameter("redirect", OpenApiTypes.BOOL, description="true: the result itself."),
            *doc.secured_headers(doc.LOCATION.parameter(303)),
        ],
        responses=doc.secured(
            {
                200: ExportSerializer,
                (200, "application/zip"): OpenApiResponse(
                    OpenApiTypes.BINARY, "Every part and the manifest."
                ),
                303: OpenApiResponse(description="The one part's download (Location)."),
                400: doc.error("redirect is neither true nor false."),
                404: doc.NOT_FOUND,
                409: doc.error("redirect=true, and the query has no result (not Completed)."),
                410: doc.error("redirect=true, and the result's files were deleted."),
            }
        ),
    )
    def get(self, request: Request, guid: str) -> HttpResponse | StreamingHttpResponse | Response:
        query = query_get(customer=self.customer(request), guid=guid)
        if _redirect_wanted(request.query_params):
            return _result(request, query)
        return Response(ExportSerializer(query, context={"request": request}).data)

    @extend_schema(
        operation_id="export_delete",
        summary="Delete an export",
        description="A Pending query is canceled (202). An ended one is Deleted and its files are removed from "
        "its destination (200); GET /dwh/Q/{guid} then answers 410. Idempotent: repeat a delete that answered "
        "503 to finish it.",
        tags=["exports"],
        parameters=[doc.GUID, *doc.secured_headers()],
        responses=doc.secured(
            {
                200: ExportSerializer,
                202: ExportSerializer,
                404: doc.NOT_FOUND,
                503: doc.error("The destination could not be reached; nothing is lost: delete again."),
            }
        ),
    )
    def delete(self, request: Request, guid: str) -> Response:
        query = export_delete(query=query_get(customer=self.customer(request), guid=guid))
        code = (
            status.HTTP_202_ACCEPTED if query.status in (QueryStatus.PENDING, QueryStatus.CANCELED) else 200
        )
        return Response(ExportSerializer(query, context={"request": request}).data, status=code)


def _result(request: Request, query: QueryRequest) -> HttpResponse | StreamingHttpResponse:
    if query.status in (QueryStatus.EXPIRED, QueryStatus.DELETED):
        raise ResultGone(f"The result of query {query.guid} was deleted ({query.status}).")
    if query.status != QueryStatus.COMPLETED or not query.files:
        raise QueryConflict(f"Query {query.guid} has no result to download (status {query.status}).")
    if len(query.files) == 1:
        return HttpResponseRedirect(
            reverse("query-download-part", kwargs={"guid": query.guid, "part": 0}), status=303
        )
    storage = query_storage(query)
    entries = [(f["path"], f["path"].rsplit("/", 1)[-1]) for f in query.files]
    if query.manifest_path:
        entries.append((query.manifest_path, query.manifest_path.rsplit("/", 1)[-1]))
    response = StreamingHttpResponse(
        _closing(zip_stream(storage, entries), storage), content_type="application/zip"
    )
    response["Content-Disposition"] = f'attachment; filename="{query.filename or query.guid}.zip"'
    return response


def _closing(chunks: Any, storage: Storage) -> Any:
    try:
        yield from chunks
    finally:
        storage.close()


def _list_parameters(request: Request) -> tuple[ExportFilters, int]:
    params = request.query_params
    wanted = params.get("status")
    if wanted is not None and wanted not in QueryStatus.values:
        raise BadListParameter(f"status must be one of {', '.join(QueryStatus.values)}.")
    limit_text = params.get("limit", str(DEFAULT_LIMIT))
    if (
        not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 4)
        or not 1 <= int(limit_text) <= MAX_LIMIT
    ):
        raise BadListParameter(f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    filters = ExportFilters(
        status=wanted,
        since=_instant(params, "since"),
        until=_instant(params, "until"),
        after=_cursor_decode(params.get("cursor")),
    )
    return filters, int(limit_text)


def _instant(params: Any, name: str) -> datetime | None:
    text = params.get(name)
    if text is None:
        return None
    instant = instant_parse(text)
    if instant is None:
        raise BadListParameter(f"{name} must be an ISO 8601 date and time with T and Z or an offset.")
    return instant.value.replace(tzinfo=UTC)


def _cursor_encode(query: QueryRequest) -> str:
    text = f"{query.submitted_at.isoformat()}|{query.pk}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _cursor_decode(cursor: str | None) -> tuple[datetime, int] | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, pk = text.partition("|")
        submitted_at = datetime.fromisoformat(moment)
        if submitted_at.tzinfo is None or len(pk) > 19:
            raise ValueError(pk)
        return timezone.localtime(submitted_at, UTC), int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadListParameter("cursor is not one this API gave; start again without it.") from None
