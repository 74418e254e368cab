"""Result reuse (`max_age`) and the hybrid wait in process: real DuckDB warehouse, real local storage, the runner
in this process. Over HTTP on both shapes (two customers, byte-identical downloads and HEAD, concurrency):
tests/test_quote_e2e.py."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from queries import maintenance, runner
from queries.models import QueryRequest, QueryStatus
from queries.reuse import followers_settle
from queries.webhook_events import webhook_events_catch_up
from tests.queries.clients import api_client
from webhooks.models import WebhookEvent
from webhooks.services import webhook_put

pytestmark = pytest.mark.django_db(transaction=True)

CALLS = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["SessionId", "Ani", "Duration"]}},
    "filters": {"CallEvent": {"Duration": {"$gte": 5}}},
}
# The same query as CALLS: filters inside `data`, an equivalent upper bound, keys in another order.
SAME_CALLS = {
    "data": {
        "CallEvent": {"filters": {"Duration": {"$gte": 5.0}}, "fields": ["SessionId", "Ani", "Duration"]}
    },
    "timestamp": {"$lt": "2019-11-26T01:00:00+01:00", "$gte": "2019-11-25T00:00:00Z"},
}
NO_ROWS = {**CALLS, "filters": {"CallEvent": {"Ani": {"$eq": "no such number"}}}}


def _post(client, body, *, max_age=None, wait=None):
    params = "&".join(f"{k}={v}" for k, v in (("max_age", max_age), ("wait", wait)) if v is not None)
    return client.post(
        "/_rest/v4/dwh/Q" + (f"?{params}" if params else ""),
        data=json.dumps(body),
        content_type="application/json",
    )


@pytest.fixture()
def acme(customer_factory):
    return customer_factory("acme", max_concurrent_queries=1)


@pytest.fixture()
def ran(acme, demo_warehouse, local_exports, sent_tasks):
    """acme's CALLS, run to Completed."""
    guid = _post(api_client(acme), CALLS).json()["id"]
    query = QueryRequest.objects.get(guid=guid)
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert query.status == QueryStatus.COMPLETED, query.messages
    return query


def test_a_recent_result_is_reused_at_once_without_a_run_or_a_slot(acme, ran, local_exports, sent_tasks):
    client = api_client(acme)
    assert _post(client, CALLS).status_code == 201  # the one slot is taken now: a new run waits for it
    sent_before = len(sent_tasks)
    reused = _post(client, {**SAME_CALLS, "max_age": 3600})
    assert reused.status_code == 201, reused.content
    guid = reused.json()["id"]
    query = QueryRequest.objects.get(guid=guid)
    assert (query.status, query.reused_from_id) == (QueryStatus.COMPLETED, ran.pk)
    assert len(sent_tasks) == sent_before  # nothing enqueued
    assert query.files == ran.files and query.row_count == ran.row_count
    assert (query.started_at, query.finished_at) == (ran.started_at, ran.finished_at)
    status = client.get(f"/_rest/v4/dwh/Q/{guid}/status").json()
    assert status["status"] == "Completed" and status["progress"]["rows"] == ran.row_count
    location = client.get(f"/_rest/v4/dwh/Q/{guid}").json()
    assert [f["path"] for f in location["files"]] == [f["path"] for f in ran.files]
    manifest = json.loads((local_exports / query.manifest_path).read_text())
    original = json.loads((local_exports / ran.manifest_path).read_text())
    assert query.manifest_path.endswith(f"/{guid}_manifest.json")
    assert list(manifest)[:3] == ["version", "guid", "reused_from"]
    assert (manifest["guid"], manifest["reused_from"]) == (guid, ran.guid)
    assert manifest["parts"] == original["parts"] and manifest["query"] == {**SAME_CALLS, "max_age": 3600}


def test_reused_downloads_and_head_are_byte_identical(acme, ran):
    client = api_client(acme)
    guid = _post(client, CALLS, max_age=60).json()["id"]
    located = client.get(f"/_rest/v4/dwh/Q/{guid}").json()
    assert located["files"] == client.get(f"/_rest/v4/dwh/Q/{ran.guid}").json()["files"]
    for path in ("/download", "/download/0"):
        theirs: Any = client.get(f"/_rest/v4/dwh/Q/{ran.guid}{path}")
        mine: Any = client.get(f"/_rest/v4/dwh/Q/{guid}{path}")
        assert mine.status_code == theirs.status_code == 200
        assert b"".join(mine.streaming_content) == b"".join(theirs.streaming_content)
    head_theirs, head_mine = (
        client.head(f"/_rest/v4/dwh/Q/{ran.guid}"),
        client.head(f"/_rest/v4/dwh/Q/{guid}"),
    )
    assert head_mine.status_code == head_theirs.status_code == 200
    my_headers, their_headers = dict(head_mine.items()), dict(head_theirs.items())
    # The one header that is the request's own:
    assert my_headers.pop("X-Request-ID") != their_headers.pop("X-Request-ID")
    assert my_headers == their_headers and "ETag" in my_headers and "Last-Modified" in my_headers


