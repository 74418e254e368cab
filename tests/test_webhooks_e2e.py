"""Webhooks end to end, on both shapes: gunicorn and real Celery workers POST each state change of a customer's
queries to a real HTTP receiver on loopback (tests/webhooks/receiver.py), signed, in order, at least once.

The service is given WEBHOOK_ALLOW_PRIVATE=1 (the receiver is on 127.0.0.1) and a backoff of 1 s; the refusal of
private addresses is checked with a web process and a worker that do not allow them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from queries.ingest import DEMO_CUSTOMER_KEYS
from tests.seed_requests import REQUEST_1
from tests.servers import _stop, free_port
from tests.service import SHAPES, Service, service_of_shape
from tests.webhooks.receiver import Received, Receiver, receiver_running, signature_valid

NO_ROWS = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["Ani"]}},
    "filters": {"CallEvent": {"Ani": {"$eq": "no such number"}}},
}
WEBHOOK = "/_rest/v4/webhook"
PUBLIC_URL = "https://insights.example.com/base"
COMPLETED = ["query.submitted", "query.started", "query.completed"]


@pytest.fixture(scope="module", params=SHAPES)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with service_of_shape(
        request,
        tmp_path_factory,
        "webhooks",
        extra_env={
            "WEBHOOK_ALLOW_PRIVATE": "1",
            "WEBHOOK_BACKOFF_SECONDS": "1",
            "WEBHOOK_BACKOFF_MAX_SECONDS": "4",
            "WEBHOOK_CONNECT_TIMEOUT_SECONDS": "2",
            # Longer than any export here: the hanging receiver is still hanging when its query completes.
            "WEBHOOK_READ_TIMEOUT_SECONDS": "60",
            "INSIGHTS_PUBLIC_URL": PUBLIC_URL,  # where customers reach it (behind a proxy): events link there
        },
    ) as running:
        yield running


@pytest.fixture(scope="module")
def acme(service: Service) -> str:
    return service.customer_create(DEMO_CUSTOMER_KEYS[0])


@pytest.fixture(scope="module")
def globex(service: Service) -> str:
    return service.customer_create(DEMO_CUSTOMER_KEYS[1])


@pytest.fixture(scope="module")
def initech(service: Service) -> str:
    return service.customer_create(DEMO_CUSTOMER_KEYS[2])


@pytest.fixture()
def worker(service: Service) -> Iterator[None]:
    service.worker_start()
    yield
    service.workers_stop()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with receiver_running() as running:
        yield running


@pytest.fixture()
def hook(service: Service) -> Iterator[Any]:
    """hook(key, receiver) sets the customer's webhook to the receiver and returns its secret; removed after."""
    keys: list[str] = []

    def put(key: str, receiver: Receiver, **body: Any) -> str:
        response = service.request("PUT", WEBHOOK, key=key, body={"url": receiver.url, **body})
        assert response.status in (200, 201), response.body
        keys.append(key)
        return str(response.json()["secret"])

    yield put
    for key in keys:
        service.request("DELETE", WEBHOOK, key=key)


def _submit(service: Service, key: str, body: dict[str, Any]) -> str:
    response = service.request("POST", "/_rest/v4/dwh/Q", key=key, body=body)
    assert response.status == 201, response.body
    return str(response.json()["id"])


def _types(received: list[Received]) -> list[str]:
    return [r.json()["type"] for r in received]


def _events(service: Service, guid: str) -> list[dict[str, Any]]:
    """The query's events and their delivery log, as the admin shows them (read from the service's database)."""
    script = (
        "import json\n"
        "from webhooks.models import WebhookEvent\n"
        f"events = WebhookEvent.objects.filter(subject={guid!r}).order_by('sequence')\n"
        "print(json.dumps([{'type': e.type, 'sequence': e.sequence, 'state': e.state, 'attempts': e.attempts,\n"
        "  'log': [[a.number, a.status_code, a.outcome] for a in e.delivery_attempts.order_by('number')]}\n"
        "  for e in events]))\n"
    )
    return list(json.loads(service.manage("shell", "-c", script).strip().splitlines()[-1]))


