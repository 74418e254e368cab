"""PUT, GET and DELETE /_rest/v4/webhook through the API (Django's test client), tenancy and refusals included."""

from __future__ import annotations

import pytest

from insights.secrets import secrets_decrypt
from tests.queries.clients import api_client
from webhooks.models import EventType, Webhook

URL = "/_rest/v4/webhook"
RECEIVER = "http://127.0.0.1:9/hooks"


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.PRODUCTION = False


@pytest.fixture()
def acme(customer_factory):
    return customer_factory("acme")


@pytest.fixture()
def globex(customer_factory):
    return customer_factory("globex")


def test_put_creates_then_replaces_and_each_put_rotates_the_secret(acme):
    client = api_client(acme)
    created = client.put(URL, {"url": RECEIVER, "events": ["query.completed", "query.failed"]}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"url", "events", "secret"}
    assert body["url"] == RECEIVER and body["events"] == ["query.completed", "query.failed"]
    assert body["secret"].startswith("whsec_")
    stored = Webhook.objects.get(customer=acme)
    assert secrets_decrypt(stored.secret_encrypted) == {"secret": body["secret"]}
    assert body["secret"] not in stored.secret_encrypted

    replaced = client.put(URL, {"url": RECEIVER + "/v2"}, format="json")
    assert replaced.status_code == 200
    assert replaced.json()["events"] == EventType.values  # every type when left out
    assert replaced.json()["secret"] != body["secret"]
    assert Webhook.objects.filter(customer=acme).count() == 1


def test_get_shows_the_webhook_without_its_secret(acme):
    client = api_client(acme)
    secret = client.put(URL, {"url": RECEIVER}, format="json").json()["secret"]
    shown = client.get(URL)
    assert shown.status_code == 200
    assert set(shown.json()) == {"url", "events", "created_at", "secret_rotated_at"}
    assert secret not in shown.content.decode()


def test_delete_removes_it_and_then_there_is_nothing_to_get_or_delete(acme):
    client = api_client(acme)
    client.put(URL, {"url": RECEIVER}, format="json")
    assert client.delete(URL).status_code == 204
    not_set = {"code": 404, "message": "No webhook is set for this account; PUT /_rest/v4/webhook sets one."}
    for response in (client.get(URL), client.delete(URL)):
        assert response.status_code == 404 and response.json() == not_set


def test_a_customer_sees_and_changes_only_its_own_webhook(acme, globex):
    mine, theirs = api_client(acme), api_client(globex)
    mine.put(URL, {"url": RECEIVER + "/acme"}, format="json")
    assert theirs.get(URL).status_code == 404
    assert theirs.delete(URL).status_code == 404
    assert theirs.put(URL, {"url": RECEIVER + "/globex"}, format="json").status_code == 201  # its own, new
    assert mine.get(URL).json()["url"] == RECEIVER + "/acme"
    assert theirs.get(URL).json()["url"] == RECEIVER + "/globex"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"url": "ftp://example.com/x"}, {"url": ["Enter an http or https URL."]}),
        ({"url": "not a url"}, {"url": ["The URL must not contain spaces or control characters."]}),
        ({"url": "https://[::1/hooks"}, {"url": ["The URL's host or port is not valid."]}),
        ({}, {"url": ["This field is required."]}),
        (
            {"url": RECEIVER, "events": ["query.exploded"]},
            {"events": {"0": ['"query.exploded" is not a valid choice.']}},
        ),
        ({"url": RECEIVER, "events": []}, {"events": ["Ensure this field has at least 1 elements."]}),
        (
            {"url": RECEIVER, "events": ["query.failed", "query.failed"]},
            {"events": ["Name each event type once."]},
        ),
        (
            {"url": RECEIVER, "events": "query.failed"},
            {"events": ['Expected a list of items but got type "str".']},
        ),
        (
            {"url": RECEIVER, "event": ["query.failed"]},  # a typo must not subscribe to every type
            {"event": ["This is not a webhook field; the fields are url, events."]},
        ),
        (
            ["not", "an", "object"],
            {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]},
        ),
    ],
)
def test_bad_bodies_are_400_in_the_error_envelope(acme, body, message):
    response = api_client(acme).put(URL, body, format="json")
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": message}
    assert not Webhook.objects.exists()


def test_bad_json_and_other_media_types_are_refused_in_the_envelope(acme):
    client = api_client(acme)
    bad_json = client.put(URL, b'{"url": ', content_type="application/json")
    assert bad_json.status_code == 400 and bad_json.json()["code"] == 400
    form = client.put(URL, b"url=x", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415 and form.json()["code"] == 415


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/", "http://localhost/", "http://[::1]/", "http://169.254.169.254/latest/meta-data/"],
)
def test_private_and_metadata_addresses_are_refused_unless_allowed(acme, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    response = api_client(acme).put(URL, {"url": url}, format="json")
    assert response.status_code == 400
    (reason,) = response.json()["message"]["url"]
    assert "which is not a public address" in reason
    assert not Webhook.objects.exists()


def test_a_host_that_does_not_resolve_yet_is_taken_and_checked_at_each_delivery(acme, settings):
    # A name that never resolves (RFC 6761): not an address inside the network, so nothing to refuse yet; each
    # delivery resolves it again (webhooks.delivery retries it while it does not resolve).
    settings.WEBHOOK_ALLOW_PRIVATE = False
    response = api_client(acme).put(URL, {"url": "https://hooks.example.invalid/in"}, format="json")
    assert response.status_code == 201, response.json()
    assert Webhook.objects.get(customer=acme).url == "https://hooks.example.invalid/in"


def test_production_refuses_plain_http(acme, settings):
    settings.PRODUCTION = True
    response = api_client(acme).put(URL, {"url": RECEIVER}, format="json")
    assert response.json() == {
        "code": 400,
        "message": {"url": ["Enter an https URL: plain http is refused in production."]},
    }


def test_no_credential_is_the_401_of_every_endpoint(db):
    from rest_framework.test import APIClient

    for method in ("get", "put", "delete"):
        response = getattr(APIClient(), method)(URL)
        assert response.status_code == 401 and response.json() == {"code": 401, "error": "Unauthorized"}
