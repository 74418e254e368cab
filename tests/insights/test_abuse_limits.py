"""Abuse limits: failed authentication is throttled per client; oversized bodies are refused."""

from __future__ import annotations

import json

from rest_framework.test import APIClient

from insights.services import api_key_create


def test_failed_authentication_is_throttled_per_client(db, settings, customer_factory):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    _, key = api_key_create(customer=customer_factory("acme"), name="t")
    attacker, other = APIClient(REMOTE_ADDR="10.0.0.1"), APIClient(REMOTE_ADDR="10.0.0.2")
    attacker.credentials(HTTP_AUTHORIZATION="Bearer ik_00000000_wrong")
    statuses = [attacker.get("/_rest/v4/dwh/Q").status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    throttled = attacker.get("/_rest/v4/dwh/Q")
    assert throttled.json()["code"] == 429 and int(throttled["Retry-After"]) > 0
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert other.get("/_rest/v4/dwh/Q").status_code == 200  # another client is not affected
    other.credentials(HTTP_AUTHORIZATION="Bearer ik_00000000_wrong")
    assert other.get("/_rest/v4/dwh/Q").status_code == 401


def test_oversized_body_is_refused_with_413(db, settings, customer_factory):
    settings.API_MAX_BODY_BYTES = 2048
    _, key = api_key_create(customer=customer_factory("acme"), name="t")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    body = {
        "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
        "data": {"CallEvent": {"fields": ["Ani"], "filters": {"Ani": {"$in": ["x" * 10] * 300}}}},
    }
    response = client.post("/_rest/v4/dwh/Q", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {"code": 413, "message": "Request body too large: the limit is 2048 bytes."}


def test_malformed_json_is_a_400_in_the_envelope(db, customer_factory):
    _, key = api_key_create(customer=customer_factory("acme"), name="t")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.post("/_rest/v4/dwh/Q", data="{not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == 400
    wrong_type = client.post("/_rest/v4/dwh/Q", data="a=b", content_type="application/x-www-form-urlencoded")
    assert wrong_type.status_code == 415 and wrong_type.json()["code"] == 415


def test_a_key_given_twice_in_one_object_is_a_400_naming_it(db, customer_factory, sent_tasks):
    _, key = api_key_create(customer=customer_factory("acme"), name="t")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    body = (
        '{"timestamp": {"$gte": "2019-11-25T00:00:00Z", "$gte": "2019-11-24T00:00:00Z",'
        ' "$lte": "2019-11-26T00:00:00Z"}, "data": {"CallEvent": {"fields": ["Ani"]}}}'
    )
    response = client.post("/_rest/v4/dwh/Q", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "message": "JSON parse error - the key '$gte' appears twice in one object",
    }
    same_key_elsewhere = body.replace('"$gte": "2019-11-24T00:00:00Z", ', "")
    accepted = client.post("/_rest/v4/dwh/Q", data=same_key_elsewhere, content_type="application/json")
    assert accepted.status_code == 201, accepted.json()


def test_password_guessing_is_throttled_before_the_password_is_checked(db, settings, django_user_model):
    from django.contrib.auth.models import Permission

    from insights.models import Customer
    from insights.services import api_user_link

    settings.AUTH_FAILURES_PER_MINUTE = 2
    user = django_user_model.objects.create_user("ann", password="right-password-123")
    user.user_permissions.add(Permission.objects.get(codename="use_api"))
    api_user_link(user=user, customer=Customer.objects.create(key="acme", name="Acme"))
    guesser = APIClient(REMOTE_ADDR="10.0.0.9")
    wrong = [
        guesser.post("/_rest/v4/authenticate", {"username": "ann", "password": f"guess{i}"}, format="json")
        for i in range(3)
    ]
    assert [r.status_code for r in wrong] == [401, 401, 429]
    right = guesser.post(
        "/_rest/v4/authenticate", {"username": "ann", "password": "right-password-123"}, format="json"
    )
    assert right.status_code == 429  # even the right password, this minute
    elsewhere = APIClient(REMOTE_ADDR="10.0.0.10").post(
        "/_rest/v4/authenticate", {"username": "ann", "password": "right-password-123"}, format="json"
    )
    assert elsewhere.status_code == 200 and elsewhere.json()["token"]


def test_the_collection_with_a_trailing_slash_points_to_it(client):
    response = client.post("/_rest/v4/dwh/Q/", data="{}", content_type="application/json")
    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": "Not found. Queries are at /_rest/v4/dwh/Q."}
