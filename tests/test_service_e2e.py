"""The IntelePeer flow end to end over HTTP, on both shapes: gunicorn and real Celery workers, on the embedded
default (SQLite, DuckDB, filesystem broker) and on the production shape (PostgreSQL metadata and warehouse,
Redis broker and cache)."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import re
import urllib.parse
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from queries.ingest import DEMO_CUSTOMER_KEYS
from tests.seed_requests import REQUEST_1, REQUEST_2
from tests.service import SHAPES, Service, service_of_shape, warehouse_rows

NO_ROWS = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["Ani"]}},
    "filters": {"CallEvent": {"Ani": {"$eq": "no such number"}}},
}
LOCATION = re.compile(
    r"^Process finished\. Download: \['reports/(?P<customer>[a-z0-9-]+)/(?P<guid>[0-9a-f]{32})_QueryExport_"
    r"\d{13}__000000000000\.csv\.gz'\]$"
)


@pytest.fixture(scope="module", params=SHAPES)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with service_of_shape(
        request,
        tmp_path_factory,
        "e2e",
        # X-Forwarded-For gives each throttling test a client address of its own.
        extra_env={
            "EXPORT_PART_BYTES": "200000",
            "TRUST_X_FORWARDED_FOR": "1",
            "AUTH_FAILURES_PER_MINUTE": "8",
        },
    ) as running:
        yield running


@pytest.fixture(scope="module")
def acme(service: Service) -> str:
    return service.customer_create(DEMO_CUSTOMER_KEYS[0])


@pytest.fixture(scope="module")
def globex(service: Service) -> str:
    return service.customer_create(DEMO_CUSTOMER_KEYS[1])


@pytest.fixture()
def worker(service: Service) -> Iterator[None]:
    service.worker_start()
    yield
    service.workers_stop()


def _submit(service: Service, key: str, body: dict) -> str:
    response = service.request("POST", "/_rest/v4/dwh/Q", key=key, body=body)
    assert response.status == 201, response.body
    guid = response.json()["id"]
    assert re.fullmatch(r"[0-9a-f]{32}", guid)
    return str(guid)


def test_request_1_end_to_end(service: Service, acme: str, worker: None) -> None:
    guid = _submit(service, acme, REQUEST_1)
    status = service.wait_terminal(guid, acme)
    assert status["status"] == "Completed", status
    location = service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=acme).json()
    assert LOCATION.match(location["status"]), location
    assert location["guid"] == guid
    assert [set(f) for f in location["files"]] == [{"path", "size", "rows", "sha256"}]
    lines = service.download_rows(guid, acme)
    expected = warehouse_rows(
        service,
        'SELECT "FlowId" FROM events WHERE "EventName" = ? AND "CustomerId" = ? AND "TimeStamp" >= ? '
        'AND "TimeStamp" <= ? ORDER BY "TimeStamp", _row_id',
        ["ApplicationExitEvent", DEMO_CUSTOMER_KEYS[0], "2019-11-25 00:00:00", "2019-11-26 00:00:00"],
    )
    assert lines[0] == "FlowId"
    assert lines[1:] == [row[0] for row in expected]
    assert location["files"][0]["rows"] == len(expected)


def test_request_2_end_to_end(service: Service, acme: str, worker: None) -> None:
    guid = _submit(service, acme, REQUEST_2)
    status = service.wait_terminal(guid, acme)
    assert status["status"] == "Completed", status
    files = service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=acme).json()["files"]
    lines = []
    for part in range(len(files)):
        part_lines = service.download_rows(guid, acme, part)
        assert part_lines[0] == ",".join(REQUEST_2["data"]["ApplicationExitEvent"]["fields"])
        lines += part_lines[1:]
    expected = warehouse_rows(
        service,
        'SELECT "SessionId", "FlowId", "CustomerId" FROM events WHERE "EventName" = ? AND "CustomerId" = ? '
        'AND "TimeStamp" BETWEEN ? AND ? AND "FlowId" = ? ORDER BY "TimeStamp", _row_id',
        [
            "ApplicationExitEvent",
            DEMO_CUSTOMER_KEYS[0],
            "2019-11-25 00:00:00",
            "2019-11-26 00:00:00",
            "5dcf48b453e0ab04386da7d1",
        ],
    )
    assert expected, "the demo data must hold the seed's FlowId"
    assert len(lines) == len(expected) == sum(f["rows"] for f in files)
    header = REQUEST_2["data"]["ApplicationExitEvent"]["fields"]
    session_at, flow_at = header.index("SessionId"), header.index("FlowId")
    assert [(line.split(",")[session_at], line.split(",")[flow_at]) for line in lines] == [
        (row[0], row[1]) for row in expected
    ]


def test_head_carries_the_file_headers_and_no_body(service: Service, acme: str, worker: None) -> None:
    guid = _submit(service, acme, REQUEST_1)
    service.wait_terminal(guid, acme)
    head = service.request("HEAD", f"/_rest/v4/dwh/Q/{guid}", key=acme)
    download = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/download", key=acme)
    assert head.status == 200 and head.body == b""
    for name in ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Content-Disposition"):
        assert head.headers[name] == download.headers[name], name
    assert head.headers["X-Query-Status"] == "Completed"
    assert int(head.headers["X-Row-Count"]) == len(gzip.decompress(download.body).splitlines()) - 1


def test_range_download_returns_the_requested_bytes(service: Service, acme: str, worker: None) -> None:
    guid = _submit(service, acme, REQUEST_1)
    service.wait_terminal(guid, acme)
    whole = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/download/0", key=acme).body
    part = service.request(
        "GET", f"/_rest/v4/dwh/Q/{guid}/download/0", key=acme, headers={"Range": "bytes=10-99"}
    )
    assert part.status == 206
    assert part.body == whole[10:100]
    assert part.headers["Content-Range"] == f"bytes 10-99/{len(whole)}"
    beyond = service.request(
        "GET", f"/_rest/v4/dwh/Q/{guid}/download/0", key=acme, headers={"Range": f"bytes={len(whole)}-"}
    )
    assert beyond.status == 416


def test_zero_rows_fail_with_the_documented_message(service: Service, acme: str, worker: None) -> None:
    guid = _submit(service, acme, NO_ROWS)
    status = service.wait_terminal(guid, acme)
    assert status["status"] == "Failed"
    assert status["messages"] == ["The query returned empty values"]


def test_pending_location_then_limit_then_slots_free(service: Service, globex: str) -> None:
    """20 concurrent POSTs with no worker running: exactly 2 accepted; once they end, 2 more are accepted."""
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(
                lambda _: service.request("POST", "/_rest/v4/dwh/Q", key=globex, body=REQUEST_1), range(20)
            )
        )
    accepted = [r for r in responses if r.status == 201]
    limited = [r for r in responses if r.status == 429]
    assert len(accepted) == 2 and len(limited) == 18, [r.status for r in responses]
    assert all(
        r.json() == {"code": 429, "message": "max concurrent queries per user (2) reached"} for r in limited
    )
    assert all(int(r.headers["Retry-After"]) > 0 for r in limited)
    assert limited[0].body == b'{"code": 429, "message": "max concurrent queries per user (2) reached"}'
    guid = accepted[0].json()["id"]
    pending = service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=globex).json()
    assert pending == {
        "status": "Process has not finish yet, please verify the status of your request",
        "guid": guid,
    }
    service.worker_start()
    try:
        for response in accepted:
            assert service.wait_terminal(response.json()["id"], globex)["status"] == "Completed"
        again = [service.request("POST", "/_rest/v4/dwh/Q", key=globex, body=REQUEST_1) for _ in range(3)]
        assert sorted(r.status for r in again)[:2] == [201, 201]
    finally:
        service.workers_stop()


def test_other_customer_guid_is_not_found_everywhere(
    service: Service, acme: str, globex: str, worker: None
) -> None:
    guid = _submit(service, acme, REQUEST_1)
    service.wait_terminal(guid, acme)
    not_found = [
        {
            "message": "could not get QueryRequest object: QueryRequest matching query does not exist.",
            "code": 404,
        }
    ]
    for method, path in [
        ("GET", f"/_rest/v4/dwh/Q/{guid}"),
        ("GET", f"/_rest/v4/dwh/Q/{guid}/status"),
        ("GET", f"/_rest/v4/dwh/Q/{guid}/download"),
        ("GET", f"/_rest/v4/dwh/Q/{guid}/download/0"),
        ("DELETE", f"/_rest/v4/dwh/Q/{guid}"),
    ]:
        response = service.request(method, path, key=globex)
        assert response.status == 404, (method, path)
        assert response.json() == not_found
    assert service.request("HEAD", f"/_rest/v4/dwh/Q/{guid}", key=globex).status == 404


def test_unknown_guid_and_unsupported_method(service: Service, acme: str) -> None:
    response = service.request("GET", "/_rest/v4/dwh/Q/0123456789abcdef0123456789abcdef/status", key=acme)
    assert response.status == 404
    assert json.loads(response.body)[0]["code"] == 404
    put = service.request("PUT", "/_rest/v4/dwh/Q", key=acme, body={})
    assert put.status == 405
    assert put.json()["code"] == 405


def test_missing_or_bad_token_is_401(service: Service) -> None:
    for headers in [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}]:
        response = service.request("GET", "/_rest/v4/dwh/Q", headers=headers)
        assert response.status == 401
        assert response.body == b'{"code": 401, "error": "Unauthorized"}'


def test_documented_validation_error_is_byte_exact_over_http(service: Service, acme: str) -> None:
    body = {
        "timestamp": {"$gte": "2019-10-19 01:45:36.123Z", "$lte": "2019-11-26T00:00:00Z"},
        "data": {"ApplicationExitEvent": {"fields": ["FlowId"]}},
    }
    response = service.request("POST", "/_rest/v4/dwh/Q", key=acme, body=body)
    assert response.status == 400
    assert response.body == (
        b'{"code": 400, "message": {"Date_Filters": {"message": "Invalid date filters [2019-10-19 01:45:36.123Z].'
        b' They must be in ISO8601 format. Example: \'YYYY-MM-DDTHH:MM:SSZ\'", "code": "422-6"}}}'
    )


def test_catalog_lists_the_seed_fields(service: Service, acme: str) -> None:
    catalog = service.request("GET", "/_rest/v4/dwh/Q", key=acme).json()
    assert catalog["ApplicationExitEvent"] == {"fields": ["StartTime", "EndTime", "Path", "ExitReason"]}
    assert catalog["DtmfEvent"] == {"fields": ["DtmfInput", "DtmfSource", "ErrorReason"]}
    verbose = service.request("GET", "/_rest/v4/dwh/Q?verbose=1", key=acme).json()
    stamp = next(f for f in verbose["CallEvent"]["fields"] if f["name"] == "TimeStamp")
    assert stamp["display_name"] == "Date & Time" and stamp["type"] == "TIMESTAMP"


def test_cancel_pending_query_frees_the_slot(service: Service) -> None:
    key = service.customer_create("initech", max_concurrent=1)
    guid = _submit(service, key, REQUEST_1)
    assert service.request("POST", "/_rest/v4/dwh/Q", key=key, body=REQUEST_1).status == 429
    canceled = service.request("DELETE", f"/_rest/v4/dwh/Q/{guid}", key=key)
    assert canceled.status == 202
    assert canceled.json() == {"status": "Canceled", "guid": guid}
    assert service.request("DELETE", f"/_rest/v4/dwh/Q/{guid}", key=key).status == 202  # idempotent
    status = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/status", key=key).json()
    assert status["status"] == "Canceled" and status["messages"]
    second = _submit(service, key, NO_ROWS)  # the slot is free again
    service.worker_start()
    try:
        assert service.wait_terminal(second, key)["status"] == "Failed"
        finished = service.request("DELETE", f"/_rest/v4/dwh/Q/{second}", key=key)
        assert finished.status == 409
        assert finished.json()["code"] == 409
    finally:
        service.workers_stop()


MULTI_EVENT: dict[str, Any] = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {
        "ApplicationExitEvent": {"fields": ["ExitReason", "FlowId"]},
        "DtmfEvent": {"fields": ["DtmfInput", "SessionId"]},
        "CallEvent": {"fields": ["Ani", "FlowId", "Duration"]},
        "MsgEvent": {"fields": ["To", "MessageType", "Segments"]},
    },
}


def test_columns_come_in_request_order_over_several_events(service: Service, acme: str, worker: None) -> None:
    """docs/DESIGN.md §3: the requested fields in request order, union over events, first occurrence wins; EventName
    first. PostgreSQL's jsonb reorders object keys: this is the test that failed on the production shape."""
    guid = _submit(service, acme, MULTI_EVENT)
    assert service.wait_terminal(guid, acme)["status"] == "Completed"
    header = service.download_rows(guid, acme)[0]
    assert header == "EventName,ExitReason,FlowId,DtmfInput,SessionId,Ani,Duration,To,MessageType,Segments"
    events = {line.split(",")[0] for line in service.download_rows(guid, acme)[1:]}
    assert events == set(MULTI_EVENT["data"])


