"""The OpenAPI schema of the query body (POST /_rest/v4/dwh/Q), built from the catalog: it names the real events
and fields and types each condition's value by its field, as validation does. It is never stricter than
validation (a body the schema refuses, the service refuses too, with a 400), only sometimes looser (the window's
width, `filters` naming an event missing from `data`, the query size limits, NUL characters: those are 400s the
schema cannot express).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

from exports.schema import ColumnType
from queries.api_schema import Components, JsonSchema, SchemaComponent
from queries.api_schema_submit import MAX_AGE_BODY
from queries.catalog import Event, catalog
from queries.export_settings import APPLIES, CHOICES, FORMATS, MAX_DESCRIPTION
from queries.spec import Op
from queries.validation import CORRELATION_KEY, INT64_MAX, INT64_MIN, LOWER_BOUNDS, UPPER_BOUNDS, QueryLimits

LIMITS = QueryLimits()
# What only a submitted query takes (its export's settings, and result reuse): previews and summaries do not.
SUBMISSION_KEYS = ("output", "description", "filename", "max_age")

# --- the query body's parts --------------------------------------------------------------------------------------


def _scalar(kind: ColumnType) -> JsonSchema:
    if kind is ColumnType.STRING:
        return {"type": "string", "maxLength": LIMITS.max_string_length}
    if kind is ColumnType.INTEGER:
        return {"type": "integer", "format": "int64", "minimum": INT64_MIN, "maximum": INT64_MAX}
    if kind is ColumnType.FLOAT:
        return {"type": "number", "format": "double"}
    if kind is ColumnType.BOOLEAN:
        return {"type": "boolean"}
    return {"type": "string", "format": "date-time", "description": "ISO 8601 with T and Z or an offset."}


def _operators(kind: ColumnType) -> JsonSchema:
    scalar = _scalar(kind)
    listed = {"type": "array", "items": scalar, "minItems": 1, "maxItems": LIMITS.max_in_values}
    return {
        "type": "object",
        "description": f"Conditions on a {kind.value} field; a record must meet all of them. `$ne` and `$nin` "
        "match a NULL value, the others never do.",
        "properties": {op.value: listed if op.takes_list else scalar for op in Op},
        "minProperties": 1,
        "additionalProperties": False,
    }


def _operators_ref(components: Components, kind: ColumnType) -> JsonSchema:
    return components.named(f"{kind.value.title()}Conditions", lambda: _operators(kind))


def _event_filters_ref(components: Components, event: Event) -> JsonSchema:
    def build() -> JsonSchema:
        return {
            "type": "object",
            "description": f"{event.name} field -> conditions.",
            "properties": {name: _operators_ref(components, f.type) for name, f in event.fields.items()},
            "additionalProperties": False,
        }

    return components.named(f"{event.name}Filters", build)


def _event_selection_ref(components: Components, event: Event) -> JsonSchema:
    def build() -> JsonSchema:
        return {
            "type": "object",
            "description": f"The {event.name} columns wanted (CSV columns in this order), and optionally "
            "conditions on its records (the same as a top-level `filters` entry).",
            "properties": {
                "fields": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(event.fields)},
                    "minItems": 1,
                    "uniqueItems": True,
                },
                "filters": _event_filters_ref(components, event),
            },
            "required": ["fields"],
            "additionalProperties": False,
        }

    return components.named(f"{event.name}Selection", build)


class TimestampWindow(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        bound = {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601 with T and Z or an offset.",
        }

        def exactly_one(ops: tuple[str, ...]) -> JsonSchema:
            return {"oneOf": [{"required": [op]} for op in ops]}

        return {
            "type": "object",
            "description": "One lower bound ($gte or $gt) and one upper bound ($lte or $lt); the window may span "
            "at most the customer's limit (31 days by default).",
            "properties": {op: bound for op in (*LOWER_BOUNDS, *UPPER_BOUNDS)},
            "allOf": [exactly_one(LOWER_BOUNDS), exactly_one(UPPER_BOUNDS)],
            "additionalProperties": False,
            "example": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
        }


class DataSelection(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        events = catalog().events.values()
        return {
            "type": "object",
            "description": "Event name -> the fields wanted from it (at least one event).",
            "properties": {event.name: _event_selection_ref(components, event) for event in events},
            "minProperties": 1,
            "additionalProperties": False,
        }


class EventFilters(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        events = catalog().events.values()
        return {
            "type": "object",
            "description": "Event name -> field -> conditions. At the top level each event must also be in "
            "`data`; in `scope.filters` any event may be named.",
            "properties": {event.name: _event_filters_ref(components, event) for event in events},
            "additionalProperties": False,
        }


class QueryScope(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        return {
            "type": "object",
            "description": "Keep only the sessions with a record in the window that meets `filters` (of any "
            "event); the result is then every record of the `data` events in those sessions.",
            "properties": {
                "filters": components.of(EventFilters),
                "scope": {"type": "string", "enum": [CORRELATION_KEY]},
            },
            "required": ["filters", "scope"],
            "additionalProperties": False,
        }


class OutputOptions(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        formats = {name: {"type": "string", "enum": list(values)} for name, values in CHOICES.items()}

        def only(format_name: str) -> JsonSchema:
            """The branch of one format: the options it takes, and none of the others."""
            other = [key for key in CHOICES if key not in APPLIES[format_name]]
            branch: JsonSchema = {"properties": {"format": {"enum": [format_name]}}, "required": ["format"]}
            if other:
                branch["not"] = {"anyOf": [{"required": [key]} for key in other]}
            return branch

        return {
            "type": "object",
            "description": "How the result's files are written. Defaults: csv, gzip, rfc4180, names (the "
            "original service's files). `compression` applies to csv and ndjson, `dialect` to csv only. "
            "`excel`: UTF-8 BOM, CRLF, formula-looking cells prefixed with '. `no_newline`: one line per "
            "record, CR and LF written as \\r and \\n. `header: display`: the catalog's display names.",
            "properties": formats,
            "additionalProperties": False,
            "oneOf": [
                {"not": {"required": ["format"]}, "properties": {}},
                *(only(name) for name in FORMATS),
            ],
        }


class QueryBody(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        return {
            "type": "object",
            "description": "A Mongo-style query over the customer's events; every name is case-sensitive. "
            "`output`, `description` and `filename` are the export's own settings.",
            "properties": {
                "timestamp": components.of(TimestampWindow),
                "data": components.of(DataSelection),
                "filters": components.of(EventFilters),
                "scope": components.of(QueryScope),
                "output": components.of(OutputOptions),
                "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
                "filename": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9._-]{1,100}$",
                    "description": "Names the downloads and the zip bundle (storage keys use the guid).",
                },
                "max_age": MAX_AGE_BODY,
            },
            "required": ["timestamp", "data"],
            "additionalProperties": False,
        }


QUERY_EXAMPLES: list[OpenApiExample] = [
    OpenApiExample(
        "Minimal",
        value={
            "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
            "data": {"ApplicationExitEvent": {"fields": ["FlowId"]}},
        },
        request_only=True,
    ),
    OpenApiExample(
        "Scoped",
        value={
            "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
            "data": {"ApplicationExitEvent": {"fields": ["FlowId", "ExitReason"]}},
            "scope": {"filters": {"DtmfEvent": {"DtmfInput": {"$eq": "0"}}}, "scope": "SessionId"},
            "filters": {"ApplicationExitEvent": {"ExitReason": {"$ne": "Normal"}}},
        },
        request_only=True,
    ),
]


class PreviewBody(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        query = QueryBody.openapi_schema(components)
        properties = {k: v for k, v in query["properties"].items() if k not in SUBMISSION_KEYS}
        return {
            "type": "object",
            "description": "A query body, plus how many rows to show and whether to name fields for people.",
            "properties": {
                **properties,
                "limit": {
                    "oneOf": [
                        {"type": "integer", "minimum": 1, "maximum": 10000},
                        {
                            "type": "string",
                            # 1..10000 in at most five digits, leading zeros allowed.
                            "pattern": "^(0{0,4}[1-9]|0{0,3}[1-9][0-9]|0{0,2}[1-9][0-9]{2}|0?[1-9][0-9]{3}|10000)$",
                            "description": 'A whole number from 1 to 10000, as giosg sends it ("2").',
                        },
                    ],
                    "default": 100,
                },
                "basic": {
                    "type": "boolean",
                    "default": False,
                    "description": "true: the catalog's display names.",
                },
            },
            "required": ["timestamp", "data"],
            "additionalProperties": False,
        }


class PreviewResult(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        return {
            "type": "object",
            "description": "The fields in column order, and the rows as objects keyed by field name.",
            "properties": {
                "fields": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "type": {
                                "type": "string",
                                "enum": ["datetime", "string", "integer", "float", "boolean"],
                            },
                            "tz": {"type": "string", "enum": ["UTC"], "description": "datetime fields only."},
                        },
                        "required": ["name", "type"],
                    },
                },
                "data": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            },
            "required": ["fields", "data"],
        }


class SummaryBody(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        query = QueryBody.openapi_schema(components)
        properties = {k: v for k, v in query["properties"].items() if k not in SUBMISSION_KEYS}
        return {
            "type": "object",
            "description": "A window (`timestamp`) alone: every event of the customer in it; with `data`, "
            "`filters` or `scope`: the rows that query would export.",
            "properties": properties,
            "required": ["timestamp"],
            "additionalProperties": False,
        }


_COUNT = {"type": "integer", "minimum": 0}
_NULLABLE_NUMBER = {"type": "number", "nullable": True}
_TIMESTAMP = {
    "type": "string",
    "format": "date-time",
    "nullable": True,
    "description": "YYYY-MM-DDTHH:MM:SS.mmmZ; null without rows.",
}


def _pairs(low: int, high: int, what: str) -> JsonSchema:
    return {
        "type": "array",
        "description": f"[rows, {what}] for every {what} from {low} to {high}, in order.",
        "minItems": high - low + 1,
        "maxItems": high - low + 1,
        "items": {"type": "array", "items": _COUNT, "minItems": 2, "maxItems": 2},
    }


class Summary(SchemaComponent):
    @classmethod
    def openapi_schema(cls, components: Components) -> JsonSchema:
        return {
            "type": "object",
            "description": "Summary figures of a result's rows (UTC). Distinct counts are exact up to 1,000,000 "
            "distinct values, then a HyperLogLog estimate: `approximate` says so.",
            "properties": {
                "rows": _COUNT,
                "rows_per_event": {"type": "object", "additionalProperties": _COUNT},
                "unique_sessions_count": {**_COUNT, "description": "Distinct non-null SessionId."},
                "unique_originators_count": {**_COUNT, "description": "Distinct non-null OriginatorId."},
                "approximate": {"type": "boolean"},
                "first_timestamp": _TIMESTAMP,
                "last_timestamp": _TIMESTAMP,
                "timeframe_stat": {
                    "type": "object",
                    "properties": {
                        "hour_in_day": _pairs(0, 23, "hour"),
                        "day_in_week": _pairs(1, 7, "ISO weekday (Monday = 1)"),
                    },
                    "required": ["hour_in_day", "day_in_week"],
                },
                "call_duration": {
                    "type": "object",
                    "description": "Duration of CallEvent rows (non-null values; null figures without any).",
                    "properties": {
                        "count": _COUNT,
                        "sum": _NULLABLE_NUMBER,
                        "min": _NULLABLE_NUMBER,
                        "max": _NULLABLE_NUMBER,
                        "mean": _NULLABLE_NUMBER,
                    },
                    "required": ["count", "sum", "min", "max", "mean"],
                },
                "disconnect_reason": {
                    "type": "array",
                    "description": "The 20 most frequent DisconnectReason values of CallEvent rows (ties by value).",
                    "maxItems": 20,
                    "items": {
                        "type": "object",
                        "properties": {"value": {"type": "string"}, "count": _COUNT},
                        "required": ["value", "count"],
                    },
                },
            },
            "required": [
                "rows",
                "rows_per_event",
                "unique_sessions_count",
                "unique_originators_count",
                "approximate",
                "first_timestamp",
                "last_timestamp",
                "timeframe_stat",
                "call_duration",
                "disconnect_reason",
            ],
        }
