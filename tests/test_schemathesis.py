"""Schemathesis against the real service: gunicorn + PostgreSQL metadata + Celery on Redis, over HTTP.

Every response to a generated request (positive and negative) must be no 500 and must match the published schema:
a documented status code, its content type, its headers and its body. Generated guids are pointed, half of the
time, at real queries of the caller in every state (Completed in two parts, Failed, Canceled, Pending), so the
success shapes are exercised too, not only the 404s. A second pass asks for those real guids with another
customer's key: every endpoint must answer the documented 404 list.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi import checks as openapi_checks

from queries.api_schema import GUID_PATTERN
from queries.ingest import DEMO_CUSTOMER_KEYS
from tests.service import Service, production_shape, service_running

SCHEMA_PATH = "/_rest/v4/schema"
ONE_DAY = {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"}
# Seven ApplicationExitEvent fields over one day: several parts at the small part size the service is given.
TWO_PARTS = {
    "timestamp": ONE_DAY,
    "data": {
        "ApplicationExitEvent": {
            "fields": ["TimeStamp", "SessionId", "FlowId", "FlowName", "ActionName", "Path", "ExitReason"]
        }
    },
}
NO_ROWS = {
    "timestamp": ONE_DAY,
    "data": {"CallEvent": {"fields": ["Ani"]}},
    "filters": {"CallEvent": {"Ani": {"$eq": "no such number"}}},
}
NOT_FOUND = [
    {"message": "could not get QueryRequest object: QueryRequest matching query does not exist.", "code": 404}
]
GUID_OPERATIONS = [
    ("GET", "/_rest/v4/dwh/Q/{guid}/status"),
    ("GET", "/_rest/v4/dwh/Q/{guid}"),
    ("HEAD", "/_rest/v4/dwh/Q/{guid}"),
    ("DELETE", "/_rest/v4/dwh/Q/{guid}"),
    ("GET", "/_rest/v4/dwh/Q/{guid}/download"),
    ("GET", "/_rest/v4/dwh/Q/{guid}/download/{part}"),
]
# Every response: no 500, and one the schema documents (status code, content type, headers, body).
CONFORMANCE = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]
# And the schema's own truthfulness: requests it calls invalid are refused, the operations it secures refuse a
# missing or bad key, and a method it does not list is a 405 with an Allow header that matches it.
CHECKS = [
    *CONFORMANCE,
    openapi_checks.negative_data_rejection,
    openapi_checks.ignored_auth,
    openapi_checks.unsupported_method,
    openapi_checks.allow_header_conformance,
]
STATES = ("Completed", "Failed", "Canceled", "Pending")
# Bounded and repeatable: a fixed derandomised run, no example database carried between runs.
SCHEMATHESIS_CONFIG = {
    "generation": {
        "mode": "all",
        "deterministic": True,
        "database": "none",
        # Unknown query parameters and headers are ignored, as HTTP services do; OpenAPI 3.0 cannot forbid them.
        "allow-extra-parameters": False,
        # The Authorization header is always the fixture's key; the no-key case is the ignored_auth check.
        "with-security-parameters": False,
    },
    # A body over the size limit is refused with 413, which schemathesis does not count as a refusal by default.
    "checks": {
        "negative_data_rejection": {
            "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429],
        }
    },
    # The coverage phase tries boundary values of every keyword: for the query body (every field of every
    # event, eight operators each) that is tens of thousands of requests; its examples and fuzzing remain.
    "operations": [
        {"include-operation-id": operation, "phases": {"coverage": {"enabled": False}}}
        for operation in ("query_create", "schedule_create", "schedule_update")  # a schedule holds a query
    ],
}


@pytest.fixture(scope="module")
def service(postgres, redis, tmp_path_factory) -> Iterator[Service]:
    var_dir = tmp_path_factory.mktemp("schemathesis")
    with service_running(
        shape=production_shape(postgres, redis, "schemathesis"),
        var_dir=var_dir,
        # Small parts, so a result has several; no failed-authentication throttle, or the ignored_auth probes
        # (a bad key on every operation) would meet 429s after the 30th.
        # No ?wait longer than 0 s (the schema says so): no worker runs, and every wait would last its whole N.
        extra_env={
            "EXPORT_PART_BYTES": "4096",
            "AUTH_FAILURES_PER_MINUTE": "1000000",
            "QUERY_WAIT_MAX_SECONDS": "0",
        },
    ) as running:
        yield running


@pytest.fixture(scope="module")
def owner(service: Service) -> str:
    """The fuzzed customer: a high limit, as every valid generated body creates a real (never run) query."""
    return service.customer_create(DEMO_CUSTOMER_KEYS[0], max_concurrent=10_000)


@pytest.fixture(scope="module")
def stranger(service: Service) -> str:
    return service.customer_create(DEMO_CUSTOMER_KEYS[1])


@pytest.fixture(scope="module")
def owner_guids(service: Service, owner: str) -> dict[str, str]:
    """One real query of the owner per state; the worker is stopped before the fuzzing starts."""
    service.worker_start()
    try:
        completed = _submit(service, owner, TWO_PARTS)
        failed = _submit(service, owner, NO_ROWS)
        assert service.wait_terminal(completed, owner)["status"] == "Completed"
        assert service.wait_terminal(failed, owner)["status"] == "Failed"
    finally:
        service.workers_stop()
    files = service.request("GET", f"/_rest/v4/dwh/Q/{completed}", key=owner).json()["files"]
    assert len(files) >= 2, "the Completed query must have several parts"
    canceled = _submit(service, owner, TWO_PARTS)
    assert service.request("DELETE", f"/_rest/v4/dwh/Q/{canceled}", key=owner).status == 202
    pending = _submit(service, owner, TWO_PARTS)
    return {"Completed": completed, "Failed": failed, "Canceled": canceled, "Pending": pending}


@pytest.fixture(scope="module")
def api_schema(service: Service) -> schemathesis.BaseSchema:
    config = SchemathesisConfig.from_dict(SCHEMATHESIS_CONFIG)
    return schemathesis.openapi.from_url(service.base_url + SCHEMA_PATH, config=config)


def _submit(service: Service, key: str, body: dict) -> str:
    response = service.request("POST", "/_rest/v4/dwh/Q", key=key, body=body)
    assert response.status == 201, response.body
    return str(response.json()["id"])


def _aim_at_real_query(case: schemathesis.Case, guids: dict[str, str]) -> None:
    """Point a well-formed generated guid at one of the owner's real queries, or leave it unknown.

    The choice follows the generated guid's first digit, so a case still shrinks and replays as one request.
    """
    guid = case.path_parameters.get("guid") if case.path_parameters else None
    if not isinstance(guid, str) or re.fullmatch(GUID_PATTERN, guid) is None:
        return  # a negative case: keep it as generated
    pick = int(guid[0], 16) % (2 * len(STATES))
    if pick < len(STATES):
        case.path_parameters["guid"] = guids[STATES[pick]]


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_response_conforms_to_the_schema(
    case: schemathesis.Case, owner: str, owner_guids: dict[str, str]
) -> None:
    _aim_at_real_query(case, owner_guids)
    case.call_and_validate(headers={"Authorization": f"Bearer {owner}"}, checks=CHECKS)


@pytest.mark.parametrize(("method", "path"), GUID_OPERATIONS)
def test_another_customer_gets_the_documented_404_for_real_guids(
    api_schema: schemathesis.BaseSchema,
    service: Service,
    stranger: str,
    owner_guids: dict[str, str],
    method: str,
    path: str,
) -> None:
    operation = api_schema[path][method]
    for state, guid in owner_guids.items():
        parameters = {"guid": guid, "part": 1} if "{part}" in path else {"guid": guid}
        case = operation.Case(path_parameters=parameters)
        response = case.call(headers={"Authorization": f"Bearer {stranger}"})
        assert response.status_code == 404, (state, response.status_code)
        if method != "HEAD":  # HEAD carries no body, only the 404
            assert response.json() == NOT_FOUND, state
        case.validate_response(response, checks=CONFORMANCE)


# Over the 64 KiB body limit, as valid JSON: 1200 strings of 60 characters.
OVERSIZED_QUERY: dict[str, Any] = {
    "timestamp": ONE_DAY,
    "data": {"CallEvent": {"fields": ["Ani"], "filters": {"Ani": {"$in": ["x" * 60] * 1200}}}},
}
TOO_LARGE = {"code": 413, "message": "Request body too large: the limit is 65536 bytes."}


def test_an_oversized_query_is_the_documented_413(api_schema: schemathesis.BaseSchema, owner: str) -> None:
    case = api_schema["/_rest/v4/dwh/Q"]["POST"].Case(body=OVERSIZED_QUERY, media_type="application/json")
    response = case.call(headers={"Authorization": f"Bearer {owner}"})
    assert response.status_code == 413 and response.json() == TOO_LARGE
    case.validate_response(response, checks=CONFORMANCE)


def test_an_oversized_login_is_the_documented_413(api_schema: schemathesis.BaseSchema) -> None:
    body: dict[str, Any] = {"username": "x" * 70_000, "password": "y"}
    case = api_schema["/_rest/v4/authenticate"]["POST"].Case(body=body, media_type="application/json")
    response = case.call()
    assert response.status_code == 413 and response.json() == TOO_LARGE
    case.validate_response(response, checks=CONFORMANCE)


def test_schema_and_docs_are_public_and_served_without_a_cdn(service: Service) -> None:
    stale = {"Authorization": "Bearer not-a-key"}
    schema_response = requests.get(service.base_url + SCHEMA_PATH, headers=stale, timeout=30)
    assert schema_response.status_code == 200
    assert b"openapi: 3.0.3" in schema_response.content
    docs = requests.get(service.base_url + "/_rest/v4/docs", headers=stale, timeout=30)
    assert docs.status_code == 200
    assert b"cdn.jsdelivr.net" not in docs.content
    assert b"drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in docs.content