def test_head_of_an_unfinished_query_carries_the_json_headers(service: Service, acme: str) -> None:
    unknown = service.request("HEAD", "/_rest/v4/dwh/Q/0123456789abcdef0123456789abcdef", key=acme)
    assert (unknown.status, unknown.body, unknown.headers["Content-Type"]) == (404, b"", "application/json")
    guid = _submit(service, acme, REQUEST_1)  # no worker: it stays Pending
    head = service.request("HEAD", f"/_rest/v4/dwh/Q/{guid}", key=acme)
    get = service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=acme)
    assert (head.status, head.body) == (200, b"")
    assert head.headers["Content-Type"] == get.headers["Content-Type"] == "application/json"
    assert int(head.headers["Content-Length"]) == len(get.body)
    assert head.headers["X-Query-Status"] == "Pending"
    service.request("DELETE", f"/_rest/v4/dwh/Q/{guid}", key=acme)
    assert "body bytes on a no-body response" not in (service.var_dir / "web.log").read_text()


def test_a_result_whose_file_vanished_is_410_not_500(service: Service, acme: str, worker: None) -> None:
    guid = _submit(service, acme, REQUEST_1)
    assert service.wait_terminal(guid, acme)["status"] == "Completed"
    entry = service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=acme).json()["files"][0]
    (service.var_dir / "exports" / entry["path"]).unlink()  # retention's race, or an operator's hand
    for part in ("/download", "/download/0"):
        response = service.request("GET", f"/_rest/v4/dwh/Q/{guid}{part}", key=acme)
        assert response.status == 410, response.body
        assert response.json()["code"] == 410 and "no longer available" in response.json()["message"]


