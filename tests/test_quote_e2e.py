"""Know before you run, never run twice (issue 16) end to end over HTTP, on both shapes: gunicorn and real Celery
workers on the embedded default (SQLite, DuckDB, filesystem broker) and on the production shape (PostgreSQL
metadata and warehouse, Redis broker and cache). The dry run's quote, Idempotency-Key under concurrency, result
reuse (`max_age`) and the hybrid wait (`?wait=N`)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from queries.ingest import DEMO_CUSTOMER_KEYS
from tests.service import SHAPES, Service, service_of_shape, warehouse_rows

COLLECTION = "/_rest/v4/dwh/Q"
CALLS = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["SessionId", "Ani", "Duration"]}},
    "filters": {"CallEvent": {"Duration": {"$gte": 5}}},
}
# The same query, written otherwise: the filter inside `data`, an equivalent bound, keys in another order.
SAME_CALLS = {
    "data": {
        "CallEvent": {"filters": {"Duration": {"$gte": 5.0}}, "fields": ["SessionId", "Ani", "Duration"]}
    },
    "timestamp": {"$lt": "2019-11-26T01:00:00+01:00", "$gte": "2019-11-25T00:00:00Z"},
}
NOT_FOUND = [
    {"message": "could not get QueryRequest object: QueryRequest matching query does not exist.", "code": 404}
]


@pytest.fixture(scope="module", params=SHAPES)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with service_of_shape(
        request,
        tmp_path_factory,
        "quote",
        extra_env={"EXPORT_PART_BYTES": "1024"},  # several parts: downloads compared part by part
    ) as running:
        yield running


@pytest.fixture(scope="module")
def acme(service: Service) -> str:
    return service.customer_create(DEMO_CUSTOMER_KEYS[0], max_concurrent=4)


@pytest.fixture(scope="module")
def globex(service: Service) -> str:
    return service.customer_create(DEMO_CUSTOMER_KEYS[1], max_concurrent=4)


@pytest.fixture()
def worker(service: Service) -> Iterator[None]:
    service.worker_start()
    yield
    service.workers_stop()


def _calls_rows(service: Service, customer: str) -> int:
    ((count,),) = warehouse_rows(
        service,
        'SELECT COUNT(*) FROM events WHERE "CustomerId" = ? AND "EventName" = ? AND "TimeStamp" >= ? '
        'AND "TimeStamp" < ? AND "Duration" >= ?',
        [customer, "CallEvent", "2019-11-25 00:00:00", "2019-11-26 00:00:00", 5],
    )
    return int(count)


def _export_ids(service: Service, key: str) -> list[str]:
    listed = service.request("GET", "/_rest/v4/dwh/exports?limit=500", key=key).json()
    return [export["id"] for export in listed["exports"]]


def test_a_dry_run_quotes_the_exact_rows_and_creates_nothing(
    service: Service, acme: str, worker: None
) -> None:
    before = _export_ids(service, acme)
    quote = service.request("POST", f"{COLLECTION}?dry_run=true", key=acme, body=CALLS)
    assert quote.status == 200, quote.body
    answer = quote.json()
    assert answer["valid"] is True and answer["columns"] == ["SessionId", "Ani", "Duration"]
    assert answer["estimate"]["method"] == "exact-count"
    assert answer["estimate"]["rows"] == _calls_rows(service, DEMO_CUSTOMER_KEYS[0]) > 0
    assert answer["slots"] == {"limit": 4, "in_use": 0} and answer["queue"] == {
        "position": 0,
        "eta_seconds": 0.0,
    }
    assert _export_ids(service, acme) == before  # no guid, no query
    # The export then writes exactly those rows.
    guid = service.request("POST", f"{COLLECTION}?wait=20", key=acme, body=CALLS).json()["id"]
    assert service.wait_terminal(guid, acme)["status"] == "Completed"
    files = service.request("GET", f"{COLLECTION}/{guid}", key=acme).json()["files"]
    assert sum(f["rows"] for f in files) == answer["estimate"]["rows"]


def test_a_dry_run_refuses_what_a_post_refuses(service: Service, acme: str) -> None:
    body = {**CALLS, "data": {"CallEvent": {"fields": ["Flow Id"]}}}
    quoted = service.request("POST", f"{COLLECTION}?dry_run=true", key=acme, body=body)
    posted = service.request("POST", COLLECTION, key=acme, body=body)
    assert quoted.status == posted.status == 400
    assert quoted.body == posted.body == b'{"code": 400, "message": "Flow Id is not a valid field."}'
    bad = service.request("POST", f"{COLLECTION}?dry_run=perhaps", key=acme, body=CALLS)
    assert bad.json() == {"code": 400, "message": "dry_run must be true or false."}


def test_twenty_concurrent_posts_with_one_key_make_one_query_and_take_one_slot(service: Service) -> None:
    key = service.customer_create(DEMO_CUSTOMER_KEYS[2], max_concurrent=2)  # no worker: queries stay Pending
    headers = {"Idempotency-Key": "nightly-report-2019-11-25"}
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(
                lambda _: service.request("POST", COLLECTION, key=key, body=CALLS, headers=headers), range(20)
            )
        )
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] * 19 + [201], statuses
    assert len({r.json()["id"] for r in responses}) == 1
    assert _export_ids(service, key) == [responses[0].json()["id"]]
    quote = service.request("POST", f"{COLLECTION}?dry_run=true", key=key, body=CALLS).json()
    assert quote["slots"] == {"limit": 2, "in_use": 1}
    assert service.request("POST", COLLECTION, key=key, body=CALLS).status == 201  # the second slot
    assert service.request("POST", COLLECTION, key=key, body=CALLS).status == 429
    # With every slot taken, the repeat is still the same query, and another body under the key is a 422.
    assert service.request("POST", COLLECTION, key=key, body=SAME_CALLS, headers=headers).status == 200
    other = service.request("POST", COLLECTION, key=key, body={**CALLS, "filename": "x"}, headers=headers)
    assert other.status == 422 and other.json()["code"] == 422
    full = service.request("POST", f"{COLLECTION}?dry_run=true", key=key, body=CALLS).json()
    assert full["queue"]["position"] == 1 and full["queue"]["eta_seconds"] >= 0
    for guid in _export_ids(service, key):
        service.request("DELETE", f"{COLLECTION}/{guid}", key=key)


def test_a_reused_result_is_the_same_bytes_and_never_another_customers(
    service: Service, acme: str, globex: str, worker: None
) -> None:
    original = service.request("POST", f"{COLLECTION}?wait=20", key=acme, body=CALLS).json()
    assert original["status"]["status"] == "Completed", original
    reused = service.request("POST", f"{COLLECTION}?max_age=600", key=acme, body=SAME_CALLS)
    assert reused.status == 201
    guid, first = reused.json()["id"], original["id"]
    assert guid != first
    status = service.request("GET", f"{COLLECTION}/{guid}/status", key=acme).json()
    assert status["status"] == "Completed"  # at once: no run
    files = service.request("GET", f"{COLLECTION}/{first}", key=acme).json()["files"]
    assert service.request("GET", f"{COLLECTION}/{guid}", key=acme).json()["files"] == files
    assert len(files) > 1
    for part in range(len(files)):
        mine = service.request("GET", f"{COLLECTION}/{guid}/download/{part}", key=acme)
        theirs = service.request("GET", f"{COLLECTION}/{first}/download/{part}", key=acme)
        assert mine.status == theirs.status == 200 and mine.body == theirs.body
    head_mine = service.request("HEAD", f"{COLLECTION}/{guid}", key=acme)
    head_theirs = service.request("HEAD", f"{COLLECTION}/{first}", key=acme)
    for name in (
        "Content-Type",
        "Content-Length",
        "ETag",
        "Last-Modified",
        "Content-Disposition",
        "X-Row-Count",
    ):
        assert head_mine.headers[name] == head_theirs.headers[name], name
    # globex asks for the very same body: its own run, over its own rows, in its own files.
    theirs = service.request("POST", f"{COLLECTION}?max_age=600&wait=20", key=globex, body=CALLS).json()
    assert theirs["status"]["status"] == "Completed" and theirs["id"] not in (first, guid)
    their_files = service.request("GET", f"{COLLECTION}/{theirs['id']}", key=globex).json()["files"]
    assert all(f["path"].startswith(f"reports/{DEMO_CUSTOMER_KEYS[1]}/") for f in their_files)
    rows = sum(f["rows"] for f in their_files)
    assert rows == _calls_rows(service, DEMO_CUSTOMER_KEYS[1])
    body = gzip.decompress(service.request("GET", f"{COLLECTION}/{theirs['id']}/download", key=globex).body)
    assert body.startswith(b"SessionId,Ani,Duration\n")
    # Tenancy: neither customer sees the other's guids, reused or not.
    for other_guid in (guid, first):
        response = service.request("GET", f"{COLLECTION}/{other_guid}/status", key=globex)
        assert response.status == 404 and response.json() == NOT_FOUND


def test_a_pending_run_is_joined_and_both_end_together(service: Service, globex: str) -> None:
    first = service.request("POST", COLLECTION, key=globex, body=SAME_CALLS).json()["id"]  # no worker yet
    joined = service.request("POST", f"{COLLECTION}?max_age=0", key=globex, body=CALLS).json()["id"]
    assert service.request("GET", f"{COLLECTION}/{joined}/status", key=globex).json()["status"] == "Pending"
    service.worker_start()
    try:
        assert service.wait_terminal(first, globex)["status"] == "Completed"
        assert service.wait_terminal(joined, globex)["status"] == "Completed"
    finally:
        service.workers_stop()
    files = service.request("GET", f"{COLLECTION}/{first}", key=globex).json()["files"]
    assert service.request("GET", f"{COLLECTION}/{joined}", key=globex).json()["files"] == files


def test_wait_answers_with_the_ended_query_or_after_its_seconds(service: Service, acme: str) -> None:
    pending = service.request("POST", f"{COLLECTION}?wait=1", key=acme, body=CALLS)  # no worker: it waits 1 s
    assert pending.status == 201
    assert (
        pending.json()["status"]["status"] == "Pending"
        and pending.json()["status"]["guid"] == pending.json()["id"]
    )
    service.worker_start()
    try:
        done = service.request("POST", f"{COLLECTION}?wait=20", key=acme, body={**CALLS, "filename": "w"})
        assert done.status == 201
        status = done.json()["status"]
        assert status["status"] == "Completed" and status["progress"]["rows"] > 0, status
        assert service.wait_terminal(pending.json()["id"], acme)["status"] == "Completed"  # it went on
        bad = service.request("POST", f"{COLLECTION}?wait=31", key=acme, body=CALLS)
        assert bad.json() == {"code": 400, "message": "wait must be a number of seconds from 0 to 30."}
    finally:
        service.workers_stop()
