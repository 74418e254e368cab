"""The OpenAPI schema (/_rest/v4/schema): valid, complete, and true to what the service answers.

The checks over HTTP against the running service are in test_schemathesis.py; these run in-process.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, FormatChecker

from queries.apis import PART_MEDIA_TYPES
from queries.catalog import catalog
from queries.spec import Op
from queries.validation import QueryValidationError, date_filters_message, operators_message, query_validate

AUTHENTICATE = "/_rest/v4/authenticate"
COLLECTION = "/_rest/v4/dwh/Q"
DETAIL = "/_rest/v4/dwh/Q/{guid}"
STATUS = "/_rest/v4/dwh/Q/{guid}/status"
DOWNLOAD = "/_rest/v4/dwh/Q/{guid}/download"
DOWNLOAD_PART = "/_rest/v4/dwh/Q/{guid}/download/{part}"
PREVIEW = "/_rest/v4/dwh/Q/preview"
QUERY_SUMMARY = "/_rest/v4/dwh/Q/{guid}/summary"
SUMMARY = "/_rest/v4/dwh/summary"
EXPORTS = "/_rest/v4/dwh/exports"
EXPORT = "/_rest/v4/dwh/exports/{guid}"
WEBHOOK = "/_rest/v4/webhook"
SCHEDULES = "/_rest/v4/dwh/schedules"
SCHEDULE = "/_rest/v4/dwh/schedules/{schedule_id}"
SCHEDULE_RUN = "/_rest/v4/dwh/schedules/{schedule_id}/run"
# Every operation of docs/DESIGN.md §3, with every status it can answer.
OPERATIONS = {
    (AUTHENTICATE, "post"): {"200", "400", "401", "413", "415", "429"},
    (COLLECTION, "get"): {"200", "401", "429"},
    (COLLECTION, "post"): {"200", "201", "400", "401", "413", "415", "422", "429", "503"},
    (STATUS, "get"): {"200", "401", "404", "429"},
    (DETAIL, "get"): {"200", "401", "404", "410", "429"},
    (DETAIL, "head"): {"200", "401", "404", "410", "429"},
    (DETAIL, "delete"): {"202", "401", "404", "409", "429"},
    (DOWNLOAD, "get"): {"200", "206", "303", "304", "401", "404", "409", "410", "416", "429", "503"},
    (DOWNLOAD_PART, "get"): {"200", "206", "303", "304", "401", "404", "409", "410", "416", "429", "503"},
    (PREVIEW, "post"): {"200", "400", "401", "413", "415", "422", "429", "503"},
    (QUERY_SUMMARY, "get"): {"200", "401", "404", "409", "429"},
    (SUMMARY, "post"): {"200", "400", "401", "413", "415", "422", "429", "503"},
    (EXPORTS, "get"): {"200", "400", "401", "429"},
    (EXPORT, "get"): {"200", "303", "400", "401", "404", "409", "410", "429"},
    (EXPORT, "delete"): {"200", "202", "401", "404", "429", "503"},
    (WEBHOOK, "get"): {"200", "401", "404", "429"},
    (WEBHOOK, "put"): {"200", "201", "400", "401", "413", "415", "429"},
    (WEBHOOK, "delete"): {"204", "401", "404", "429"},
    (SCHEDULES, "get"): {"200", "401", "429"},
    (SCHEDULES, "post"): {"201", "400", "401", "413", "415", "429"},
    (SCHEDULE, "get"): {"200", "401", "404", "429"},
    (SCHEDULE, "patch"): {"200", "400", "401", "404", "413", "415", "429"},
    (SCHEDULE, "delete"): {"204", "401", "404", "429"},
    (SCHEDULE_RUN, "post"): {"202", "401", "404", "409", "429"},
}
GUID_OPERATIONS = [key for key in OPERATIONS if "{guid}" in key[0]]
NOT_FOUND = [
    {"message": "could not get QueryRequest object: QueryRequest matching query does not exist.", "code": 404}
]
WINDOW = {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"}
SEED_REQUEST = {"timestamp": WINDOW, "data": {"ApplicationExitEvent": {"fields": ["FlowId"]}}}
DESIGN_EXAMPLE = {
    "timestamp": WINDOW,
    "data": {"ApplicationExitEvent": {"fields": ["FlowId", "ExitReason"]}},
    "scope": {"filters": {"DtmfEvent": {"DtmfInput": {"$eq": "0"}}}, "scope": "SessionId"},
    "filters": {"ApplicationExitEvent": {"ExitReason": {"$ne": "Normal"}}},
}
RICH_BODY = {
    "timestamp": {"$gt": "2019-11-25T00:00:00+02:00", "$lt": "2019-11-25T12:00:00.5Z"},
    "data": {
        "CallEvent": {"fields": ["Ani", "Duration"], "filters": {"SipResponseCode": {"$in": [200, 486]}}},
        "MsgEvent": {"fields": ["To", "Segments"]},
    },
    "filters": {"CallEvent": {"Duration": {"$gt": 1.5}, "IsTriggerAction": {"$eq": False}}},
    "scope": {"scope": "SessionId", "filters": {"DtmfEvent": {"DtmfInput": {"$nin": ["0"]}}, "MsgEvent": {}}},
}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The schema as `manage.py spectacular --validate --fail-on-warn` writes it (any warning fails)."""
    path: Path = tmp_path_factory.mktemp("openapi") / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return dict(yaml.safe_load(path.read_text()))