def _assert_signed_sequence(received: list[Received], secret: str, guid: str, types: list[str]) -> None:
    bodies = [r.json() for r in received]
    assert [b["type"] for b in bodies] == types
    assert [b["sequence"] for b in bodies] == list(range(1, len(types) + 1))
    assert {b["data"]["id"] for b in bodies} == {guid}
    assert len({b["id"] for b in bodies}) == len(types) and all(b["id"].startswith("evt_") for b in bodies)
    assert all(signature_valid(secret, r) for r in received)
    assert not any(signature_valid("whsec_not-the-secret", r) for r in received)


def test_a_completed_query_is_announced_at_each_change_signed(
    service: Service, acme: str, receiver: Receiver, hook: Any, worker: None
) -> None:
    secret = hook(acme, receiver)
    guid = _submit(service, acme, REQUEST_1)
    assert service.wait_terminal(guid, acme)["status"] == "Completed"
    received = receiver.wait_answered(3)
    _assert_signed_sequence(received, secret, guid, COMPLETED)
    submitted, started, completed = (r.json()["data"] for r in received)
    assert (submitted["status"], submitted["started_at"]) == ("Pending", None)
    assert started["status"] == "Pending" and started["started_at"] is not None
    export = service.request("GET", f"/_rest/v4/dwh/exports/{guid}", key=acme).json()
    link = f"/_rest/v4/dwh/exports/{guid}?redirect=true"
    assert (completed.pop("download_link"), export["download_link"]) == (
        PUBLIC_URL + link,
        service.base_url + link,
    )
    assert completed == {k: v for k, v in export.items() if k != "download_link"}
    assert completed["status"] == "Completed" and completed["rows"] > 0
    assert [e["state"] for e in _events(service, guid)] == ["delivered"] * 3


def test_a_failed_query_is_announced(
    service: Service, acme: str, receiver: Receiver, hook: Any, worker: None
) -> None:
    secret = hook(acme, receiver, events=["query.submitted", "query.failed"])
    guid = _submit(service, acme, NO_ROWS)
    assert service.wait_terminal(guid, acme)["status"] == "Failed"
    received = receiver.wait_answered(2)
    _assert_signed_sequence(
        received, secret, guid, ["query.submitted", "query.failed"]
    )  # no started: not taken
    assert received[1].json()["data"]["status"] == "Failed"


def test_a_canceled_query_is_announced(service: Service, acme: str, receiver: Receiver, hook: Any) -> None:
    secret = hook(acme, receiver)
    guid = _submit(service, acme, REQUEST_1)  # no worker yet: it stays queued
    assert service.request("DELETE", f"/_rest/v4/dwh/Q/{guid}", key=acme).status == 202
    service.worker_start()  # the deliveries wait for a worker like any task
    try:
        received = receiver.wait_answered(2)
    finally:
        service.workers_stop()
    _assert_signed_sequence(received, secret, guid, ["query.submitted", "query.canceled"])
    assert received[1].json()["data"]["status"] == "Canceled"


def test_a_receiver_failing_three_times_gets_each_event_once_in_order(
    service: Service, acme: str, receiver: Receiver, hook: Any, worker: None
) -> None:
    receiver.plan = [500, 500, 500]
    secret = hook(acme, receiver)
    guid = _submit(service, acme, REQUEST_1)
    assert service.wait_terminal(guid, acme)["status"] == "Completed"
    received = receiver.wait_answered(3)
    _assert_signed_sequence(received, secret, guid, COMPLETED)
    # The later events waited while the first was refused: it was asked four times before anything else.
    assert [(r.status, r.json()["type"]) for r in receiver.requests] == [
        (500, "query.submitted"),
        (500, "query.submitted"),
        (500, "query.submitted"),
        (200, "query.submitted"),
        (200, "query.started"),
        (200, "query.completed"),
    ]
    assert len({r.body for r in receiver.requests[:4]}) == 1  # the same event, byte for byte
    assert [e["log"] for e in _events(service, guid)] == [
        [[1, 500, "retry"], [2, 500, "retry"], [3, 500, "retry"], [4, 200, "delivered"]],
        [[1, 200, "delivered"]],
        [[1, 200, "delivered"]],
    ]


