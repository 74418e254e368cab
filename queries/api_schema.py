"""What the OpenAPI description of the query API needs beyond its serializers (queries.serializers,
insights.serializers): the bodies a serializer cannot say, headers, examples, and the HEAD operation.

Nothing here runs on a request. Each component is a `SchemaComponent` whose JSON schema is written out by hand,
because the bodies are exact (`{"code": 401, "error": "Unauthorized"}`, a 404 that is a list, the catalog keyed
by event names). The query body, whose names a serializer field cannot have (`$gte`), is in
queries.api_schema_query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from insights.serializers import ErrorEnvelopeSerializer
from queries.models import QueryStatus
from queries.serializers import CatalogFieldSerializer
from queries.validation import (
    QueryLimits,
)

JsonSchema = dict[str, Any]
GUID_PATTERN = "^[0-9a-f]{32}$"
LIMITS = QueryLimits()


class Components:
    """Hands out `$ref`s to named schemas, registering each once in the schema being generated."""

    def __init__(self, auto_schema: AutoSchema, direction: Any) -> None:
        self._auto_schema = auto_schema
        self._direction = direction

    def of(self, component: type[serializers.Serializer]) -> JsonSchema:
        """A reference to a serializer's or another SchemaComponent's schema (registered under its name)."""
        return dict(self._auto_schema.resolve_serializer(component, self._direction).ref)

    def named(self, name: str, build: Callable[[], JsonSchema]) -> JsonSchema:
        """A reference to a schema with no class of its own (one per catalog event or column type)."""
        component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name)
        if component not in self._auto_schema.registry:
            component.schema = build()
            self._auto_schema.registry.register(component)
        return dict(component.ref)


class SchemaComponent(serializers.Serializer):
    """A named component of the OpenAPI schema; subclasses say what it is in `openapi_schema`."""

    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        raise NotImplementedError


class SchemaComponentExtension(OpenApiSerializerExtension):
    """Lets drf-spectacular publish a SchemaComponent's hand-written schema under the class's name."""

    target_class = SchemaComponent
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> JsonSchema:
        return type(self.target).openapi_schema(Components(auto_schema, direction))


# --- errors ----------------------------------------------------------------------------------------


class Unauthorized(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        return {
            "type": "object",
            "description": "A missing, malformed, unknown, revoked or expired credential.",
            "properties": {
                "code": {"type": "integer", "enum": [401]},
                "error": {"type": "string", "enum": ["Unauthorized"]},
            },
            "required": ["code", "error"],
        }


class NotFoundList(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        return {
            "type": "array",
            "description": "An unknown guid, or another customer's: the original API's body, a one-item list "
            "(the original answers 500; this service answers 404).",
            "items": {
                "type": "object",
                "properties": {
                    "message": {
                        "type": "string",
                        "example": "could not get QueryRequest object: QueryRequest matching query does not exist.",
                    },
                    "code": {"type": "integer", "enum": [404]},
                },
                "required": ["message", "code"],
            },
            "minItems": 1,
            "maxItems": 1,
        }


class DownloadNotFound(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        return {
            "description": "An unknown guid (the list), or a part number past the last part (the envelope).",
            "oneOf": [components.of(NotFoundList), components.of(ErrorEnvelopeSerializer)],
        }


# --- query results -----------------------------------------------------------------------------------


def _statuses() -> list[str]:
    return [str(choice) for choice in QueryStatus.values]


# --- the catalog (data dictionary) ---------------------------------------------------------------------


class Catalog(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        plain = {"type": "array", "items": {"type": "string"}, "description": "The event's own fields."}
        verbose = {
            "type": "array",
            "items": components.of(CatalogFieldSerializer),
            "description": "Every field, the common ones included (verbose).",
        }
        return {
            "type": "object",
            "description": "Event name -> its fields; `?verbose=1` adds each field's type, display name and "
            "description, and the event's description.",
            "additionalProperties": {
                "type": "object",
                "properties": {"description": {"type": "string"}, "fields": {"anyOf": [plain, verbose]}},
                "required": ["fields"],
            },
        }


# --- parameters, response headers and shared responses -----------------------------------------------------

GUID = OpenApiParameter(
    "guid",
    {"type": "string", "pattern": GUID_PATTERN},
    OpenApiParameter.PATH,
    description="The id POST answered; any other string is a 404.",
)
RANGE = OpenApiParameter(
    "Range",
    {"type": "string"},
    OpenApiParameter.HEADER,
    description="One byte range, `bytes=<first>-[<last>]` or `bytes=-<suffix>`; anything else is ignored "
    "and the whole part is sent.",
)
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    {"type": "string"},
    OpenApiParameter.HEADER,
    description="The part's ETag from an earlier download (or `*`): 304 Not Modified, no body, when it matches.",
)


@dataclass(frozen=True)
class Header:
    """A response header: documented on the operations through drf-spectacular, or raw in the HEAD hook."""

    name: str
    schema: JsonSchema
    description: str
    required: bool = True

    def parameter(self, *codes: int) -> OpenApiParameter:
        return OpenApiParameter(
            self.name,
            self.schema,
            OpenApiParameter.HEADER,
            required=self.required,
            description=self.description,
            response=list(codes),
        )

    def definition(self) -> JsonSchema:
        return {"schema": self.schema, "description": self.description, "required": self.required}


CONTENT_LENGTH = Header("Content-Length", {"type": "integer", "minimum": 0}, "Bytes of the body.")
ETAG = Header("ETag", {"type": "string", "pattern": '^"[0-9a-f]{64}"$'}, "The part's SHA-256, quoted.")
LAST_MODIFIED = Header("Last-Modified", {"type": "string"}, "When the query finished (an HTTP date).")
CONTENT_DISPOSITION = Header(
    "Content-Disposition", {"type": "string"}, 'attachment; filename="<guid>_QueryExport_<ms>__<part>.csv.gz"'
)
ACCEPT_RANGES = Header(
    "Accept-Ranges", {"type": "string", "enum": ["bytes"]}, "Single byte ranges are served."
)
CONTENT_RANGE = Header(
    "Content-Range",
    {"type": "string", "pattern": r"^bytes ([0-9]+-[0-9]+|\*)/[0-9]+$"},
    "206: the bytes sent, `bytes <first>-<last>/<size>`; 416: `bytes */<size>`.",
)
LOCATION = Header("Location", {"type": "string", "format": "uri"}, "A presigned URL of the part (S3).")
RETRY_AFTER = Header("Retry-After", {"type": "integer", "minimum": 1}, "Seconds to wait before trying again.")
WWW_AUTHENTICATE = Header("WWW-Authenticate", {"type": "string"}, 'The challenge: Bearer realm="insights".')
QUERY_STATUS = Header("X-Query-Status", {"type": "string", "enum": _statuses()}, "The query's status.")
ROW_COUNT = Header(
    "X-Row-Count",
    {"type": "integer", "minimum": 0},
    "Rows of the whole result (Completed only).",
    required=False,
)

# The headers a download of a part carries; HEAD repeats those of part 0 once the query is Completed.
FILE_HEADERS = (CONTENT_LENGTH, ETAG, LAST_MODIFIED, CONTENT_DISPOSITION, ACCEPT_RANGES)

UNAUTHORIZED = OpenApiResponse(
    Unauthorized, "No, a malformed, an unknown, a revoked or an expired credential."
)
NOT_FOUND = OpenApiResponse(NotFoundList, "No query of this customer has this guid.")
AUTH_THROTTLED = (
    "Too many failed authentications from this client this minute: retry after Retry-After seconds."
)


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorEnvelopeSerializer, description)


def secured(responses: dict[Any, Any], *, throttled: str = AUTH_THROTTLED) -> dict[Any, Any]:
    """An operation's responses plus the two every Bearer-protected operation can give: 401 and 429."""
    return {**responses, 401: UNAUTHORIZED, 429: error(throttled)}