def _validator(schema: dict[str, Any], component: str) -> Draft7Validator:
    """A JSON-schema validator for one component, its $refs resolved within the document."""
    root = {"$ref": f"#/components/schemas/{component}", "components": schema["components"]}
    return Draft7Validator(root, format_checker=FormatChecker())


def _body_schema(schema: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    return dict(schema["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"])


def test_schema_is_valid_openapi_3(schema):
    assert schema["openapi"] == "3.0.3"


def test_every_operation_and_every_status_is_documented(schema):
    documented = {
        (path, method): set(operation["responses"])
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }
    assert documented == OPERATIONS


def test_operation_ids_are_named_for_what_they_do(schema):
    ids = {
        (path, method): op["operationId"]
        for path, item in schema["paths"].items()
        for method, op in item.items()
    }
    assert ids[(DOWNLOAD, "get")] == "query_download"
    assert ids[(DOWNLOAD_PART, "get")] == "query_download_part"
    assert ids[(DETAIL, "head")] == "query_head"
    assert len(set(ids.values())) == len(ids)


def test_bearer_scheme_secures_every_operation_but_login(schema):
    assert schema["components"]["securitySchemes"] == {
        "Bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (created in the admin) or a 24-hour token from POST /_rest/v4/authenticate.",
        }
    }
    for (path, method), _ in OPERATIONS.items():
        operation = schema["paths"][path][method]
        expected: list[dict[str, list[str]]] = [] if path == AUTHENTICATE else [{"Bearer": []}]
        assert operation.get("security", []) == expected, (path, method)


def test_unknown_guid_404_is_the_documented_list(schema):
    for path, method in GUID_OPERATIONS:
        body = _body_schema(schema, path, method, "404")
        if path.startswith(DOWNLOAD):
            assert body == {"$ref": "#/components/schemas/DownloadNotFound"}
        else:
            assert body == {"$ref": "#/components/schemas/NotFoundList"}
    not_found = _validator(schema, "NotFoundList")
    assert schema["components"]["schemas"]["NotFoundList"]["type"] == "array"
    assert not_found.is_valid(NOT_FOUND)
    assert not not_found.is_valid({"code": 404, "message": NOT_FOUND[0]["message"]})
    missing_part = {"code": 404, "message": "Query 0123 has 1 part(s); part 5 does not exist."}
    assert _validator(schema, "DownloadNotFound").is_valid(missing_part)
    assert _validator(schema, "DownloadNotFound").is_valid(NOT_FOUND)


def test_documented_error_bodies_match_their_components(schema):
    envelope, unauthorized = _validator(schema, "ErrorEnvelope"), _validator(schema, "Unauthorized")
    for message in (
        date_filters_message(["2019-10-19 01:45:36.123Z"]),
        operators_message(["gte", "lte"]),
        "Application ExitEvent is not a valid schema name.",
        "max concurrent queries per user (2) reached",
    ):
        assert envelope.is_valid({"code": 400, "message": message})
    assert not envelope.is_valid({"code": 400})
    assert unauthorized.is_valid({"code": 401, "error": "Unauthorized"})
    assert not unauthorized.is_valid({"code": 401, "message": "Unauthorized"})
    for path, method in OPERATIONS:
        if path != AUTHENTICATE:
            assert _body_schema(schema, path, method, "401") == {"$ref": "#/components/schemas/Unauthorized"}


def test_limits_and_downloads_document_their_headers(schema):
    for path, method in OPERATIONS:
        if path == AUTHENTICATE:
            continue
        responses = schema["paths"][path][method]["responses"]
        assert responses["429"]["headers"]["Retry-After"]["required"] is True, (path, method)
        assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True, (path, method)
    for path in (DOWNLOAD, DOWNLOAD_PART):
        responses = schema["paths"][path]["get"]["responses"]
        for status in ("200", "206"):
            assert list(responses[status]["content"]) == list(PART_MEDIA_TYPES)
            assert {"Content-Length", "ETag", "Last-Modified", "Content-Disposition"} <= set(
                responses[status]["headers"]
            )
        assert responses["206"]["headers"]["Content-Range"]["required"] is True
        assert responses["416"]["headers"]["Content-Range"]["required"] is True
        assert responses["303"]["headers"]["Location"]["required"] is True
        assert "content" not in responses["303"] and "content" not in responses["416"]
    head = schema["paths"][DETAIL]["head"]["responses"]["200"]
    assert "content" not in head
    assert head["headers"]["X-Query-Status"]["required"] is True
    assert {"Content-Length", "ETag", "Last-Modified", "Content-Disposition", "X-Row-Count"} <= set(
        head["headers"]
    )