def test_what_is_not_reused(customer_factory, acme, ran, sent_tasks):
    client = api_client(customer_factory("acme2", max_concurrent_queries=9))  # another customer...
    theirs = QueryRequest.objects.get(guid=_post(client, CALLS, max_age=3600).json()["id"])
    assert theirs.status == QueryStatus.PENDING and theirs.reused_from is None
    mine = api_client(acme)
    QueryRequest.objects.filter(pk=ran.pk).update(finished_at=timezone.now() - timedelta(seconds=120))
    assert _post(mine, CALLS, max_age=60).status_code == 201  # too old: a run, taking the slot
    assert _post(mine, {**CALLS, "output": {"format": "ndjson"}}, max_age=3600).status_code == 429
    assert (
        _post(mine, {**CALLS, "output": {"format": "csv"}}, max_age=3600).status_code == 201
    )  # the defaults


def test_a_result_whose_files_are_gone_is_not_reused(acme, ran, local_exports):
    (local_exports / ran.files[0]["path"]).unlink()
    query = QueryRequest.objects.get(guid=_post(api_client(acme), CALLS, max_age=3600).json()["id"])
    assert query.reused_from is None and query.status == QueryStatus.PENDING


def test_a_pending_run_is_joined_and_followed_to_its_end(acme, demo_warehouse, local_exports, sent_tasks):
    client = api_client(acme)
    original = QueryRequest.objects.get(guid=_post(client, CALLS).json()["id"])
    sent = len(sent_tasks)
    follower_guid = _post(client, SAME_CALLS, max_age=0).json()["id"]  # no slot needed: the one is taken
    follower = QueryRequest.objects.get(guid=follower_guid)
    assert (follower.status, follower.reused_from_id, len(sent_tasks)) == (
        QueryStatus.PENDING,
        original.pk,
        sent,
    )
    assert client.get(f"/_rest/v4/dwh/Q/{follower_guid}/status").json()["status"] == "Pending"
    runner.query_run(query_id=original.pk)
    status = client.get(f"/_rest/v4/dwh/Q/{follower_guid}/status").json()  # settled when read
    assert status["status"] == "Completed"
    follower.refresh_from_db()
    original.refresh_from_db()
    assert follower.files == original.files and follower.finished_at == original.finished_at
    assert json.loads((local_exports / follower.manifest_path).read_text())["reused_from"] == original.guid


def test_a_follower_ends_as_its_run_ends_also_unread(acme, demo_warehouse, local_exports, sent_tasks):
    client = api_client(acme)
    original = QueryRequest.objects.get(guid=_post(client, NO_ROWS).json()["id"])
    follower = QueryRequest.objects.get(guid=_post(client, NO_ROWS, max_age=600).json()["id"])
    runner.query_run(query_id=original.pk)  # no rows: Failed, and its followers with it
    follower.refresh_from_db()
    assert (follower.status, follower.messages) == (QueryStatus.FAILED, ["The query returned empty values"])
    assert followers_settle() == 0  # nothing left for beat


def test_beat_settles_a_follower_of_an_end_no_hook_saw(acme, sent_tasks):
    client = api_client(acme)
    original = QueryRequest.objects.get(guid=_post(client, NO_ROWS).json()["id"])
    follower = QueryRequest.objects.get(guid=_post(client, NO_ROWS, max_age=600).json()["id"])
    # The reaper gives a dead run up with one UPDATE of its own (queries.lifecycle.leases_expired_spent).
    QueryRequest.objects.filter(pk=original.pk).update(
        status=QueryStatus.FAILED, messages=["given up"], finished_at=timezone.now()
    )
    assert followers_settle() == 1  # the beat task's work
    assert followers_settle() == 0
    follower.refresh_from_db()
    assert (follower.status, follower.messages) == (QueryStatus.FAILED, ["given up"])


def test_canceling_a_follower_leaves_its_run_alone(acme, demo_warehouse, sent_tasks):
    client = api_client(acme)
    original = _post(client, CALLS).json()["id"]
    follower = _post(client, CALLS, max_age=600).json()["id"]
    assert client.delete(f"/_rest/v4/dwh/Q/{follower}").json() == {"status": "Canceled", "guid": follower}
    assert client.get(f"/_rest/v4/dwh/Q/{original}/status").json()["status"] == "Pending"