def test_a_range_of_thousands_of_digits_is_answered_not_a_500(
    service: Service, acme: str, worker: None
) -> None:
    guid = _submit(service, acme, REQUEST_1)
    service.wait_terminal(guid, acme)
    whole = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/download/0", key=acme).body
    path = f"/_rest/v4/dwh/Q/{guid}/download/0"
    past_the_end = service.request("GET", path, key=acme, headers={"Range": "bytes=" + "9" * 5000 + "-"})
    assert past_the_end.status == 416
    to_the_end = service.request("GET", path, key=acme, headers={"Range": "bytes=0-" + "9" * 5000})
    assert (to_the_end.status, to_the_end.body) == (206, whole)
    # As long a part number as fits gunicorn's request line (4094 bytes; longer is its own 414).
    part = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/download/" + "9" * 4000, key=acme)
    assert part.status == 404 and part.json()["code"] == 404  # no such part


HOSTILE_BODIES = [
    ("[" * 5000 + "]" * 5000).encode(),
    ('{"timestamp": ' + "{" * 3000 + "}" * 3000 + "}").encode(),
    json.dumps({"timestamp": {"$gte": "x" * 60000}, "data": {}}).encode(),
    json.dumps({"data": {"CallEvent": {"fields": ["Ani"] * 6000}}}).encode(),
    b'{"timestamp": {"$gte": "\\ud800\\udfff\\u0000"}, "data": {"\\ud800": {"fields": ["\\u202e"]}}}',
    b'{"data": 1e999999}',
    b"\xff\xfe{}",
    b"",
]


