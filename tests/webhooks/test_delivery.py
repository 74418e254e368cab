"""Recording and delivering events (webhooks.events, webhooks.delivery) to a real HTTP receiver on loopback.

The broker is recorded (`sent_tasks`); each test runs the delivery task's service itself, as a worker would.
A later moment is reached with time-machine (the retry window, a backoff), never by sleeping.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from tests.webhooks.receiver import Receiver, receiver_running, signature_valid
from webhooks.delivery import backoff, event_deliver, event_redeliver, events_sweep
from webhooks.events import event_emit
from webhooks.models import DeliveryAttempt, EventState, WebhookEvent
from webhooks.services import webhook_put


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.PRODUCTION = False
    settings.WEBHOOK_BACKOFF_SECONDS = 10
    settings.WEBHOOK_BACKOFF_MAX_SECONDS = 3600
    settings.WEBHOOK_READ_TIMEOUT_SECONDS = 1
    settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS = 1


@pytest.fixture()
def acme(customer_factory):
    return customer_factory("acme")


@pytest.fixture()
def receiver():
    with receiver_running() as running:
        yield running


def _hooked(customer, receiver: Receiver, events: list[str] | None = None) -> str:
    return webhook_put(customer=customer, url=receiver.url, events=events).secret


def _emit(customer, type: str = "query.completed", subject: str = "q1", **data) -> WebhookEvent:
    public_id = event_emit(customer_id=customer.pk, type=type, data={"id": subject, **data}, subject=subject)
    assert public_id is not None
    return WebhookEvent.objects.get(public_id=public_id)


def _due_now(event: WebhookEvent) -> None:
    """What a worker does at the retry time (the backoff itself is time-machine's, below)."""
    WebhookEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())


def test_an_event_is_recorded_and_sent_only_after_the_change_commits(
    acme, receiver, sent_tasks, django_capture_on_commit_callbacks
):
    _hooked(acme, receiver)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        event = _emit(acme)
    assert sent_tasks == []
    for callback in callbacks:
        callback()
    assert sent_tasks == [("webhooks.deliver", (event.pk,), None)]


def test_only_the_types_the_webhook_takes_are_recorded(acme, receiver, sent_tasks):
    assert event_emit(customer_id=acme.pk, type="query.failed", data={}, subject="q") is None  # no webhook
    _hooked(acme, receiver, events=["query.completed"])
    assert event_emit(customer_id=acme.pk, type="query.failed", data={}, subject="q") is None
    assert event_emit(customer_id=acme.pk, type="query.completed", data={}, subject="q") is not None
    with pytest.raises(ValueError, match="unknown webhook event type"):
        event_emit(customer_id=acme.pk, type="query.exploded", data={}, subject="q")


def test_each_subject_numbers_its_events_and_once_events_are_recorded_once(acme, receiver, sent_tasks):
    _hooked(acme, receiver)
    emitted = [
        event_emit(customer_id=acme.pk, type=type, data={}, subject=subject, once=True)
        for subject, type in [
            ("a", "query.submitted"),
            ("b", "query.submitted"),
            ("a", "query.started"),
            ("a", "query.started"),  # a second attempt starts: announced once
            ("a", "query.completed"),
        ]
    ]
    assert emitted[3] is None
    events = WebhookEvent.objects.order_by("pk")
    assert [(e.subject, e.type, e.sequence) for e in events] == [
        ("a", "query.submitted", 1),
        ("b", "query.submitted", 1),
        ("a", "query.started", 2),
        ("a", "query.completed", 3),
    ]
    paused = [event_emit(customer_id=acme.pk, type="schedule.paused", data={}, subject="s") for _ in range(2)]
    assert all(paused)  # not once: a schedule may pause again


def test_a_delivery_posts_the_signed_body_and_logs_the_attempt(acme, receiver, sent_tasks):
    secret = _hooked(acme, receiver)
    event = _emit(acme, rows=12)
    assert event_deliver(event_id=event.pk) == "delivered"
    (received,) = receiver.requests
    assert received.path == "/hooks/insights?source=test"
    assert signature_valid(secret, received)
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["Insights-Event-Id"] == event.public_id
    body = received.json()
    assert set(body) == {"id", "type", "created_at", "sequence", "data"}
    assert (body["id"], body["type"], body["sequence"]) == (event.public_id, "query.completed", 1)
    assert body["data"] == {"id": "q1", "rows": 12}
    assert received.body == event.body.encode()
    event.refresh_from_db()
    assert (event.state, event.attempts, event.last_status_code) == (EventState.DELIVERED, 1, 200)
    (attempt,) = DeliveryAttempt.objects.all()
    assert (attempt.customer, attempt.status_code, attempt.outcome, attempt.response_body) == (
        acme,
        200,
        "delivered",
        "ok",
    )
    assert attempt.latency_ms >= 0 and attempt.url == receiver.url
    assert event_deliver(event_id=event.pk) is None  # a duplicate message does nothing
    assert len(receiver.requests) == 1


