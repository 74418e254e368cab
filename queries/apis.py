"""The Insights HTTP API (/_rest/v4/dwh/Q...): thin views over services and selectors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from exports.errors import ObjectNotFound, StorageError
from exports.results import part_content_type, part_extension
from exports.storage.base import Storage
from insights.models import Customer
from queries import api_schema as doc
from queries.api_schema_query import QUERY_EXAMPLES, QueryBody
from queries.api_schema_submit import QueryQuoteOrReplay, submit_parameters
from queries.delivery import query_storage
from queries.downloads import RangeNotSatisfiable, byte_range_parse
from queries.errors import PartNotFound, QueryConflict, QueryNotFound, ResultGone, ResultUnavailable
from queries.idempotency import HEADER as IDEMPOTENCY_HEADER
from queries.idempotency import idempotency_key_read
from queries.models import QueryRequest, QueryStatus
from queries.quotes import dry_run_read, query_quote
from queries.reuse import max_age_read
from queries.selectors import STATUS_FIELDS, catalog_describe, query_get
from queries.serializers import (
    GONE,
    QueryAcceptedSerializer,
    QueryCancelSerializer,
    QueryLocationSerializer,
    QueryStateSerializer,
    QuoteSerializer,
)
from queries.services import query_cancel
from queries.submission import query_submit
from queries.waiting import query_wait, wait_read

logger = logging.getLogger(__name__)

# What a part can be, by the export's output format (exports.writers.formats.OutputFormat.content_type).
PART_MEDIA_TYPES = (
    "application/gzip",
    "text/csv",
    "application/x-ndjson",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.apache.parquet",
)

CHUNK = 256 * 1024


def api_path_not_found(request: HttpRequest) -> HttpResponse:
    """The 404 for an API URL that no route matches (the root URL map's handler404 sends them here).

    Under dwh/Q/ it names a query that does not exist (a guid holding a '/', a negative part number), so it gets
    the unknown-guid list, as the documented 404 of those paths says; elsewhere the error envelope.
    """
    collection = reverse("query-collection")
    if request.path == collection + "/":
        body: Any = {"code": status.HTTP_404_NOT_FOUND, "message": f"Not found. Queries are at {collection}."}
    elif request.path.startswith(collection + "/"):
        body = QueryNotFound().body
    else:
        body = {"code": status.HTTP_404_NOT_FOUND, "message": "Not found."}
    return JsonResponse(body, status=status.HTTP_404_NOT_FOUND, safe=False)


def _author(principal: Any) -> str:
    """Who asked: an API key's name, or a user's."""
    name = getattr(principal, "name", None)  # insights.services.ApiKeyPrincipal
    return str(name) if name is not None else str(principal.get_username())


class QueryApiBase(APIView):
    """The customer's API: every view acts for the customer the credential belongs to."""

    def customer(self, request: Request) -> Customer:
        assert isinstance(request.auth, Customer)
        return request.auth


class QueryCollectionApi(QueryApiBase):
    """GET: the catalog (data dictionary). POST: submit a query."""

    @extend_schema(
        operation_id="catalog_get",
        summary="The data dictionary",
        description="Each event's own fields; `?verbose=1` lists every field with its type, display name and "
        "description.",
        tags=["queries"],
        parameters=[
            OpenApiParameter("verbose", OpenApiTypes.STR, description="1, true or yes: the verbose catalog."),
            *doc.secured_headers(),
        ],
        responses=doc.secured({200: doc.Catalog}),
    )
    def get(self, request: Request) -> Response:
        verbose = request.query_params.get("verbose", "") in ("1", "true", "yes")
        return Response(catalog_describe(verbose=verbose))

    @extend_schema(
        operation_id="query_create",
        summary="Submit a query",
        description="Validates the body, allocates a guid and queues the query; poll its status. "
        "`?dry_run=true` quotes it instead (200, nothing created); `?wait=N` answers once it ended or N seconds "
        "passed, with its status; `max_age` takes a recent result of the same query instead of a new run "
        "(Completed at once); `Idempotency-Key` makes a retried POST safe (200 with the first POST's guid).",
        tags=["queries"],
        request=QueryBody,
        examples=QUERY_EXAMPLES,
        parameters=[*submit_parameters(), *doc.secured_headers()],
        responses=doc.secured(
            {
                200: OpenApiResponse(
                    QueryQuoteOrReplay,
                    "?dry_run=true: the quote. Or the Idempotency-Key was sent before with this body: that query.",
                ),
                201: QueryAcceptedSerializer,
                400: doc.error(
                    "The body is not a valid query (or not JSON). The documented messages are objects: "
                    '`{"Date_Filters": {"message": ..., "code": "422-6"}}`, `{"Operators": ...}`; the rest '
                    'strings, such as "Flow Id is not a valid field.". Also a bad dry_run, wait, max_age or '
                    "Idempotency-Key."
                ),
                413: doc.error("The body is larger than the limit (API_MAX_BODY_BYTES, 64 KiB by default)."),
                415: doc.error("The body is not application/json."),
                422: doc.error(
                    "The Idempotency-Key was used with another body within IDEMPOTENCY_KEY_HOURS."
                ),
                503: doc.error("Dry run: the warehouse cannot answer now."),
            },
            throttled="The customer's concurrent-query limit is reached (`max concurrent queries per user (N) "
            "reached`), too many dry runs this minute, or this client failed to authenticate too often this "
            "minute: retry after Retry-After seconds.",
        ),
    )
    def post(self, request: Request) -> Response:
        customer, params = self.customer(request), request.query_params
        # Every parameter is checked first, so that a dry run refuses what the POST would refuse.
        dry_run, wait = dry_run_read(params.get("dry_run")), wait_read(params.get("wait"))
        idempotency_key = idempotency_key_read(request.headers.get(IDEMPOTENCY_HEADER))
        max_age = max_age_read(request.data, params.get("max_age"))
        if dry_run:
            return Response(QuoteSerializer(query_quote(customer=customer, body=request.data)).data)
        submitted = query_submit(
            customer=customer,
            body=request.data,
            author=_author(request.user),
            idempotency_key=idempotency_key,
            max_age=max_age,
        )
        query = submitted.query
        if wait is not None:
            query = query_wait(customer=customer, guid=query.guid, seconds=wait)
        return Response(
            QueryAcceptedSerializer(query, context={"waited": wait is not None}).data,
            status=status.HTTP_201_CREATED if submitted.created else status.HTTP_200_OK,
        )


class QueryStatusApi(QueryApiBase):
    @extend_schema(
        operation_id="query_status",
        summary="A query's status and progress",
        description="Pending, then Completed, Failed (with `messages`) or Canceled; Expired once retention "
        "deleted the files.",
        tags=["queries"],
        parameters=[doc.GUID, *doc.secured_headers()],
        responses=doc.secured({200: QueryStateSerializer, 404: doc.NOT_FOUND}),
    )
    def get(self, request: Request, guid: str) -> Response:
        return Response(
            QueryStateSerializer(
                query_get(customer=self.customer(request), guid=guid, fields=STATUS_FIELDS)
            ).data
        )


def _gone(query: QueryRequest) -> ResultGone:
    if query.status == QueryStatus.DELETED:
        return ResultGone(f"The result of query {query.guid} was deleted at the customer's request.")
    return ResultGone(
        f"The result of query {query.guid} has expired and its files were deleted; run the query again."
    )


def _file_headers(query: QueryRequest, part: dict[str, Any]) -> dict[str, str]:
    name = part["path"].rsplit("/", 1)[-1]
    if query.filename:  # the customer's name for the download; the stored key stays the guid's
        index = query.files.index(part)
        suffix = f"-{index:03d}" if len(query.files) > 1 else ""
        name = f"{query.filename}{suffix}.{part_extension(name)}"
    return {
        "Content-Type": part_content_type(name),
        "Content-Length": str(part["size"]),
        "ETag": f'"{part["sha256"]}"',
        "Last-Modified": http_date((query.finished_at or query.submitted_at).timestamp()),
        "Content-Disposition": f'attachment; filename="{name}"',
        "Accept-Ranges": "bytes",
    }


class QueryDetailApi(QueryApiBase):
    """GET: where the result is. HEAD: the first file's download headers. DELETE: cancel."""

    @extend_schema(
        operation_id="query_location",
        summary="Where a query's result is",
        description="The result's files once Completed, or why there are none.",
        tags=["queries"],
        parameters=[doc.GUID, *doc.secured_headers()],
        responses=doc.secured(
            {
                200: QueryLocationSerializer,
                404: doc.NOT_FOUND,
                410: doc.error("The result expired and its files were deleted (retention)."),
            }
        ),
    )
    def get(self, request: Request, guid: str) -> Response:
        query = query_get(customer=self.customer(request), guid=guid)
        if query.status in GONE:
            raise _gone(query)
        return Response(QueryLocationSerializer(query).data)

    def head(self, request: Request, guid: str) -> HttpResponse | Response:
        """A Completed query: the headers of its first file's download. Otherwise the headers of what GET
        answers (JSON, its length). No body either way (insights.middleware.head_without_body)."""
        query = query_get(customer=self.customer(request), guid=guid)
        response: HttpResponse | Response
        if query.status == QueryStatus.COMPLETED and query.files:
            response = HttpResponse(status=200)
            for key, value in _file_headers(query, query.files[0]).items():
                response[key] = value
            response["X-Row-Count"] = str(query.row_count or 0)
        elif query.status in GONE:
            gone = _gone(query)
            response = Response(gone.body, status=gone.status_code)
        else:
            response = Response(QueryLocationSerializer(query).data)
        response["X-Query-Status"] = query.status
        return response

    @extend_schema(
        operation_id="query_cancel",
        summary="Cancel a pending query",
        description="Idempotent: cancelling a Canceled query answers 202 again.",
        tags=["queries"],
        parameters=[doc.GUID, *doc.secured_headers()],
        responses=doc.secured(
            {
                202: QueryCancelSerializer,
                404: doc.NOT_FOUND,
                409: doc.error("The query already finished (Completed, Failed or Expired)."),
            }
        ),
    )
    def delete(self, request: Request, guid: str) -> Response:
        query = query_cancel(query=query_get(customer=self.customer(request), guid=guid))
        return Response(QueryCancelSerializer(query).data, status=status.HTTP_202_ACCEPTED)


class QueryDownloadApi(QueryApiBase):
    """A result part streamed over HTTPS, with single-range support."""

    @extend_schema(
        operation_id="query_download",  # the {part} path is renamed query_download_part by doc.schema_complete
        summary="Download part 0 of a result",
        description="The gzipped CSV part, streamed, with single-range support; or a 303 to a presigned URL "
        "where the result is on S3.",
        tags=["queries"],
        parameters=[
            doc.GUID,
            doc.RANGE,
            doc.IF_NONE_MATCH,
            *doc.secured_headers(
                *(header.parameter(200, 206) for header in doc.FILE_HEADERS),
                doc.CONTENT_RANGE.parameter(206, 416),
                doc.LOCATION.parameter(303),
            ),
        ],
        responses=doc.secured(
            {
                **{
                    (code, media_type): OpenApiResponse(OpenApiTypes.BINARY, description)
                    for media_type in PART_MEDIA_TYPES
                    for code, description in (
                        (200, "The whole part, in the export's output format (gzipped CSV by default)."),
                        (206, "The requested byte range."),
                    )
                },
                303: OpenApiResponse(description="The result is on S3: fetch it from Location (presigned)."),
                304: OpenApiResponse(
                    description="If-None-Match names the part's ETag: the copy held is current."
                ),
                404: OpenApiResponse(doc.DownloadNotFound, "An unknown guid, or no such part."),
                409: doc.error("The query has no result to download (not Completed)."),
                410: doc.error("The result's files were deleted (retention) after the query completed."),
                416: OpenApiResponse(description="The range starts past the end of the part."),
                503: doc.error("The storage holding the result cannot be reached; retry after Retry-After."),
            }
        ),
    )
    def get(self, request: Request, guid: str, part: int = 0) -> HttpResponse | StreamingHttpResponse:
        query = query_get(customer=self.customer(request), guid=guid)
        if query.status in GONE:
            raise _gone(query)
        if query.status != QueryStatus.COMPLETED:
            raise QueryConflict(f"Query {query.guid} has no result to download (status {query.status}).")
        if part >= len(query.files):
            raise PartNotFound(
                f"Query {query.guid} has {len(query.files)} part(s); part {part} does not exist."
            )
        entry = query.files[part]
        if _etag_matches(request.headers.get("If-None-Match"), entry):
            return _not_modified(query, entry)
        storage = query_storage(query)
        try:
            url = storage.presigned_url(entry["path"], settings.PRESIGNED_URL_SECONDS)
            if url:
                storage.close()
                return HttpResponseRedirect(url, status=status.HTTP_303_SEE_OTHER)
            return _stream(request, query, entry, storage)  # closes the storage once the file is sent
        except BaseException:
            storage.close()
            raise


class QueryPartNameApi(QueryApiBase):
    """`/download/<part>` where the part is not a number (`abc`, `-1`): the query's own 404 (the envelope naming
    the part), not the unknown-path one, for a guid the customer has. Not in the schema: the part is an integer."""

    @extend_schema(exclude=True)
    def get(self, request: Request, guid: str, part: str) -> Response:
        # Another customer's guid: the usual 404.
        query = query_get(customer=self.customer(request), guid=guid)
        raise PartNotFound(f"Query {query.guid} has no part {part!r}: parts are numbered from 0.")


def _etag_matches(header: str | None, entry: dict[str, Any]) -> bool:
    """Whether If-None-Match names the part's ETag (a part's bytes never change: its ETag is its sha256)."""
    if not header:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or f'"{entry["sha256"]}"' in tags


def _not_modified(query: QueryRequest, entry: dict[str, Any]) -> HttpResponse:
    response = HttpResponse(status=status.HTTP_304_NOT_MODIFIED)
    del response["Content-Type"]  # no body
    headers = _file_headers(query, entry)
    for key in ("ETag", "Last-Modified"):
        response[key] = headers[key]
    return response


def _stream(
    request: Request, query: QueryRequest, entry: dict[str, Any], storage: Storage
) -> HttpResponse | StreamingHttpResponse:
    size = int(entry["size"])
    try:
        wanted = byte_range_parse(request.headers.get("Range"), size)
    except RangeNotSatisfiable:
        storage.close()
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    first, last = wanted if wanted else (0, size - 1)
    try:
        stream = storage.open(entry["path"], start=first, end=last + 1)
    except ObjectNotFound:
        # Retention (or an operator) removed the file after this request read the query.
        raise ResultGone(
            f"The result of query {query.guid} is no longer available (its files were deleted); run the query "
            "again."
        ) from None
    except StorageError as error:
        logger.warning("query %s: its result cannot be read: %s", query.guid, error)
        raise ResultUnavailable(
            "The storage holding this result cannot be reached; try again later."
        ) from None
    streaming = StreamingHttpResponse(file_chunks(stream, storage), status=206 if wanted else 200)
    for key, value in _file_headers(query, entry).items():
        streaming[key] = value
    streaming["Content-Length"] = str(last - first + 1 if size else 0)
    if wanted:
        streaming["Content-Range"] = f"bytes {first}-{last}/{size}"
    return streaming


def file_chunks(stream: Any, storage: Storage) -> Iterator[bytes]:
    """The file's bytes; the stream and its storage (an SFTP connection) are closed when sending ends, also
    when the client goes away (the server closes this generator)."""
    try:
        with stream:
            while chunk := stream.read(CHUNK):
                yield chunk
    finally:
        storage.close()