@pytest.mark.parametrize("raw", HOSTILE_BODIES, ids=lambda raw: repr(raw[:20]))
def test_hostile_bodies_are_clear_400s(service: Service, acme: str, raw: bytes) -> None:
    response = service.request("POST", "/_rest/v4/dwh/Q", key=acme, raw=raw)
    assert response.status in (400, 413), (response.status, response.body[:300])
    envelope = response.json()
    assert envelope["code"] == response.status and envelope["message"]
    assert b"Traceback" not in response.body


def test_hostile_query_parameters_and_paths_are_not_500s(service: Service, acme: str) -> None:
    for path in [
        "/_rest/v4/dwh/Q?verbose=%ff%fe%00",
        "/_rest/v4/dwh/Q?verbose=" + "1" * 10000,
        "/_rest/v4/dwh/Q/%ff%00/status",
        "/_rest/v4/dwh/Q/" + "%e2%80%ae" * 11 + "/status",
        "/_rest/v4/dwh/Q/" + "a" * 5000,
    ]:
        response = service.request("GET", path, key=acme)
        # 414: gunicorn's own answer to a request line over 4094 bytes.
        assert response.status in (200, 400, 404, 414), (path, response.status, response.body[:200])


def test_admin_login_is_throttled(service: Service) -> None:
    """Wrong passwords at the admin's login: answered (200, the form again) until the client has failed
    AUTH_FAILURES_PER_MINUTE (8 here) times this minute, then 429; other clients are not affected. The
    window is the clock's minute: 20 tries may straddle one boundary, never two."""
    client = {"X-Forwarded-For": "198.51.100.7"}
    statuses = [_admin_login(service, "operator", f"wrong-{n}", client) for n in range(20)]
    assert 429 in statuses, statuses
    first_refusal = statuses.index(429)
    assert first_refusal >= 8 and set(statuses[:first_refusal]) == {200}, statuses
    assert _admin_login(service, "operator", "still-wrong", {"X-Forwarded-For": "198.51.100.8"}) == 200