def test_5xx_is_retried_with_exponential_backoff_and_the_same_body(acme, receiver, sent_tasks):
    secret = _hooked(acme, receiver)
    receiver.plan = [500, 503, 502]
    event = _emit(acme)
    outcomes = []
    for attempt in range(1, 5):
        outcomes.append(event_deliver(event_id=event.pk))
        event.refresh_from_db()
        if event.state == EventState.PENDING:
            wait = event.next_attempt_at - timezone.now()
            assert timedelta(seconds=10 * 2 ** (attempt - 1) - 1) < wait <= backoff(attempt)
            assert sent_tasks[-1][0] == "webhooks.deliver" and sent_tasks[-1][2] == pytest.approx(
                backoff(attempt).total_seconds()
            )
            assert event_deliver(event_id=event.pk) is None  # not due yet
            _due_now(event)
    assert outcomes == ["retry", "retry", "retry", "delivered"]
    assert [r.status for r in receiver.requests] == [500, 503, 502, 200]
    assert len({r.body for r in receiver.requests}) == 1
    assert all(signature_valid(secret, r) for r in receiver.requests)
    assert list(
        DeliveryAttempt.objects.order_by("number").values_list("number", "status_code", "outcome")
    ) == [
        (1, 500, "retry"),
        (2, 503, "retry"),
        (3, 502, "retry"),
        (4, 200, "delivered"),
    ]


def test_4xx_and_redirects_are_not_retried(acme, receiver, sent_tasks):
    _hooked(acme, receiver)
    receiver.plan = [404, 302]
    receiver.extra_headers = {"Location": receiver.url + "&redirected=1"}
    gone, moved = _emit(acme, subject="a"), _emit(acme, subject="b")
    assert event_deliver(event_id=gone.pk) == "failed"
    assert event_deliver(event_id=moved.pk) == "failed"
    assert [(r.path, r.status) for r in receiver.requests] == [
        ("/hooks/insights?source=test", 404),
        ("/hooks/insights?source=test", 302),  # the Location was not followed
    ]
    assert set(WebhookEvent.objects.values_list("state", flat=True)) == {EventState.FAILED}
    assert sent_tasks == []


def test_the_response_body_is_kept_to_its_first_kilobyte(acme, receiver, sent_tasks):
    _hooked(acme, receiver)
    receiver.answer_body = b"x" * 5000
    assert event_deliver(event_id=_emit(acme).pk) == "delivered"
    assert DeliveryAttempt.objects.get().response_body == "x" * 1024


def test_a_receiver_that_does_not_answer_in_time_is_retried(acme, sent_tasks):
    with receiver_running(hold=True) as hanging:
        _hooked(acme, hanging)
        event = _emit(acme)
        assert event_deliver(event_id=event.pk) == "retry"  # WEBHOOK_READ_TIMEOUT_SECONDS=1
        attempt = DeliveryAttempt.objects.get()
        assert attempt.status_code is None and attempt.error.startswith("timed out")


def test_a_refused_connection_is_retried(acme, sent_tasks):
    with receiver_running() as gone:
        _hooked(acme, gone)
    event = _emit(acme)  # the receiver has stopped listening
    assert event_deliver(event_id=event.pk) == "retry"
    assert "ConnectError" in DeliveryAttempt.objects.get().error


def test_a_later_event_of_a_subject_waits_for_the_earlier_one(acme, receiver, sent_tasks):
    _hooked(acme, receiver)
    receiver.plan = [500]
    first, second = _emit(acme, "query.submitted"), _emit(acme, "query.started")
    other = _emit(acme, "query.submitted", subject="q2")
    assert event_deliver(event_id=first.pk) == "retry"
    assert event_deliver(event_id=second.pk) is None  # q1's first event is still pending
    assert event_deliver(event_id=other.pk) == "delivered"  # another query is not held up
    sent_tasks.clear()
    _due_now(first)
    assert event_deliver(event_id=first.pk) == "delivered"
    assert sent_tasks == [("webhooks.deliver", (second.pk,), None)]  # its end sends the next one
    assert event_deliver(event_id=second.pk) == "delivered"
    delivered = [r.json() for r in receiver.answered()]
    assert [(d["data"]["id"], d["sequence"]) for d in delivered] == [("q2", 1), ("q1", 1), ("q1", 2)]