def test_deleting_the_original_expires_its_reuses_and_their_manifests(acme, ran, local_exports):
    client = api_client(acme)
    guid = _post(client, CALLS, max_age=600).json()["id"]
    manifest = local_exports / QueryRequest.objects.get(guid=guid).manifest_path
    assert manifest.exists()
    assert client.delete(f"/_rest/v4/dwh/exports/{ran.guid}").json()["status"] == "Deleted"
    assert not manifest.exists() and not (local_exports / ran.files[0]["path"]).exists()
    status = client.get(f"/_rest/v4/dwh/Q/{guid}/status").json()
    assert status["status"] == "Expired" and ran.guid in status["messages"][0]
    assert client.get(f"/_rest/v4/dwh/Q/{guid}").status_code == 410


def test_deleting_a_reuse_removes_its_manifest_only(acme, ran, local_exports):
    client = api_client(acme)
    guid = _post(client, CALLS, max_age=600).json()["id"]
    manifest = local_exports / QueryRequest.objects.get(guid=guid).manifest_path
    assert client.delete(f"/_rest/v4/dwh/exports/{guid}").json()["status"] == "Deleted"
    assert not manifest.exists()
    assert (local_exports / ran.manifest_path).exists() and (local_exports / ran.files[0]["path"]).exists()
    assert client.get(f"/_rest/v4/dwh/Q/{ran.guid}/download").status_code == 200


def test_retention_expires_a_reuse_with_its_original(acme, ran, local_exports):
    client = api_client(acme)
    guid = _post(client, CALLS, max_age=600).json()["id"]
    later = ran.finished_at + timedelta(days=acme.retention_days, seconds=1)
    assert maintenance.results_expire(now=later) == 2
    statuses = dict(QueryRequest.objects.filter(guid__in=[guid, ran.guid]).values_list("guid", "status"))
    assert statuses == {guid: QueryStatus.EXPIRED, ran.guid: QueryStatus.EXPIRED}
    assert not any(local_exports.rglob("*.json")) and not any(local_exports.rglob("*.gz"))


@pytest.mark.parametrize("value", [-1, "60", True, 1.5, 10**10])
def test_max_age_in_the_body_must_be_whole_seconds(acme, sent_tasks, value):
    response = _post(api_client(acme), {**CALLS, "max_age": value})
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "message": "max_age must be a whole number of seconds from 0 to 31622400.",
    }


@pytest.mark.parametrize("value", ["-1", "abc", "1e3", ""])
def test_max_age_in_the_url_must_be_whole_seconds(acme, sent_tasks, value):
    response = api_client(acme).post(
        f"/_rest/v4/dwh/Q?max_age={value}", data=json.dumps(CALLS), content_type="application/json"
    )
    assert response.status_code == 400 and response.json()["code"] == 400


# --- webhooks: a reuse is announced as any query is, each event once ---------------------------------------


@pytest.fixture()
def hooked(acme, settings):
    """acme's webhook, taking every event (a loopback URL: recorded events are checked, not their delivery,
    which tests/test_webhooks_e2e.py checks with a real receiver)."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    webhook_put(customer=acme, url="http://127.0.0.1:9/hooks")
    return acme


def _announced(guid: str) -> list[tuple[str, int, str]]:
    """The query's events: type, sequence, and the status its export object had."""
    events = WebhookEvent.objects.filter(subject=guid).order_by("sequence")
    return [(e.type, e.sequence, json.loads(e.body)["data"]["status"]) for e in events]


def _reads(client, guid: str) -> None:
    """Every way a customer reads a query: each settles a follower whose run ended."""
    client.get(f"/_rest/v4/dwh/Q/{guid}/status")
    client.get(f"/_rest/v4/dwh/exports/{guid}")
    client.get("/_rest/v4/dwh/exports")


def test_a_reused_result_announces_query_completed_once(hooked, ran, sent_tasks):
    client = api_client(hooked)
    guid = _post(client, SAME_CALLS, max_age=600).json()["id"]
    assert _announced(guid) == [("query.completed", 1, "Completed")]  # never Pending, never run: no more
    body = json.loads(WebhookEvent.objects.get(subject=guid).body)
    assert body["data"] == client.get(f"/_rest/v4/dwh/exports/{guid}").json() | {
        "download_link": body["data"]["download_link"]
    }
    assert body["data"]["id"] == guid and body["data"]["rows"] == ran.row_count
    assert ("webhooks.deliver", (WebhookEvent.objects.get(subject=guid).pk,), None) in sent_tasks
    _reads(client, guid)
    webhook_events_catch_up()  # beat finds nothing missing
    assert _announced(guid) == [("query.completed", 1, "Completed")]