def secured_headers(*headers: OpenApiParameter) -> list[OpenApiParameter]:
    """Response headers of an operation, plus those of its 401 (the challenge) and 429 (Retry-After)."""
    return [*headers, WWW_AUTHENTICATE.parameter(401), RETRY_AFTER.parameter(429)]


# --- what drf-spectacular cannot see ---------------------------------------------------------------------


def schema_complete(result: JsonSchema, generator: Any, request: Any, public: bool) -> JsonSchema:
    """POSTPROCESSING_HOOKS entry: name the part download apart, and document HEAD.

    One view serves `/download` and `/download/{part}`, so both start as `query_download`; and drf-spectacular
    leaves every HEAD out, while the API promises one (docs/DESIGN.md §3): the headers of the first part's download.
    """
    for path, item in result["paths"].items():
        get = item.get("get", {})
        if get.get("operationId") == "query_download" and "{part}" in path:
            _part_download_describe(get)
        if get.get("operationId") == "query_location":
            item["head"] = _head_operation(get)
    return result


def _part_download_describe(operation: JsonSchema) -> None:
    operation["operationId"] = "query_download_part"
    operation["summary"] = "Download part N of a result"
    for parameter in operation["parameters"]:
        if parameter["name"] == "part":  # Django's int converter takes digits only
            parameter["schema"]["minimum"] = 0
            parameter["description"] = "The part number, from 0."


def _head_operation(location: JsonSchema) -> JsonSchema:
    ok_headers = {h.name: {**h.definition(), "required": False} for h in FILE_HEADERS}
    ok_headers[CONTENT_LENGTH.name] = CONTENT_LENGTH.definition()  # the file's, or the JSON's GET would send
    ok_headers[QUERY_STATUS.name] = QUERY_STATUS.definition()
    ok_headers[ROW_COUNT.name] = ROW_COUNT.definition()
    responses = location["responses"]
    return {
        "operationId": "query_head",
        "summary": "The first part's download headers",
        "description": "No body. Once the query is Completed: the headers a download of part 0 carries "
        "(Content-Type application/gzip, Content-Length, ETag, Last-Modified, Content-Disposition) plus "
        "X-Row-Count; otherwise the headers of what GET answers (Content-Type application/json and its "
        "Content-Length; 410 once the result expired). X-Query-Status always.",
        "tags": location.get("tags", []),
        "parameters": location.get("parameters", []),
        "security": location.get("security", []),
        "responses": {
            "200": {"description": "The query exists.", "headers": ok_headers},
            "401": responses["401"],
            "410": {
                "description": "The result expired and its files were deleted (retention).",
                "headers": {QUERY_STATUS.name: QUERY_STATUS.definition()},
            },
            "404": responses["404"],
            "429": responses["429"],
        },
    }