def test_a_failed_event_does_not_hold_up_the_next(acme, receiver, sent_tasks):
    _hooked(acme, receiver)
    receiver.plan = [400]
    first, second = _emit(acme, "query.submitted"), _emit(acme, "query.started")
    assert event_deliver(event_id=first.pk) == "failed"
    assert sent_tasks[-1] == ("webhooks.deliver", (second.pk,), None)
    assert event_deliver(event_id=second.pk) == "delivered"


def test_retries_stop_after_the_retry_window(acme, receiver, sent_tasks, settings):
    settings.WEBHOOK_RETRY_HOURS = 24
    _hooked(acme, receiver)
    receiver.default = 500
    event = _emit(acme)
    with time_machine.travel(event.created_at + timedelta(hours=23, minutes=59, seconds=55)):
        _due_now(event)
        assert event_deliver(event_id=event.pk) == "failed"  # the next try (10 s on) would fall after 24 h
    event.refresh_from_db()
    assert event.state == EventState.FAILED and event.attempts == 1


def test_a_host_that_does_not_resolve_is_retried(acme, sent_tasks):
    webhook_put(customer=acme, url="https://hooks.example.invalid/in")
    event = _emit(acme)
    assert event_deliver(event_id=event.pk) == "retry"
    assert DeliveryAttempt.objects.get().error == "hooks.example.invalid does not resolve."
    assert WebhookEvent.objects.get(pk=event.pk).state == EventState.PENDING


def test_the_address_is_checked_again_at_delivery(acme, receiver, sent_tasks, settings):
    _hooked(acme, receiver)
    event = _emit(acme)
    settings.WEBHOOK_ALLOW_PRIVATE = False  # e.g. the host now resolves to a private address
    assert event_deliver(event_id=event.pk) == "failed"
    assert receiver.requests == []
    assert "127.0.0.1, which is not a public address" in DeliveryAttempt.objects.get().error


def test_events_of_a_removed_webhook_are_skipped(acme, receiver, sent_tasks):
    from webhooks.services import webhook_delete

    _hooked(acme, receiver)
    event = _emit(acme)
    webhook_delete(customer=acme)
    assert WebhookEvent.objects.get(pk=event.pk).state == EventState.SKIPPED
    assert event_deliver(event_id=event.pk) is None and receiver.requests == []


def test_a_new_secret_signs_the_events_not_yet_delivered(acme, receiver, sent_tasks):
    _hooked(acme, receiver)
    event = _emit(acme)
    rotated = _hooked(acme, receiver)
    assert event_deliver(event_id=event.pk) == "delivered"
    assert signature_valid(rotated, receiver.requests[0])


def test_the_sweep_sends_what_has_no_message_and_prunes_old_events(acme, receiver, sent_tasks, settings):
    settings.WEBHOOK_LOG_DAYS = 30
    _hooked(acme, receiver)
    lost, waiting = _emit(acme, subject="a"), _emit(acme, "query.started", subject="a")
    far = _emit(acme, subject="b")
    WebhookEvent.objects.filter(pk=far.pk).update(next_attempt_at=timezone.now() + timedelta(hours=2))
    assert events_sweep() == 1
    assert sent_tasks[-1] == ("webhooks.deliver", (lost.pk,), None)  # not `waiting`: `lost` goes first
    assert events_sweep() == 0  # its message is on its way
    assert event_deliver(event_id=lost.pk) == "delivered"
    assert event_deliver(event_id=waiting.pk) == "delivered"
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        assert events_sweep() == 1  # `far` is due, and delivered and old events are pruned with their log
    assert list(WebhookEvent.objects.values_list("pk", flat=True)) == [far.pk]
    assert not DeliveryAttempt.objects.exists()


def test_an_operator_can_deliver_a_failed_event_again(acme, receiver, sent_tasks):
    _hooked(acme, receiver)
    receiver.plan = [410]
    event = _emit(acme)
    assert event_deliver(event_id=event.pk) == "failed"
    assert event_redeliver(event=event)
    assert event_deliver(event_id=event.pk) == "delivered"
    assert not event_redeliver(event=WebhookEvent.objects.get(pk=event.pk))  # delivered: nothing to do
    assert [json.loads(r.body)["id"] for r in receiver.requests] == [event.public_id] * 2
