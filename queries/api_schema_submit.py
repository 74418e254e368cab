"""The OpenAPI description of what POST /dwh/Q takes beside the body: `?dry_run`, `?wait`, `?max_age` and the
`Idempotency-Key` header (queries.quotes, queries.waiting, queries.reuse, queries.idempotency), and its 200,
which is either a quote (dry run) or the guid of an earlier POST with the same key.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter

from queries.api_schema import Components, JsonSchema, SchemaComponent
from queries.idempotency import HEADER, KEY_PATTERN, MAX_KEY_LENGTH
from queries.reuse import MAX_AGE_LIMIT
from queries.serializers import QueryAcceptedSerializer, QuoteSerializer


def submit_parameters() -> list[OpenApiParameter]:
    """The POST's query parameters and request header (settings read when the schema is generated)."""
    return [
        OpenApiParameter(
            "dry_run",
            {"type": "boolean"},
            OpenApiParameter.QUERY,
            description="true: validate and quote the query (rows, bytes, seconds, slots, queue ETA) and "
            "answer 200; nothing is created, queued or counted against a slot.",
        ),
        OpenApiParameter(
            "wait",
            {"type": "number", "minimum": 0, "maximum": settings.QUERY_WAIT_MAX_SECONDS},
            OpenApiParameter.QUERY,
            description="Hold the answer until the query has ended or this many seconds passed, and add its "
            "status document under `status`. The query goes on either way.",
        ),
        OpenApiParameter(
            "max_age",
            {"type": "integer", "minimum": 0, "maximum": MAX_AGE_LIMIT},
            OpenApiParameter.QUERY,
            description="Take the customer's own result of the same query (same fingerprint and output options) "
            "finished at most this many seconds ago, or join its run still Pending, instead of running it "
            "again. The body's `max_age` wins over this one.",
        ),
        OpenApiParameter(
            HEADER,
            {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": KEY_PATTERN},
            OpenApiParameter.HEADER,
            description="Repeat it to retry a POST safely: the same key and body within "
            f"{settings.IDEMPOTENCY_KEY_HOURS} h give the same guid (200, no new query); the same key with "
            "another body is a 422. Printable ASCII, no leading or trailing space; keys are per customer.",
        ),
    ]


class QueryQuoteOrReplay(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        return {
            "description": "`?dry_run=true`: the quote. Otherwise an Idempotency-Key repeated with the same "
            "body: the guid of the query the first POST made (with `status` under ?wait=N).",
            "oneOf": [components.of(QuoteSerializer), components.of(QueryAcceptedSerializer)],
        }


MAX_AGE_BODY: JsonSchema = {
    "type": "integer",
    "minimum": 0,
    "maximum": MAX_AGE_LIMIT,
    "description": "Seconds: take the customer's own result of the same query finished at most this long ago "
    "(or join its Pending run) instead of running it again; the reuse is Completed at once.",
}
