"""The query API in process (DRF's APIClient on the test database): every answer's shape and status without a
web server or a worker. The same contract runs over HTTP against real processes in tests/test_service_e2e.py."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from queries.models import QueryRequest, QueryStatus
from tests.queries.clients import api_client as _client

pytestmark = pytest.mark.django_db

QUERY = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"ApplicationExitEvent": {"fields": ["FlowId"]}},
}
NOT_FOUND = [
    {"message": "could not get QueryRequest object: QueryRequest matching query does not exist.", "code": 404}
]


def _post(client: APIClient, body: object):
    return client.post("/_rest/v4/dwh/Q", data=json.dumps(body), content_type="application/json")


def test_post_answers_201_with_a_guid_and_sends_the_run(
    customer_factory, sent_tasks, django_capture_on_commit_callbacks
):
    client = _client(customer_factory("acme"))
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, QUERY)
    assert response.status_code == 201
    (guid,) = response.json().values()
    query = QueryRequest.objects.get(guid=guid)
    assert sent_tasks == [("queries.run", (query.pk,), None)]
    assert json.loads(query.body) == QUERY


def test_the_third_live_query_is_a_429_with_retry_after(customer_factory, sent_tasks):
    client = _client(customer_factory("acme", max_concurrent_queries=2))
    assert [_post(client, QUERY).status_code for _ in range(2)] == [201, 201]
    refused = _post(client, QUERY)
    assert refused.status_code == 429
    assert refused.content == b'{"code": 429, "message": "max concurrent queries per user (2) reached"}'
    assert int(refused["Retry-After"]) > 0


def test_a_documented_validation_error_is_byte_for_byte(customer_factory, sent_tasks):
    body = {**QUERY, "data": {"Application ExitEvent": {"fields": ["FlowId"]}}}
    response = _post(_client(customer_factory("acme")), body)
    assert response.status_code == 400
    assert (
        response.content == b'{"code": 400, "message": "Application ExitEvent is not a valid schema name."}'
    )


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/_rest/v4/dwh/Q", "timestamp, data, filters, scope, output, description, filename, max_age"),
        (
            "/_rest/v4/dwh/Q?dry_run=true",
            "timestamp, data, filters, scope, output, description, filename, max_age",
        ),
        ("/_rest/v4/dwh/Q/preview", "timestamp, data, filters, scope, limit, basic"),
    ],
)
def test_an_unknown_key_is_refused_naming_every_key_the_endpoint_takes(
    customer_factory, sent_tasks, path, allowed
):
    client = _client(customer_factory("acme"))
    response = client.post(path, data=json.dumps({**QUERY, "outpt": {}}), content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "message": f'Unknown attribute "outpt" in the query body; allowed: {allowed}.',
    }


def test_status_shows_messages_only_once_the_query_ended_without_a_result(customer_factory):
    customer = customer_factory("acme")
    client = _client(customer)
    pending = QueryRequest.objects.create(customer=customer, body="{}", fingerprint="f" * 64)
    failed = QueryRequest.objects.create(
        customer=customer, body="{}", fingerprint="f" * 64, status=QueryStatus.FAILED, messages=["why"]
    )
    body = client.get(f"/_rest/v4/dwh/Q/{pending.guid}/status").json()
    assert set(body) == {"status", "guid", "progress", "submitted_at", "started_at", "finished_at"}
    assert body["progress"] == {"rows": 0, "bytes": 0} and body["started_at"] is None
    assert body["submitted_at"].endswith("Z") and len(body["submitted_at"]) == len("2019-11-25T00:00:00.000Z")
    assert client.get(f"/_rest/v4/dwh/Q/{failed.guid}/status").json()["messages"] == ["why"]


def test_location_pending_then_completed(customer_factory, completed_query_factory):
    customer = customer_factory("acme")
    client = _client(customer)
    pending = QueryRequest.objects.create(customer=customer, body="{}", fingerprint="f" * 64)
    assert client.get(f"/_rest/v4/dwh/Q/{pending.guid}").json() == {
        "status": "Process has not finish yet, please verify the status of your request",
        "guid": pending.guid,
    }
    done = completed_query_factory(customer)
    body = client.get(f"/_rest/v4/dwh/Q/{done.guid}").json()
    assert body["status"] == f"Process finished. Download: ['{done.files[0]['path']}']"
    assert body["files"] == [{k: done.files[0][k] for k in ("path", "size", "rows", "sha256")}]


def test_another_customers_guid_is_the_documented_404_everywhere(customer_factory, completed_query_factory):
    theirs = completed_query_factory(customer_factory("globex"))
    client = _client(customer_factory("acme"))
    for method, path in [
        ("get", f"/_rest/v4/dwh/Q/{theirs.guid}"),
        ("get", f"/_rest/v4/dwh/Q/{theirs.guid}/status"),
        ("get", f"/_rest/v4/dwh/Q/{theirs.guid}/download/0"),
        ("get", f"/_rest/v4/dwh/Q/{theirs.guid}/download/abc"),
        ("delete", f"/_rest/v4/dwh/Q/{theirs.guid}"),
    ]:
        response = getattr(client, method)(path)
        assert (response.status_code, response.json()) == (404, NOT_FOUND), (method, path)


def test_cancel_is_idempotent_and_a_finished_query_is_a_409(customer_factory, completed_query_factory):
    customer = customer_factory("acme")
    client = _client(customer)
    queued = QueryRequest.objects.create(customer=customer, body="{}", fingerprint="f" * 64)
    for _ in range(2):
        response = client.delete(f"/_rest/v4/dwh/Q/{queued.guid}")
        assert (response.status_code, response.json()) == (202, {"status": "Canceled", "guid": queued.guid})
    done = completed_query_factory(customer)
    conflict = client.delete(f"/_rest/v4/dwh/Q/{done.guid}")
    assert conflict.status_code == 409 and conflict.json()["code"] == 409


def test_downloads_ranges_missing_parts_and_expired_results(customer_factory, completed_query_factory):
    customer = customer_factory("acme", retention_days=1)
    client = _client(customer)
    done = completed_query_factory(customer)
    whole = client.get(f"/_rest/v4/dwh/Q/{done.guid}/download").getvalue()
    ranged = client.get(f"/_rest/v4/dwh/Q/{done.guid}/download/0", HTTP_RANGE="bytes=2-5")
    assert ranged.status_code == 206 and ranged.getvalue() == whole[2:6]
    etag = client.get(f"/_rest/v4/dwh/Q/{done.guid}/download/0")["ETag"]
    for held in (etag, f'W/{etag}, "other"', "*"):  # the copy held is current: 304, no body
        unchanged = client.get(f"/_rest/v4/dwh/Q/{done.guid}/download/0", HTTP_IF_NONE_MATCH=held)
        assert (unchanged.status_code, unchanged.content, unchanged["ETag"]) == (304, b"", etag)
        assert "Content-Type" not in unchanged
    changed = client.get(f"/_rest/v4/dwh/Q/{done.guid}/download/0", HTTP_IF_NONE_MATCH='"other"')
    assert changed.status_code == 200 and changed.getvalue() == whole
    missing = client.get(f"/_rest/v4/dwh/Q/{done.guid}/download/3")
    assert missing.status_code == 404 and missing.json()["message"].endswith("part 3 does not exist.")
    for name in ("abc", "-1"):  # not a part number: the envelope naming it, as for a part that does not exist
        named = client.get(f"/_rest/v4/dwh/Q/{done.guid}/download/{name}")
        assert named.json() == {
            "code": 404,
            "message": f"Query {done.guid} has no part '{name}': parts are numbered from 0.",
        }
        assert client.head(f"/_rest/v4/dwh/Q/{done.guid}/download/{name}").status_code == 404
    QueryRequest.objects.filter(pk=done.pk).update(status=QueryStatus.EXPIRED)
    gone = client.get(f"/_rest/v4/dwh/Q/{done.guid}")
    assert gone.status_code == 410 and "expired" in gone.json()["message"]
    head = client.head(f"/_rest/v4/dwh/Q/{done.guid}")
    assert (head.status_code, head.content, head["X-Query-Status"]) == (410, b"", "Expired")


def test_head_of_a_pending_query_has_get_s_headers_and_no_body(customer_factory):
    customer = customer_factory("acme")
    client = _client(customer)
    pending = QueryRequest.objects.create(
        customer=customer, body="{}", fingerprint="f" * 64, submitted_at=timezone.now() - timedelta(seconds=1)
    )
    head, get = client.head(f"/_rest/v4/dwh/Q/{pending.guid}"), client.get(f"/_rest/v4/dwh/Q/{pending.guid}")
    assert (head.status_code, head.content) == (200, b"")
    assert head["Content-Type"] == "application/json" and int(head["Content-Length"]) == len(get.content)
    assert head["X-Query-Status"] == "Pending"


@pytest.mark.parametrize("status", QueryStatus.values)
def test_the_polling_fast_path_writes_what_the_declared_fields_do(customer_factory, status):
    """QueryStateSerializer writes its body directly (polling is hot); the fields, which the schema comes from,
    must say the same thing."""
    from queries.serializers import QueryStateSerializer

    query = QueryRequest.objects.create(
        customer=customer_factory("acme"),
        body="{}",
        fingerprint="f" * 64,
        status=status,
        messages=["why"],
        progress_rows=7,
        progress_bytes=70,
        started_at=timezone.now() if status != QueryStatus.PENDING else None,
    )
    serializer = QueryStateSerializer(query)
    assert serializer.data == serializer.fields_representation(query)
