"""Idempotency-Key on POST /dwh/Q in process: a repeat gets the first POST's query (200), another body with the key
is a 422, keys are per customer and forgotten after IDEMPOTENCY_KEY_HOURS. Twenty concurrent POSTs with one key
over HTTP, on both shapes: tests/test_quote_e2e.py."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from queries.models import IdempotencyKey, QueryRequest
from tests.queries.clients import api_client

pytestmark = pytest.mark.django_db

QUERY = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["Ani"]}},
    "filters": {"CallEvent": {"Duration": {"$gte": 5, "$lt": 60}}},
}
# The same query: the filters inside `data`, conditions and keys in another order.
SAME_QUERY = {
    "data": {"CallEvent": {"filters": {"Duration": {"$lt": 60, "$gte": 5}}, "fields": ["Ani"]}},
    "timestamp": {"$lte": "2019-11-26T00:00:00Z", "$gte": "2019-11-25T00:00:00Z"},
}


def _post(client, body, key=None, path="/_rest/v4/dwh/Q"):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(path, data=json.dumps(body), content_type="application/json", **headers)


def test_a_repeated_key_gets_the_first_query_with_200_and_nothing_new(
    customer_factory, sent_tasks, django_capture_on_commit_callbacks
):
    client = api_client(customer_factory("acme"))
    with django_capture_on_commit_callbacks(execute=True):
        first = _post(client, QUERY, key="retry-1")
        again = _post(client, QUERY, key="retry-1")
        same = _post(client, SAME_QUERY, key="retry-1")
    assert first.status_code == 201 and again.status_code == same.status_code == 200
    assert first.json() == again.json() == same.json()
    assert QueryRequest.objects.count() == 1 and len(sent_tasks) == 1


def test_the_key_with_another_body_is_a_422_envelope(customer_factory, sent_tasks):
    client = api_client(customer_factory("acme"))
    guid = _post(client, QUERY, key="k").json()["id"]
    for other in (
        {**QUERY, "data": {"CallEvent": {"fields": ["Dnis"]}}},
        {**QUERY, "filename": "calls"},  # the export's settings are part of the body
    ):
        refused = _post(client, other, key="k")
        assert refused.status_code == 422
        assert refused.json() == {
            "code": 422,
            "message": f"This Idempotency-Key was used within the last 24 h with another body (query {guid}); "
            "send a new key for a new query.",
        }
    assert QueryRequest.objects.count() == 1


def test_keys_are_per_customer(customer_factory, sent_tasks):
    acme, globex = api_client(customer_factory("acme")), api_client(customer_factory("globex"))
    mine = _post(acme, QUERY, key="shared-name")
    theirs = _post(globex, QUERY, key="shared-name")
    assert mine.status_code == theirs.status_code == 201
    assert mine.json() != theirs.json()
    assert _post(globex, {**QUERY, "filename": "x"}, key="shared-name").status_code == 422


def test_a_repeat_when_the_slots_are_full_is_the_same_query_not_a_429(customer_factory, sent_tasks):
    client = api_client(customer_factory("acme", max_concurrent_queries=1))
    first = _post(client, QUERY, key="a")
    assert _post(client, QUERY).status_code == 429
    assert _post(client, QUERY, key="a").json() == first.json()
    # A refused POST remembers nothing: its key makes the query once a slot is free.
    assert _post(client, QUERY, key="b").status_code == 429
    assert not IdempotencyKey.objects.filter(key="b").exists()
    client.delete(f"/_rest/v4/dwh/Q/{first.json()['id']}")
    assert _post(client, QUERY, key="b").status_code == 201


def test_a_key_is_forgotten_after_its_hours(customer_factory, sent_tasks, settings):
    settings.IDEMPOTENCY_KEY_HOURS = 24
    client = api_client(customer_factory("acme", max_concurrent_queries=5))
    first = _post(client, QUERY, key="old").json()["id"]
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    again = _post(client, QUERY, key="old")
    assert again.status_code == 201 and again.json()["id"] != first
    assert list(IdempotencyKey.objects.values_list("query__guid", flat=True)) == [again.json()["id"]]


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "caf\u00e9", "tab\there", " leading", "trailing "],
    ids=["empty", "too-long", "non-ascii", "control", "leading-space", "trailing-space"],
)
def test_a_malformed_key_is_a_400_envelope(customer_factory, sent_tasks, key):
    response = _post(api_client(customer_factory("acme")), QUERY, key=key)
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "message": "Idempotency-Key must be 1 to 255 printable ASCII characters, with no space at either end.",
    }
    assert not QueryRequest.objects.exists()


def test_the_longest_key_and_inner_spaces_are_taken(customer_factory, sent_tasks):
    client = api_client(customer_factory("acme", max_concurrent_queries=5))
    assert _post(client, QUERY, key="k" * 255).status_code == 201
    assert _post(client, QUERY, key="order 42 / try #1").status_code == 201


def test_an_invalid_body_with_a_key_is_the_usual_400(customer_factory, sent_tasks):
    client = api_client(customer_factory("acme"))
    body = {**QUERY, "data": {"Application ExitEvent": {"fields": ["FlowId"]}}}
    response = _post(client, body, key="k")
    assert response.status_code == 400
    assert (
        response.content == b'{"code": 400, "message": "Application ExitEvent is not a valid schema name."}'
    )
    assert not IdempotencyKey.objects.exists()