def test_4xx_is_not_retried(service: Service, acme: str, receiver: Receiver, hook: Any, worker: None) -> None:
    receiver.default = 410
    hook(acme, receiver)
    guid = _submit(service, acme, REQUEST_1)
    assert service.wait_terminal(guid, acme)["status"] == "Completed"
    receiver.wait_until(lambda r: len(r.requests) >= 3)
    # An event goes out only once the one before it has ended: three events, three requests, no second try.
    assert [(r.status, r.json()["type"]) for r in receiver.requests] == [(410, t) for t in COMPLETED]
    assert [(e["state"], e["attempts"]) for e in _events(service, guid)] == [("failed", 1)] * 3


def test_a_hanging_receiver_does_not_hold_up_the_export(
    service: Service, acme: str, hook: Any, worker: None
) -> None:
    with receiver_running(hold=True) as hanging:
        secret = hook(acme, hanging)
        guid = _submit(service, acme, REQUEST_1)
        hanging.wait_until(lambda r: r.held >= 1)  # query.submitted is being POSTed, and not answered
        assert service.wait_terminal(guid, acme)["status"] == "Completed"
        assert hanging.held == 1 and hanging.requests == []  # completed while the receiver still hangs,
        (submitted, *_) = _events(service, guid)  # and the POST is still waiting for its answer (no timeout)
        assert (submitted["type"], submitted["state"], submitted["log"]) == ("query.submitted", "pending", [])
        hanging.release()
        received = hanging.wait_answered(3)
    _assert_signed_sequence(received, secret, guid, COMPLETED)


def test_an_expired_query_is_announced_before_and_when_retention_deletes_it(
    service: Service, initech: str, receiver: Receiver, hook: Any, worker: None
) -> None:
    secret = hook(initech, receiver)
    guid = _submit(service, initech, REQUEST_1)
    assert service.wait_terminal(guid, initech)["status"] == "Completed"
    receiver.wait_answered(3)
    # What beat runs: the announcement of results deleted within 24 h, then retention (0 days: at once).
    service.manage(
        "shell",
        "-c",
        "from insights.models import Customer\n"
        "from queries.maintenance import results_expire\n"
        "from queries.webhook_events import webhook_events_catch_up\n"
        f"Customer.objects.filter(key={DEMO_CUSTOMER_KEYS[2]!r}).update(retention_days=0)\n"
        "webhook_events_catch_up()\n"
        "results_expire()\n"
        f"Customer.objects.filter(key={DEMO_CUSTOMER_KEYS[2]!r}).update(retention_days=7)\n",
    )
    received = receiver.wait_answered(5)
    _assert_signed_sequence(received, secret, guid, [*COMPLETED, "query.expiring", "query.expired"])
    assert received[3].json()["data"]["status"] == "Completed"
    assert received[4].json()["data"]["status"] == "Expired"
    assert service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=initech).status == 410


def test_a_customer_sees_changes_and_hears_only_its_own(
    service: Service, acme: str, globex: str, hook: Any, worker: None
) -> None:
    with receiver_running() as mine, receiver_running() as theirs:
        hook(acme, mine)
        assert service.request("GET", WEBHOOK, key=globex).status == 404
        assert service.request("DELETE", WEBHOOK, key=globex).status == 404
        hook(globex, theirs)
        assert service.request("GET", WEBHOOK, key=acme).json()["url"] == mine.url
        assert service.request("GET", WEBHOOK, key=globex).json()["url"] == theirs.url
        acme_query, globex_query = _submit(service, acme, REQUEST_1), _submit(service, globex, REQUEST_1)
        for guid, key in ((acme_query, acme), (globex_query, globex)):
            assert service.wait_terminal(guid, key)["status"] == "Completed"
        mine.wait_answered(3)
        theirs.wait_answered(3)
        assert {r.json()["data"]["id"] for r in mine.requests} == {acme_query}
        assert {r.json()["data"]["id"] for r in theirs.requests} == {globex_query}


