"""Look before you export: POST /dwh/Q/preview (the first rows, at once), GET /dwh/Q/{guid}/summary and
POST /dwh/summary (summary figures). Thin views over queries.preview and queries.summary."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from queries import api_schema as doc
from queries.api_schema_query import PreviewBody, PreviewResult, Summary, SummaryBody
from queries.apis import QueryApiBase
from queries.preview import query_preview
from queries.selectors import query_get
from queries.summary import query_summary, window_summary

THROTTLED = (
    "Too many previews and summaries this minute, or too many failed authentications: retry after "
    "Retry-After seconds."
)


class QueryPreviewApi(QueryApiBase):
    @extend_schema(
        operation_id="query_preview",
        summary="The first rows of a query's result, at once",
        description="The first `limit` rows (1-10000, default 100) of exactly the result the export would have, "
        "as JSON values; `basic: true` names the fields with the catalog's display names. Takes no concurrency "
        "slot; bounded by PREVIEW_TIME_LIMIT_SECONDS (then 422: submit it as a query) and PREVIEW_PER_MINUTE "
        "per customer (then 429).",
        tags=["queries"],
        request=PreviewBody,
        parameters=doc.secured_headers(),
        responses=doc.secured(
            {
                200: PreviewResult,
                400: doc.error("The body is not a valid query, or limit/basic is out of range."),
                413: doc.error("The body is larger than the limit (API_MAX_BODY_BYTES)."),
                415: doc.error("The body is not application/json."),
                422: doc.error(
                    "The preview took longer than PREVIEW_TIME_LIMIT_SECONDS: submit it as a query."
                ),
                503: doc.error("The warehouse cannot answer now."),
            },
            throttled=THROTTLED,
        ),
    )
    def post(self, request: Request) -> Response:
        return Response(query_preview(customer=self.customer(request), body=request.data))


class QuerySummaryApi(QueryApiBase):
    @extend_schema(
        operation_id="query_summary",
        summary="A Completed query's summary figures",
        description="Counted in the export's own pass (no second scan); the manifest's `summary` holds the same "
        "object.",
        tags=["queries"],
        parameters=[doc.GUID, *doc.secured_headers()],
        responses=doc.secured(
            {
                200: Summary,
                404: doc.NOT_FOUND,
                409: doc.error("The query is not Completed (or completed before summaries were kept)."),
            }
        ),
    )
    def get(self, request: Request, guid: str) -> Response:
        return Response(query_summary(query_get(customer=self.customer(request), guid=guid)))


class WindowSummaryApi(QueryApiBase):
    @extend_schema(
        operation_id="summary",
        summary="Summary figures of a window, at once (the sidedata call)",
        description="`timestamp` alone: every event of the customer in the window; `data`, `filters` and "
        "`scope` narrow it as in a query. Computed by the warehouse; bounded like a preview "
        "(PREVIEW_TIME_LIMIT_SECONDS, then 422; PREVIEW_PER_MINUTE per customer, previews and summaries "
        "together, then 429).",
        tags=["queries"],
        request=SummaryBody,
        parameters=doc.secured_headers(),
        responses=doc.secured(
            {
                200: Summary,
                400: doc.error("The body is not a valid query body."),
                413: doc.error("The body is larger than the limit (API_MAX_BODY_BYTES)."),
                415: doc.error("The body is not application/json."),
                422: doc.error(
                    "The summary took longer than PREVIEW_TIME_LIMIT_SECONDS: submit it as a query."
                ),
                503: doc.error("The warehouse cannot answer now."),
            },
            throttled=THROTTLED,
        ),
    )
    def post(self, request: Request) -> Response:
        return Response(window_summary(customer=self.customer(request), body=request.data))
