"""What a client sends wrong to the schedules and webhook endpoints, over HTTP on both shapes (gunicorn on a real
database): every refusal is a 4xx in the error envelope `{"code": <status>, "message": ...}`, never a 500.

The service here does not set WEBHOOK_ALLOW_PRIVATE: loopback, private and metadata URLs are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from queries.ingest import DEMO_CUSTOMER_KEYS
from tests.service import SHAPES, HttpResponse, Service, service_of_shape

SCHEDULES = "/_rest/v4/dwh/schedules"
WEBHOOK = "/_rest/v4/webhook"
QUERY = {"data": {"CallEvent": {"fields": ["TimeStamp", "Ani"]}}}
BODY = {
    "query": QUERY,
    "window": "previous_day",
    "every": "day",
    "at": "02:00",
    "timezone": "Europe/Helsinki",
}


@pytest.fixture(scope="module", params=SHAPES)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with service_of_shape(
        request,
        tmp_path_factory,
        "refusals",
        extra_env={"WEBHOOK_ALLOW_PRIVATE": "0"},
        seed=False,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def acme(service: Service) -> str:
    return service.customer_create(DEMO_CUSTOMER_KEYS[0])


@pytest.fixture(scope="module")
def globex(service: Service) -> str:
    return service.customer_create(DEMO_CUSTOMER_KEYS[1])


@pytest.fixture(scope="module")
def mine(service: Service, acme: str) -> int:
    response = service.request("POST", SCHEDULES, key=acme, body=BODY)
    assert response.status == 201, response.body
    return int(response.json()["id"])


@pytest.fixture(scope="module")
def theirs(service: Service, globex: str) -> int:
    response = service.request("POST", SCHEDULES, key=globex, body=BODY)
    assert response.status == 201, response.body
    return int(response.json()["id"])


def _refused(response: HttpResponse, status: int) -> Any:
    """The response is `status` in the error envelope; returns its message."""
    assert response.status == status, (response.status, response.body[:500])
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"code", "message"} and body["code"] == status, body
    return body["message"]


def _raw(service: Service, method: str, path: str, key: str, raw: bytes, **headers: str) -> HttpResponse:
    return service.request(
        method, path, key=key, raw=raw, headers={"Content-Type": "application/json", **headers}
    )


BAD_SCHEDULES: list[tuple[str, Any]] = [
    ("every a number", {**BODY, "every": 5}),
    ("at 25:00", {**BODY, "at": "25:00"}),
    ("at a number", {**BODY, "at": 200}),
    ("timezone Mars/Base", {**BODY, "timezone": "Mars/Base"}),
    ("timezone a number", {**BODY, "timezone": 3}),
    ("window last bogus", {**BODY, "window": {"last": "bogus"}}),
    ("window null", {**BODY, "window": None}),
    ("window a list", {**BODY, "window": ["previous_day"]}),
    ("window last far too long", {**BODY, "window": {"last": "P99999D"}}),
    ("window last of seconds overflowing", {**BODY, "window": {"last": "PT999999999S"}}),
    ("paused yes", {**BODY, "paused": "yes"}),
    ("paused null", {**BODY, "paused": None}),
    ("unknown key", {**BODY, "colour": "red"}),
    ("query null", {**BODY, "query": None}),
    ("query empty", {**BODY, "query": {}}),
    ("output a string", {**BODY, "output": "csv"}),
    ("description a number", {**BODY, "description": 5}),
    ("description with NUL", {**BODY, "description": "a\u0000b"}),
    ("filename with NUL", {**BODY, "filename": "a\u0000b"}),
    ("destination unknown", {**BODY, "destination": "nowhere"}),
    ("an array", [BODY]),
    ("a string", "schedule"),
    ("null", None),
    ("empty object", {}),
]


@pytest.mark.parametrize(("name", "body"), BAD_SCHEDULES, ids=[name for name, _ in BAD_SCHEDULES])
def test_a_bad_schedule_body_is_a_400(service: Service, acme: str, mine: int, name: str, body: Any) -> None:
    raw = json.dumps(body).encode()
    _refused(_raw(service, "POST", SCHEDULES, acme, raw), 400)
    before = service.request("GET", f"{SCHEDULES}/{mine}", key=acme).json()
    if isinstance(body, dict) and body:
        patch = {k: v for k, v in body.items() if k not in BODY or BODY[k] != v}
        _refused(_raw(service, "PATCH", f"{SCHEDULES}/{mine}", acme, json.dumps(patch).encode()), 400)
    elif body is not None and not isinstance(body, dict):
        _refused(_raw(service, "PATCH", f"{SCHEDULES}/{mine}", acme, raw), 400)
    assert service.request("GET", f"{SCHEDULES}/{mine}", key=acme).json() == before


@pytest.mark.parametrize(
    "raw", [b'{"query": ', b"\xff\xfe", b"[1, 2", b"NaN"], ids=["cut", "binary", "list", "nan"]
)
def test_malformed_json_is_a_400(service: Service, acme: str, mine: int, raw: bytes) -> None:
    _refused(_raw(service, "POST", SCHEDULES, acme, raw), 400)
    _refused(_raw(service, "PATCH", f"{SCHEDULES}/{mine}", acme, raw), 400)
    _refused(_raw(service, "PUT", WEBHOOK, acme, raw), 400)


def test_an_empty_body_is_a_400_and_a_form_a_415(service: Service, acme: str, mine: int) -> None:
    _refused(_raw(service, "POST", SCHEDULES, acme, b""), 400)
    _refused(_raw(service, "PUT", WEBHOOK, acme, b""), 400)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    _refused(service.request("POST", SCHEDULES, key=acme, raw=b"every=day", headers=form), 415)
    _refused(service.request("PATCH", f"{SCHEDULES}/{mine}", key=acme, raw=b"paused=1", headers=form), 415)
    _refused(service.request("PUT", WEBHOOK, key=acme, raw=b"url=x", headers=form), 415)


@pytest.mark.parametrize(
    "schedule_id", ["999999", "abc", "1.5", "-1", "0", "99999999999999999999999", "%C3%A9", "1%00"]
)
def test_ids_that_name_no_schedule_are_a_404(service: Service, acme: str, schedule_id: str) -> None:
    path = f"{SCHEDULES}/{schedule_id}"
    _refused(service.request("GET", path, key=acme), 404)
    _refused(service.request("PATCH", path, key=acme, body={"paused": True}), 404)
    _refused(service.request("DELETE", path, key=acme), 404)
    _refused(service.request("POST", f"{path}/run", key=acme), 404)


def test_another_customers_schedule_is_a_404_and_stays_as_it_was(
    service: Service, acme: str, globex: str, theirs: int
) -> None:
    path = f"{SCHEDULES}/{theirs}"
    before = service.request("GET", path, key=globex).json()
    _refused(service.request("GET", path, key=acme), 404)
    _refused(service.request("PATCH", path, key=acme, body={"paused": True}), 404)
    _refused(service.request("PATCH", path, key=acme, body={"paused": "yes"}), 404)  # not even told it is bad
    _refused(service.request("POST", f"{path}/run", key=acme), 404)
    _refused(service.request("DELETE", path, key=acme), 404)
    assert service.request("GET", path, key=globex).json() == before
    assert theirs not in [s["id"] for s in service.request("GET", SCHEDULES, key=acme).json()["schedules"]]


def test_other_methods_are_a_405_in_the_envelope(service: Service, acme: str, mine: int) -> None:
    _refused(service.request("PUT", f"{SCHEDULES}/{mine}", key=acme, body=BODY), 405)
    _refused(service.request("DELETE", SCHEDULES, key=acme), 405)
    _refused(service.request("POST", WEBHOOK, key=acme, body={"url": "https://example.com/"}), 405)


HOOK = "https://example.com/hooks"
BAD_WEBHOOKS: list[tuple[str, Any, str]] = [
    ("ftp", {"url": "ftp://example.com/x", "events": ["query.completed"]}, "url"),
    ("no scheme", {"url": "example.com/hooks", "events": ["query.completed"]}, "url"),
    ("no host", {"url": "https://", "events": ["query.completed"]}, "url"),
    ("a bad IPv6 literal", {"url": "https://[::1/hooks", "events": ["query.completed"]}, "url"),
    ("not an address in brackets", {"url": "https://[example]/hooks", "events": ["query.completed"]}, "url"),
    ("a port out of range", {"url": "https://example.com:99999/", "events": ["query.completed"]}, "url"),
    ("loopback", {"url": "http://127.0.0.1:8000/hooks", "events": ["query.completed"]}, "url"),
    ("localhost", {"url": "http://localhost/hooks", "events": ["query.completed"]}, "url"),
    ("private", {"url": "http://10.1.2.3/hooks", "events": ["query.completed"]}, "url"),
    ("link-local", {"url": "http://169.254.10.10/hooks", "events": ["query.completed"]}, "url"),
    ("metadata", {"url": "http://169.254.169.254/latest/meta-data/", "events": ["query.completed"]}, "url"),
    ("IPv6 loopback", {"url": "http://[::1]/hooks", "events": ["query.completed"]}, "url"),
    (
        "IPv4-mapped loopback",
        {"url": "http://[::ffff:127.0.0.1]/hooks", "events": ["query.completed"]},
        "url",
    ),
    ("url a number", {"url": 5, "events": ["query.completed"]}, "url"),
    ("url null", {"url": None, "events": ["query.completed"]}, "url"),
    ("no url", {"events": ["query.completed"]}, "url"),
    ("unknown event type", {"url": HOOK, "events": ["query.exploded"]}, "events"),
    ("no event types", {"url": HOOK, "events": []}, "events"),
    ("events a string", {"url": HOOK, "events": "query.completed"}, "events"),
    ("events null", {"url": HOOK, "events": None}, "events"),
    ("an event type twice", {"url": HOOK, "events": ["query.failed", "query.failed"]}, "events"),
    ("an event type not a string", {"url": HOOK, "events": [5]}, "events"),
    ("an unknown key", {"url": HOOK, "event": ["query.completed"]}, "event"),
]


@pytest.mark.parametrize(("name", "body", "field"), BAD_WEBHOOKS, ids=[name for name, _, _ in BAD_WEBHOOKS])
def test_a_bad_webhook_is_a_400_naming_the_field(
    service: Service, acme: str, name: str, body: Any, field: str
) -> None:
    message = _refused(service.request("PUT", WEBHOOK, key=acme, body=body), 400)
    assert isinstance(message, dict) and set(message) == {field}, message
    _refused(service.request("GET", WEBHOOK, key=acme), 404)  # nothing was set


@pytest.mark.parametrize("body", [["url"], "https://example.com/", None], ids=["array", "string", "null"])
def test_a_webhook_body_that_is_not_an_object_is_a_400(service: Service, acme: str, body: Any) -> None:
    _refused(_raw(service, "PUT", WEBHOOK, acme, json.dumps(body).encode()), 400)
    _refused(service.request("GET", WEBHOOK, key=acme), 404)


def test_a_webhook_is_set_rotated_and_removed(service: Service, acme: str) -> None:
    """What is taken: a host that does not resolve (yet) is not refused; each delivery resolves it again."""
    body = {"url": "https://hooks.example.invalid/in", "events": ["query.completed", "schedule.paused"]}
    created = service.request("PUT", WEBHOOK, key=acme, body=body)
    assert created.status == 201, created.body
    assert set(created.json()) == {"url", "events", "secret"} and created.json()["events"] == body["events"]
    rotated = service.request("PUT", WEBHOOK, key=acme, body=body)
    assert rotated.status == 200 and rotated.json()["secret"] != created.json()["secret"]
    shown = service.request("GET", WEBHOOK, key=acme)
    assert shown.status == 200 and "secret" not in shown.json()
    assert service.request("DELETE", WEBHOOK, key=acme).status == 204
    _refused(service.request("DELETE", WEBHOOK, key=acme), 404)