def test_reused_results_are_announced_once_each(
    service: Service, acme: str, receiver: Receiver, hook: Any
) -> None:
    secret = hook(acme, receiver)
    original = _submit(service, acme, REQUEST_1)  # no worker yet: it stays queued
    joined = _submit(service, acme, {**REQUEST_1, "max_age": 0})  # follows the queued run
    service.worker_start()
    try:
        assert service.wait_terminal(original, acme)["status"] == "Completed"  # the follower is never read
        reused = _submit(service, acme, {**REQUEST_1, "max_age": 3600})  # Completed at once
        received = receiver.wait_answered(len(COMPLETED) + 2 + 1)
        events = {guid: _events(service, guid) for guid in (original, joined, reused)}
    finally:
        service.workers_stop()
    by_query: dict[str, list[Received]] = {}
    for request in received:
        by_query.setdefault(request.json()["data"]["id"], []).append(request)
    assert set(by_query) == {original, joined, reused}
    _assert_signed_sequence(by_query[original], secret, original, COMPLETED)
    # No query.started: neither reuse runs. The joined one is announced when its run ends, unread.
    _assert_signed_sequence(by_query[joined], secret, joined, ["query.submitted", "query.completed"])
    _assert_signed_sequence(by_query[reused], secret, reused, ["query.completed"])
    rows = by_query[original][-1].json()["data"]["rows"]
    assert by_query[joined][-1].json()["data"]["rows"] == by_query[reused][0].json()["data"]["rows"] == rows
    assert len(receiver.requests) == len(received)  # each once
    assert {guid: [e["type"] for e in recorded] for guid, recorded in events.items()} == {
        original: COMPLETED,
        joined: ["query.submitted", "query.completed"],
        reused: ["query.completed"],
    }
    # Read now: settling found nothing left to do, and recorded nothing more.
    assert (
        service.request("GET", f"/_rest/v4/dwh/Q/{joined}/status", key=acme).json()["status"] == "Completed"
    )
    assert [e["type"] for e in _events(service, joined)] == ["query.submitted", "query.completed"]


def test_private_addresses_are_refused_when_set_and_at_delivery(
    service: Service, acme: str, receiver: Receiver, hook: Any
) -> None:
    strict = {"WEBHOOK_ALLOW_PRIVATE": "0"}
    port = free_port()
    web = service.web_start(port, extra_env=strict)
    try:
        for url in (
            receiver.url,
            "http://localhost:8000/hook",
            "http://[::1]/hook",
            "http://10.0.0.8/hook",
            "http://169.254.169.254/latest/meta-data/",
        ):
            refused = service.request(
                "PUT", WEBHOOK, key=acme, body={"url": url}, base_url=f"http://127.0.0.1:{port}"
            )
            assert refused.status == 400, (url, refused.body)
            (reason,) = refused.json()["message"]["url"]
            assert "not a public address" in reason
    finally:
        _stop(web)
    assert service.request("GET", WEBHOOK, key=acme).status == 404
    # Set where private addresses are allowed, delivered by a worker where they are not: checked again, refused.
    hook(acme, receiver, events=["query.submitted"])
    guid = _submit(service, acme, REQUEST_1)
    service.worker_start(extra_env=strict)
    try:
        assert service.wait_terminal(guid, acme)["status"] == "Completed"
        submitted = _wait_event_ended(service, guid)
    finally:
        service.workers_stop()
    assert (submitted["state"], submitted["log"]) == ("failed", [[1, None, "failed"]])
    assert receiver.requests == []


def _wait_event_ended(service: Service, guid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        (event,) = _events(service, guid)
        if event["state"] != "pending":
            return event
        time.sleep(0.5)
    raise AssertionError(f"the event of {guid} is still pending")