def test_query_body_takes_the_documented_examples(schema):
    body = _validator(schema, "QueryBody")
    request = schema["paths"][COLLECTION]["post"]["requestBody"]["content"]["application/json"]
    assert request["schema"] == {"$ref": "#/components/schemas/QueryBody"}
    for example in [
        *(e["value"] for e in request["examples"].values()),
        SEED_REQUEST,
        DESIGN_EXAMPLE,
        RICH_BODY,
    ]:
        query_validate(example)
        assert body.is_valid(example), list(body.iter_errors(example))


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b.pop("timestamp"),
        lambda b: b["timestamp"].update({"$gt": "2019-11-25T00:00:00Z"}),  # two lower bounds
        lambda b: b["data"].update({"Application ExitEvent": {"fields": ["FlowId"]}}),
        lambda b: b["data"]["ApplicationExitEvent"].update({"fields": ["Flow Id"]}),
        lambda b: b["data"]["ApplicationExitEvent"].update({"fields": []}),
        lambda b: b["filters"]["ApplicationExitEvent"]["ExitReason"].update({"ne": "x"}),
        lambda b: b["filters"]["ApplicationExitEvent"]["ExitReason"].update({"$in": "Normal"}),
        lambda b: b["scope"].update({"scope": "FlowId"}),
        lambda b: b.update({"limit": 10}),
    ],
)
def test_query_body_refuses_what_validation_refuses(schema, edit):
    body = copy.deepcopy(DESIGN_EXAMPLE)
    edit(body)
    assert not _validator(schema, "QueryBody").is_valid(body)
    with pytest.raises(QueryValidationError):
        query_validate(body)


# Bodies near the documented ones: a node replaced by a real name, a wrong type or a bad date, a key dropped.
_CATALOG = catalog()
_NAMES = sorted(
    {*_CATALOG.events, *(f for e in _CATALOG.events.values() for f in e.fields), *(op.value for op in Op)}
    | {"SessionId", "scope", "fields", "filters", "gte", "$regex", "Bogus"}
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        ["", "0", "2019-11-25T06:00:00Z", "2019-11-25 06:00:00Z", "2019-11-25T06:00:00.1234567Z"]
    )
    | st.sampled_from(_NAMES)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_NAMES), inner, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        paths.extend(_paths(child, (*prefix, key)))
    return paths


@st.composite
def _near_bodies(draw: st.DrawFn) -> Any:
    body = copy.deepcopy(draw(st.sampled_from([SEED_REQUEST, DESIGN_EXAMPLE, RICH_BODY])))
    path = draw(st.sampled_from(_paths(body)[1:]))
    parent: Any = body
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        parent[path[-1]] = draw(_VALUES)
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])
    return body


@settings(max_examples=400, deadline=None)
@given(_near_bodies())
def test_the_query_body_schema_is_never_stricter_than_validation(schema, body):
    """A body the service accepts conforms to the schema; one it refuses gets a documented 400 body."""
    try:
        query_validate(body)
    except QueryValidationError as refused:
        assert _validator(schema, "ErrorEnvelope").is_valid(refused.body)
    else:
        assert _validator(schema, "QueryBody").is_valid(body), list(
            _validator(schema, "QueryBody").iter_errors(body)
        )


def test_schema_and_docs_are_public_and_need_no_cdn():
    client = Client(HTTP_AUTHORIZATION="Bearer not-a-key")
    response = client.get("/_rest/v4/schema")
    assert response.status_code == 200 and response.content.startswith(b"openapi: 3.0.3")
    docs = client.get("/_rest/v4/docs")
    assert docs.status_code == 200
    page = docs.content.decode()
    assert "cdn.jsdelivr.net" not in page and "unpkg.com" not in page
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page


def test_an_api_url_no_route_matches_is_a_json_404():
    client = Client()
    under_queries = client.get("/_rest/v4/dwh/Q/0123/extra/status")
    assert under_queries.status_code == 404 and under_queries.json() == NOT_FOUND
    past_the_part = client.get("/_rest/v4/dwh/Q/0123456789abcdef0123456789abcdef/download/0/extra")
    assert past_the_part.status_code == 404 and past_the_part.json() == NOT_FOUND
    elsewhere = client.get("/_rest/v4/nothing-here")
    assert elsewhere.status_code == 404 and elsewhere.json() == {"code": 404, "message": "Not found."}
    outside = client.get("/nothing-here")
    assert outside.status_code == 404 and outside["Content-Type"].startswith("text/html")


def test_swagger_ui_files_are_served_from_the_sidecar_package():
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
