"""A query's state changes recorded as webhook events (queries.webhook_events), through the state machine's own
functions: what each change records, with the export object as the exports API shows it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from queries import lifecycle, maintenance
from queries.models import QueryRequest, QueryStatus
from queries.serializers import ExportSerializer
from queries.services import export_delete
from queries.webhook_events import query_event_emit, webhook_events_catch_up
from tests.queries.clients import api_client
from webhooks.models import WebhookEvent
from webhooks.services import webhook_put

QUERY = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"ApplicationExitEvent": {"fields": ["FlowId"]}},
}


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture()
def acme(customer_factory):
    customer = customer_factory("acme", retention_days=7)
    webhook_put(customer=customer, url="http://127.0.0.1:9/hooks")
    return customer


def _events(query: QueryRequest) -> list[tuple[str, int]]:
    return list(
        WebhookEvent.objects.filter(subject=query.guid).order_by("sequence").values_list("type", "sequence")
    )


def _pending(customer) -> QueryRequest:
    return QueryRequest.objects.create(customer=customer, body=json.dumps(QUERY), fingerprint="f" * 64)


def test_a_post_records_query_submitted_with_the_export_object(
    acme, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client(acme).post("/_rest/v4/dwh/Q", QUERY, format="json")
    query = QueryRequest.objects.get(guid=response.json()["id"])
    (event,) = WebhookEvent.objects.all()
    body = json.loads(event.body)
    assert (body["type"], body["sequence"], event.subject) == ("query.submitted", 1, query.guid)
    assert body["data"] == ExportSerializer(query).data
    assert body["data"]["status"] == "Pending" and body["data"]["events"] == ["ApplicationExitEvent"]
    assert [name for name, *_ in sent_tasks] == ["webhooks.deliver", "queries.run"]

    assert body["data"]["download_link"] == f"/_rest/v4/dwh/exports/{query.guid}?redirect=true"


def test_events_link_to_the_export_absolutely_when_the_public_url_is_set(
    acme, settings, sent_tasks, django_capture_on_commit_callbacks
):
    settings.PUBLIC_URL = "https://insights.example.com/base"
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client(acme).post("/_rest/v4/dwh/Q", QUERY, format="json")
    (event,) = WebhookEvent.objects.all()
    link = json.loads(event.body)["data"]["download_link"]
    assert (
        link
        == f"https://insights.example.com/base/_rest/v4/dwh/exports/{response.json()['id']}?redirect=true"
    )


def test_no_webhook_no_event(customer_factory, sent_tasks):
    query = _pending(customer_factory("globex"))
    query_event_emit(query_id=query.pk, type="query.submitted")
    assert not WebhookEvent.objects.exists()


def test_a_run_records_started_once_then_its_ending(acme, sent_tasks):
    query = _pending(acme)
    query_event_emit(query_id=query.pk, type="query.submitted")
    first = lifecycle.query_claim(query_id=query.pk)
    assert first is not None
    assert lifecycle.query_release(claim=first, message="try again")  # a retryable failure: queued again
    second = lifecycle.query_claim(query_id=query.pk)
    assert second is not None and second.attempt == 2
    assert lifecycle.query_fail(claim=second, message="The query returned empty values")
    assert _events(query) == [("query.submitted", 1), ("query.started", 2), ("query.failed", 3)]
    failed = json.loads(WebhookEvent.objects.get(type="query.failed").body)["data"]
    assert failed["status"] == "Failed" and failed["finished_at"]


def test_a_completion_records_query_completed(acme, sent_tasks):
    query = _pending(acme)
    claim = lifecycle.query_claim(query_id=query.pk)
    assert claim is not None
    lifecycle.query_complete(
        claim=claim, files=[], manifest_path="m.json", rows=0, bytes_written=0, destination_id=None
    )
    assert _events(query) == [("query.started", 1), ("query.completed", 2)]


def test_cancels_record_query_canceled_when_the_query_is_canceled(acme, sent_tasks):
    queued = _pending(acme)
    lifecycle.query_cancel(query=queued)  # no worker holds it: Canceled at once
    assert _events(queued) == [("query.canceled", 1)]
    running = _pending(acme)
    claim = lifecycle.query_claim(query_id=running.pk)
    assert claim is not None
    lifecycle.query_cancel(query=running)  # flagged: still Pending, nothing to say yet
    assert _events(running) == [("query.started", 1)]
    assert lifecycle.query_stopped(claim=claim, timed_out=False)  # its worker stops it
    assert _events(running) == [("query.started", 1), ("query.canceled", 2)]


def test_a_change_that_did_not_happen_records_nothing(acme, sent_tasks, completed_query_factory):
    done = completed_query_factory(acme)
    query_event_emit(query_id=done.pk, type="query.failed")  # it is Completed
    query_event_emit(query_id=done.pk, type="query.started")  # never started
    query_event_emit(query_id=done.pk, type="query.expired")
    assert _events(done) == []


def test_retention_and_deletion_record_expired_and_deleted(acme, sent_tasks, completed_query_factory):
    now = timezone.now()
    old = completed_query_factory(acme, finished_at=now - timedelta(days=8))
    kept = completed_query_factory(acme, finished_at=now - timedelta(days=1))
    maintenance.results_expire(now=now)
    assert _events(old) == [("query.expired", 1)]
    assert json.loads(WebhookEvent.objects.get(subject=old.guid).body)["data"]["status"] == "Expired"
    export_delete(query=kept)
    export_delete(query=QueryRequest.objects.get(pk=kept.pk))  # a repeated delete records nothing more
    assert _events(kept) == [("query.deleted", 1)]


def test_beat_announces_expiring_results_once(acme, sent_tasks, completed_query_factory):
    now = timezone.now()
    soon = completed_query_factory(acme, finished_at=now - timedelta(days=6, hours=1))  # deleted within 23 h
    later = completed_query_factory(acme, finished_at=now - timedelta(days=5))
    assert webhook_events_catch_up(now=now) == 1
    assert webhook_events_catch_up(now=now) == 0
    assert _events(soon) == [("query.expiring", 1)]
    assert _events(later) == []
    expiring = json.loads(WebhookEvent.objects.get(subject=soon.guid).body)["data"]
    assert expiring["expires_at"] is not None


def test_beat_catches_up_endings_the_reaper_made(acme, sent_tasks, settings):
    settings.QUERY_MAX_ATTEMPTS = 1
    query = _pending(acme)
    claim = lifecycle.query_claim(query_id=query.pk)
    assert claim is not None
    later = timezone.now() + timedelta(seconds=settings.QUERY_LEASE_SECONDS + 1)
    assert maintenance.leases_reap(now=later).failed == 1  # its worker died: given up, announced by no hook
    assert _events(query) == [("query.started", 1)]
    assert webhook_events_catch_up(now=later) == 1
    assert _events(query) == [("query.started", 1), ("query.failed", 2)]
    assert webhook_events_catch_up(now=later) == 0


def test_beat_does_not_announce_endings_from_before_the_webhook(customer_factory, sent_tasks):
    customer = customer_factory("initech")
    old = _pending(customer)
    QueryRequest.objects.filter(pk=old.pk).update(status=QueryStatus.FAILED, finished_at=timezone.now())
    webhook_put(customer=customer, url="http://127.0.0.1:9/hooks")
    assert webhook_events_catch_up() == 0


def test_a_link_under_the_public_url_holds_the_mount_prefix_once(acme, settings):
    """Inside a request of a service mounted at /base/ (SCRIPT_NAME), reverse() gives /base/_rest/...: the public
    address already says /base."""
    from django.urls import get_script_prefix, set_script_prefix

    settings.PUBLIC_URL = "https://insights.example.com/base"
    query = _pending(acme)
    before = get_script_prefix()
    set_script_prefix("/base/")
    try:
        link = ExportSerializer(query).data["download_link"]
    finally:
        set_script_prefix(before)
    assert link == f"https://insights.example.com/base/_rest/v4/dwh/exports/{query.guid}?redirect=true"