def _admin_login(service: Service, username: str, password: str, headers: dict[str, str]) -> int:
    """A login as a browser does it: the form's CSRF token and cookie, then the POST."""
    page = service.request("GET", "/admin/login/", headers=headers)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    cookie = page.headers.get("Set-Cookie", "").split(";")[0]
    assert token and cookie, page.body[:300]
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token.group(1).decode(),
            "username": username,
            "password": password,
            "next": "/admin/",
        }
    ).encode()
    response = service.request(
        "POST",
        "/admin/login/",
        raw=form,
        headers={**headers, "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
    )
    return response.status


def test_a_chunked_body_is_read(service: Service, acme: str) -> None:
    """curl -H "Transfer-Encoding: chunked": no Content-Length; the body is the query all the same."""
    connection = http.client.HTTPConnection(service.base_url.removeprefix("http://"), timeout=30)
    body = json.dumps(REQUEST_1).encode()
    connection.request(
        "POST",
        "/_rest/v4/dwh/Q",
        body=iter([body[:20], body[20:]]),
        headers={"Authorization": f"Bearer {acme}", "Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    answer = json.loads(response.read())
    assert response.status == 201, answer
    service.request("DELETE", f"/_rest/v4/dwh/Q/{answer['id']}", key=acme)


def test_exports_list_read_fetch_and_delete(service: Service, acme: str, globex: str) -> None:
    """The exports resource over HTTP: the caller's exports only, one export's settings and result, the whole
    result as a zip of every part and the manifest, and a delete that removes the files."""
    service.worker_start(extra_env={"EXPORT_PART_BYTES": "4096"})  # several parts
    body = {**MULTI_EVENT, "description": "seed request 2", "filename": "flow-exits"}
    try:
        guid = _submit(service, acme, body)
        assert service.wait_terminal(guid, acme)["status"] == "Completed"
    finally:
        service.workers_stop()
    theirs = _submit(service, globex, REQUEST_1)
    listed = service.request("GET", "/_rest/v4/dwh/exports?limit=500", key=acme).json()
    ids = [export["id"] for export in listed["exports"]]
    assert guid in ids and theirs not in ids
    export = service.request("GET", f"/_rest/v4/dwh/exports/{guid}", key=acme).json()
    files = service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=acme).json()["files"]
    assert (export["status"], export["description"], export["filename"]) == (
        "Completed",
        "seed request 2",
        "flow-exits",
    )
    assert export["parts"] == len(files) > 1  # EXPORT_PART_BYTES is small here
    assert export["size"] == sum(f["size"] for f in files) and export["rows"] == sum(f["rows"] for f in files)
    assert export["downloadable"] and export["expires_at"] > export["finished_at"]
    bundle = service.request("GET", f"/_rest/v4/dwh/exports/{guid}?redirect=true", key=acme)
    assert (
        bundle.status == 200
        and bundle.headers["Content-Disposition"] == 'attachment; filename="flow-exits.zip"'
    )
    archive = zipfile.ZipFile(io.BytesIO(bundle.body))
    assert archive.namelist() == [f["path"].rsplit("/", 1)[-1] for f in files] + [f"{guid}_manifest.json"]
    for entry in files:
        assert hashlib.sha256(archive.read(entry["path"].rsplit("/", 1)[-1])).hexdigest() == entry["sha256"]
    deleted = service.request("DELETE", f"/_rest/v4/dwh/exports/{guid}", key=acme)
    assert deleted.status == 200 and deleted.json()["status"] == "Deleted"
    assert not list((service.var_dir / "exports").rglob(f"{guid}*"))
    assert service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=acme).status == 410
    assert service.request("DELETE", f"/_rest/v4/dwh/exports/{theirs}", key=acme).status == 404
    assert (
        service.request("DELETE", f"/_rest/v4/dwh/exports/{theirs}", key=globex).status == 202
    )  # its slot back


def test_one_part_exports_redirect_to_their_download(service: Service, acme: str, worker: None) -> None:
    guid = _submit(service, acme, REQUEST_1)
    assert service.wait_terminal(guid, acme)["status"] == "Completed"
    redirect = service.request("GET", f"/_rest/v4/dwh/exports/{guid}?redirect=true", key=acme)
    assert redirect.status == 303 and redirect.headers["Location"] == f"/_rest/v4/dwh/Q/{guid}/download/0"


@pytest.mark.parametrize(
    ("output", "content_type"),
    [
        ({"format": "parquet"}, "application/vnd.apache.parquet"),
        (
            {"format": "xlsx", "header": "display"},
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        ({"format": "ndjson"}, "application/gzip"),
        ({"format": "csv", "compression": "none", "dialect": "no_newline"}, "text/csv; charset=utf-8"),
    ],
    ids=lambda value: value["format"] if isinstance(value, dict) else "",
)
def test_each_output_format_downloads_as_what_it_says(
    service: Service, acme: str, worker: None, output: dict[str, str], content_type: str
) -> None:
    guid = _submit(service, acme, {**REQUEST_1, "output": output, "filename": "exits"})
    assert service.wait_terminal(guid, acme)["status"] == "Completed"
    head = service.request("HEAD", f"/_rest/v4/dwh/Q/{guid}", key=acme)
    download = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/download/0", key=acme)
    assert download.status == 200
    assert head.headers["Content-Type"] == download.headers["Content-Type"] == content_type
    extension = output["format"] + (".gz" if content_type == "application/gzip" else "")
    assert download.headers["Content-Disposition"] == f'attachment; filename="exits.{extension}"'
    expected = [row[0] for row in _flow_ids(service)]
    if output["format"] == "parquet":
        import pyarrow.parquet as pq

        assert pq.read_table(io.BytesIO(download.body)).column("FlowId").to_pylist() == expected
    elif output["format"] == "xlsx":
        import openpyxl

        rows = list(
            openpyxl.load_workbook(io.BytesIO(download.body), read_only=True).active.iter_rows(
                values_only=True
            )
        )
        assert rows[0] == ("Flow ID",) and [row[0] for row in rows[1:]] == expected
    elif output["format"] == "ndjson":
        lines = gzip.decompress(download.body).decode().splitlines()
        assert [json.loads(line) for line in lines] == [{"FlowId": flow} for flow in expected]
    else:
        assert download.body.decode().splitlines() == ["FlowId", *expected]


def _flow_ids(service: Service) -> list[tuple]:
    return warehouse_rows(
        service,
        'SELECT "FlowId" FROM events WHERE "EventName" = ? AND "CustomerId" = ? AND "TimeStamp" >= ? '
        'AND "TimeStamp" <= ? ORDER BY "TimeStamp", _row_id',
        ["ApplicationExitEvent", DEMO_CUSTOMER_KEYS[0], "2019-11-25 00:00:00", "2019-11-26 00:00:00"],
    )


CALLS = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["SessionId", "DisconnectReason", "Duration"]}},
    "filters": {"CallEvent": {"Duration": {"$gte": 5}}},
}


