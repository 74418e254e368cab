"""The exports resource in process (APIClient on the test database, real local storage): list, read, fetch,
delete, and the POST keys that name and shape an export. Over HTTP on both shapes: tests/test_service_e2e.py."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from queries.models import QueryRequest, QueryStatus
from tests.queries.clients import api_client

pytestmark = pytest.mark.django_db

QUERY = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"ApplicationExitEvent": {"fields": ["FlowId"]}, "CallEvent": {"fields": ["Ani"]}},
}
NOT_FOUND = [
    {"message": "could not get QueryRequest object: QueryRequest matching query does not exist.", "code": 404}
]


def _client(customer, name: str = "reporting") -> APIClient:
    return api_client(customer, name)


def _post(client: APIClient, body: object):
    return client.post("/_rest/v4/dwh/Q", data=json.dumps(body), content_type="application/json")


def test_an_export_shows_its_settings_window_and_result(customer_factory, sent_tasks):
    customer = customer_factory("acme", max_concurrent_queries=5)
    client = _client(customer)
    body = {**QUERY, "output": {"header": "display"}, "description": "March calls", "filename": "march"}
    guid = _post(client, body).json()["id"]
    export = client.get(f"/_rest/v4/dwh/exports/{guid}").json()
    assert export["id"] == guid and export["status"] == "Pending"
    assert (export["author"], export["description"], export["filename"]) == (
        "reporting",
        "March calls",
        "march",
    )
    assert export["output"] == {
        "format": "csv",
        "compression": "gzip",
        "dialect": "rfc4180",
        "header": "display",
    }
    assert export["events"] == ["ApplicationExitEvent", "CallEvent"]  # request order
    assert (export["from"], export["to"]) == ("2019-11-25T00:00:00.000Z", "2019-11-26T00:00:00.000Z")
    assert (export["rows"], export["size"], export["parts"], export["expires_at"]) == (None, 0, 0, None)
    assert export["download_link"] == f"http://testserver/_rest/v4/dwh/exports/{guid}?redirect=true"
    assert export["downloadable"] is False
    plan = json.loads(QueryRequest.objects.get(guid=guid).plan)
    assert plan["titles"] == ["Event Name", "Flow ID", "ANI"]  # header "display": the catalog's display names


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"output": {"format": "pdf"}},
            'output.format must be one of csv, xlsx, parquet, ndjson, not "pdf".',
        ),
        (
            {"output": {"format": "xlsx", "dialect": "excel"}},
            "output.dialect does not apply to the xlsx format.",
        ),
        ({"output": {"colour": "red"}}, "output.colour is not an output option"),
        ({"output": "csv"}, '"output" must be an object'),
        ({"filename": "../etc/passwd"}, '"filename" must be 1 to 100 letters'),
        ({"description": "x" * 501}, '"description" must be at most 500 characters'),
        ({"owner": "me"}, "owner"),
    ],
)
def test_bad_export_settings_are_400s_naming_the_value(customer_factory, sent_tasks, extra, message):
    response = _post(_client(customer_factory("acme")), {**QUERY, **extra})
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_the_list_is_the_callers_newest_first_in_pages(customer_factory, completed_query_factory, sent_tasks):
    acme, globex = customer_factory("acme", max_concurrent_queries=9), customer_factory("globex")
    mine = [completed_query_factory(acme) for _ in range(5)]
    theirs = completed_query_factory(globex)
    for age, query in enumerate(reversed(mine)):
        QueryRequest.objects.filter(pk=query.pk).update(submitted_at=timezone.now() - timedelta(minutes=age))
    client = _client(acme)
    first = client.get("/_rest/v4/dwh/exports?limit=2").json()
    second = client.get(first["next"]).json()
    third = client.get(second["next"]).json()
    seen = [e["id"] for page in (first, second, third) for e in page["exports"]]
    assert seen == [q.guid for q in reversed(mine)] and third["next"] is None
    assert theirs.guid not in seen
    only_failed = client.get("/_rest/v4/dwh/exports?status=Failed").json()
    assert only_failed == {"exports": [], "next": None}
    since = (timezone.now() - timedelta(minutes=1, seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(client.get(f"/_rest/v4/dwh/exports?since={since}").json()["exports"]) == 2


@pytest.mark.parametrize(
    "query_string",
    [
        "status=Done",
        "limit=0",
        "limit=501",
        "limit=" + "9" * 5000,
        "since=yesterday",
        "cursor=%%%",
        "cursor=bm9wZQ",
        "until=",
        "status=",
        "cursor=",
    ],
)
def test_unreadable_list_parameters_are_400s(customer_factory, query_string):
    response = _client(customer_factory("acme")).get(f"/_rest/v4/dwh/exports?{query_string}")
    assert response.status_code == 400 and response.json()["code"] == 400


@pytest.mark.parametrize("value", ["null", "", "yes"])
def test_redirect_is_true_or_false(customer_factory, completed_query_factory, value):
    acme = customer_factory("acme")
    guid = completed_query_factory(acme).guid
    response = _client(acme).get(f"/_rest/v4/dwh/exports/{guid}?redirect={value}")
    assert response.status_code == 400 and "redirect must be true or false" in response.json()["message"]
    assert _client(acme).get(f"/_rest/v4/dwh/exports/{guid}?redirect=false").status_code == 200


def test_another_customers_export_is_the_documented_404(customer_factory, completed_query_factory):
    theirs = completed_query_factory(customer_factory("globex"))
    client = _client(customer_factory("acme"))
    for method, path in [
        ("get", f"/_rest/v4/dwh/exports/{theirs.guid}"),
        ("get", f"/_rest/v4/dwh/exports/{theirs.guid}?redirect=true"),
        ("delete", f"/_rest/v4/dwh/exports/{theirs.guid}"),
    ]:
        response = getattr(client, method)(path)
        assert (response.status_code, response.json()) == (404, NOT_FOUND), (method, path)
    assert QueryRequest.objects.get(pk=theirs.pk).status == QueryStatus.COMPLETED


def test_redirect_to_the_one_part_or_a_zip_of_all_parts(
    customer_factory, completed_query_factory, local_exports
):
    customer = customer_factory("acme")
    client = _client(customer)
    one = completed_query_factory(customer)
    redirect = client.get(f"/_rest/v4/dwh/exports/{one.guid}?redirect=true")
    assert (redirect.status_code, redirect["Location"]) == (303, f"/_rest/v4/dwh/Q/{one.guid}/download/0")
    several = completed_query_factory(customer)
    second = dict(several.files[0], path=several.files[0]["path"].replace("__000000000000", "__000000000001"))
    (local_exports / second["path"]).write_bytes((local_exports / several.files[0]["path"]).read_bytes())
    QueryRequest.objects.filter(pk=several.pk).update(files=[several.files[0], second], filename="calls")
    bundle = client.get(f"/_rest/v4/dwh/exports/{several.guid}?redirect=true")
    assert bundle.status_code == 200 and bundle["Content-Type"] == "application/zip"
    assert bundle["Content-Disposition"] == 'attachment; filename="calls.zip"'
    archive = zipfile.ZipFile(io.BytesIO(bundle.getvalue()))
    names = [f["path"].rsplit("/", 1)[-1] for f in (several.files[0], second)]
    assert archive.namelist() == [*names, f"{several.guid}_manifest.json"]
    assert gzip.decompress(archive.read(names[1])).startswith(b"FlowId\n")


def test_a_result_not_completed_cannot_be_fetched(customer_factory, sent_tasks):
    client = _client(customer_factory("acme"))
    guid = _post(client, QUERY).json()["id"]
    response = client.get(f"/_rest/v4/dwh/exports/{guid}?redirect=true")
    assert response.status_code == 409 and response.json()["code"] == 409


def test_delete_removes_the_files_and_the_query_ends_deleted(
    customer_factory, completed_query_factory, local_exports
):
    customer = customer_factory("acme")
    client = _client(customer)
    done = completed_query_factory(customer)
    for _ in range(2):  # idempotent
        response = client.delete(f"/_rest/v4/dwh/exports/{done.guid}")
        assert response.status_code == 200 and response.json()["status"] == "Deleted"
    assert not [p for p in local_exports.rglob("*") if p.is_file()]
    gone = client.get(f"/_rest/v4/dwh/Q/{done.guid}")
    assert gone.status_code == 410 and "deleted at the customer's request" in gone.json()["message"]
    status = client.get(f"/_rest/v4/dwh/Q/{done.guid}/status").json()
    assert status["messages"] == ["The result was deleted at the customer's request."]
    assert client.get(f"/_rest/v4/dwh/Q/{done.guid}/download/0").status_code == 410


def test_deleting_a_pending_export_cancels_it(customer_factory, sent_tasks):
    client = _client(customer_factory("acme"))
    guid = _post(client, QUERY).json()["id"]
    response = client.delete(f"/_rest/v4/dwh/exports/{guid}")
    assert response.status_code == 202 and response.json()["status"] == "Canceled"