def test_a_joined_run_announces_its_follower_when_it_ends_unread(
    hooked, demo_warehouse, local_exports, sent_tasks
):
    client = api_client(hooked)
    original = _post(client, CALLS).json()["id"]
    follower = _post(client, SAME_CALLS, max_age=0).json()["id"]
    assert _announced(follower) == [("query.submitted", 1, "Pending")]
    _reads(client, follower)  # still Pending: nothing more
    assert _announced(follower) == [("query.submitted", 1, "Pending")]
    runner.query_run(query_id=QueryRequest.objects.get(guid=original).pk)
    # Nobody read it: the run's end settled it and recorded its event.
    assert _announced(follower) == [("query.submitted", 1, "Pending"), ("query.completed", 2, "Completed")]
    assert [t for t, *_ in _announced(original)] == ["query.submitted", "query.started", "query.completed"]
    _reads(client, follower)
    assert followers_settle() == 0
    webhook_events_catch_up()
    assert _announced(follower) == [("query.submitted", 1, "Pending"), ("query.completed", 2, "Completed")]
    completed = json.loads(WebhookEvent.objects.get(subject=follower, type="query.completed").body)["data"]
    assert completed["rows"] == QueryRequest.objects.get(guid=original).row_count


def test_a_follower_settled_by_a_read_is_announced_once(hooked, sent_tasks):
    client = api_client(hooked)
    original = QueryRequest.objects.get(guid=_post(client, NO_ROWS).json()["id"])
    follower = _post(client, NO_ROWS, max_age=600).json()["id"]
    QueryRequest.objects.filter(pk=original.pk).update(  # an end no hook saw (the reaper's)
        status=QueryStatus.CANCELED, messages=["stopped"], finished_at=timezone.now()
    )
    assert client.get(f"/_rest/v4/dwh/Q/{follower}/status").json()["status"] == "Canceled"
    _reads(client, follower)
    assert followers_settle() == 0
    webhook_events_catch_up()
    assert _announced(follower) == [("query.submitted", 1, "Pending"), ("query.canceled", 2, "Canceled")]


def test_a_follower_of_a_canceled_run_is_announced_canceled(hooked, sent_tasks):
    client = api_client(hooked)
    original = _post(client, CALLS).json()["id"]
    follower = _post(client, CALLS, max_age=600).json()["id"]
    assert client.delete(f"/_rest/v4/dwh/Q/{original}").status_code == 202  # queued: Canceled at once
    assert QueryRequest.objects.get(guid=follower).status == QueryStatus.CANCELED  # unread
    assert _announced(follower) == [("query.submitted", 1, "Pending"), ("query.canceled", 2, "Canceled")]


def test_a_reuse_expired_by_its_originals_delete_is_announced(hooked, ran, sent_tasks):
    client = api_client(hooked)
    guid = _post(client, CALLS, max_age=600).json()["id"]
    assert client.delete(f"/_rest/v4/dwh/exports/{ran.guid}").status_code == 200
    _reads(client, guid)
    assert _announced(guid) == [("query.completed", 1, "Completed"), ("query.expired", 2, "Expired")]


def test_reuse_events_never_reach_another_customer(hooked, ran, customer_factory, sent_tasks):
    other = customer_factory("acme2", max_concurrent_queries=9)
    guid = _post(api_client(hooked), CALLS, max_age=600).json()["id"]
    theirs = _post(api_client(other), CALLS, max_age=600).json()["id"]  # no webhook: nothing recorded
    assert set(WebhookEvent.objects.values_list("customer_id", flat=True)) == {hooked.pk}
    assert _announced(theirs) == [] and _announced(guid)


# --- ?wait=N -----------------------------------------------------------------------------------------------


def test_wait_answers_with_the_status_once_the_query_ended(acme, ran):
    reused = _post(api_client(acme), CALLS, max_age=600, wait=5)
    assert reused.status_code == 201
    body = reused.json()
    assert list(body) == ["id", "status"]
    assert body["status"]["status"] == "Completed" and body["status"]["guid"] == body["id"]


def test_wait_answers_after_its_seconds_while_the_query_runs_on(acme, demo_warehouse, sent_tasks):
    response = _post(api_client(acme), CALLS, wait="0.2")
    assert response.status_code == 201
    assert response.json()["status"]["status"] == "Pending"
    assert QueryRequest.objects.get(guid=response.json()["id"]).status == QueryStatus.PENDING


@pytest.mark.parametrize("value", ["-1", "31", "abc", "nan", ""])
def test_wait_must_be_0_to_30_seconds(acme, sent_tasks, value):
    response = _post(api_client(acme), CALLS, wait=value)
    assert response.json() == {"code": 400, "message": "wait must be a number of seconds from 0 to 30."}
    assert not QueryRequest.objects.exists()