def test_preview_and_summaries_agree_with_the_export(
    service: Service, acme: str, globex: str, worker: None
) -> None:
    guid = _submit(service, acme, CALLS)
    assert service.wait_terminal(guid, acme)["status"] == "Completed"
    lines = [line.split(",") for line in service.download_rows(guid, acme)]
    preview = service.request("POST", "/_rest/v4/dwh/Q/preview", key=acme, body={**CALLS, "limit": "5"})
    assert preview.status == 200, preview.body
    fields = preview.json()["fields"]
    assert [(f["name"], f["type"]) for f in fields] == [
        ("SessionId", "string"),
        ("DisconnectReason", "string"),
        ("Duration", "float"),
    ]
    assert lines[0] == [f["name"] for f in fields]
    assert [[row["SessionId"], row["DisconnectReason"]] for row in preview.json()["data"]] == [
        line[:2] for line in lines[1:6]
    ]
    counted = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/summary", key=acme)
    computed = service.request("POST", "/_rest/v4/dwh/summary", key=acme, body=CALLS)
    assert counted.status == computed.status == 200, (counted.body, computed.body)
    summary, warehouse = counted.json(), computed.json()
    assert summary["rows"] == len(lines) - 1 == warehouse["rows"]
    assert summary["call_duration"]["sum"] == pytest.approx(warehouse["call_duration"]["sum"], rel=1e-12)
    for figures in (summary, warehouse):
        figures["call_duration"].pop("sum"), figures["call_duration"].pop("mean")
    assert summary == warehouse
    assert summary["unique_sessions_count"] == len({line[0] for line in lines[1:]})
    theirs = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/summary", key=globex)
    assert theirs.status == 404 and isinstance(theirs.json(), list)
