"""The admin's query page: one title, times to the second, output and destination, each part's download, and
the first 20 rows read back from the first part (or a note when they cannot be shown, never an error)."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from queries.models import QueryRequest


def _page(admin_client, query: QueryRequest) -> str:
    response = admin_client.get(f"/admin/queries/queryrequest/{query.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def _replace_part(query: QueryRequest, local_exports, name: str, content: bytes) -> None:
    """Make the query's one part a file called `name` holding `content`."""
    key = f"reports/{query.customer.key}/{query.guid}_QueryExport_1__000000000000{name}"
    (local_exports / key).write_bytes(content)
    query.files = [{**query.files[0], "path": key, "size": len(content)}]
    query.save()


@pytest.fixture()
def completed(customer_factory, completed_query_factory):
    rows = [f"row-{n:02d}".encode() for n in range(1, 26)]
    return completed_query_factory(customer_factory("acme"), rows=rows)


def test_the_page_has_one_title_the_guid(admin_client, completed):
    page = _page(admin_client, completed)
    assert f"<h1>Query {completed.guid}</h1>" in page
    assert "View query request" not in page and "<h2>" + completed.guid not in page


def test_times_are_shown_to_the_second(admin_client, completed):
    page = _page(admin_client, completed)
    finished = completed.finished_at.strftime("%Y-%m-%d %H:%M:%S")
    assert finished in page
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", page)


def test_the_effective_output_and_destination(admin_client, completed, customer_factory):
    page = _page(admin_client, completed)
    assert "format csv, compression gzip, dialect rfc4180, header names" in page
    assert "this server&#x27;s local storage" in page
    pending = QueryRequest.objects.create(
        customer=completed.customer, body="{}", fingerprint="f" * 64, output={"format": "parquet"}
    )
    page = _page(admin_client, pending)
    assert "format parquet, header names" in page
    assert "not published; new results go to this server&#x27;s local storage" in page


def test_each_part_has_a_download_link(admin_client, completed):
    page = _page(admin_client, completed)
    link = f'href="/admin/queries/queryrequest/{completed.pk}/file/0/"'
    assert link in page
    response = admin_client.get(f"/admin/queries/queryrequest/{completed.pk}/file/0/")
    assert gzip.decompress(b"".join(response.streaming_content)).startswith(b"FlowId\nrow-01\n")


def test_the_first_20_rows_of_a_csv_part(admin_client, completed):
    page = _page(admin_client, completed)
    assert "First 20 rows" in page and "<th>FlowId</th>" in page
    assert "<td>row-01</td>" in page and "<td>row-20</td>" in page
    assert "<td>row-21</td>" not in page


def test_the_first_rows_of_an_ndjson_part(admin_client, completed, local_exports):
    lines = [json.dumps({"FlowId": f"f{n}", "Duration": n, "Ani": None}) for n in range(3)]
    _replace_part(completed, local_exports, ".ndjson.gz", gzip.compress("\n".join(lines).encode() + b"\n"))
    page = _page(admin_client, completed)
    assert "<th>FlowId</th><th>Duration</th><th>Ani</th>" in page
    assert "<tr><td>f2</td><td>2</td><td></td></tr>" in page


@pytest.mark.parametrize("name", [".parquet", ".xlsx"])
def test_binary_formats_are_not_shown(admin_client, completed, local_exports, name):
    _replace_part(completed, local_exports, name, b"PAR1 not really")
    assert f"not shown for {name[1:]}" in _page(admin_client, completed)


def test_a_part_that_is_gone_is_a_note_not_an_error(admin_client, completed, local_exports):
    (local_exports / completed.files[0]["path"]).unlink()
    page = _page(admin_client, completed)
    assert "the file cannot be read" in page
    assert admin_client.get(f"/admin/queries/queryrequest/{completed.pk}/file/0/").status_code == 404


def test_a_part_that_is_not_what_it_says_is_a_note(admin_client, completed, local_exports):
    (local_exports / completed.files[0]["path"]).write_bytes(b"\x1f\x8b\x08\x00garbage")
    assert "the file could not be read as csv" in _page(admin_client, completed)


def test_a_query_without_files_shows_no_rows(admin_client, customer_factory):
    query = QueryRequest.objects.create(customer=customer_factory("acme"), body="{}", fingerprint="f" * 64)
    page = _page(admin_client, query)
    assert "First 20 rows" in page and 'class="first-rows"' not in page


def test_the_list_fits_its_columns(admin_client, completed):
    page = admin_client.get("/admin/queries/queryrequest/").content.decode()
    headers = re.findall(r'<th scope="col"[^>]*class="[^"]*column-(\w+)', page)
    assert headers == [
        "guid",
        "customer",
        "status_shown",
        "description_short",
        "output_format",
        "submitted",
        "duration",
        "rows",
    ]
    assert completed.submitted_at.strftime("%Y-%m-%d %H:%M:%S") in page
    QueryRequest.objects.filter(pk=completed.pk).update(attempts=2, description="Calls for the March review")
    page = admin_client.get("/admin/queries/queryrequest/").content.decode()
    assert "Completed (attempt 2)" in page and "Calls for the March…" in page


def test_branding_and_the_view_site_link(admin_client):
    page = admin_client.get("/admin/queries/queryrequest/").content.decode()
    assert '<div id="site-name"><a href="/admin/">Insights</a></div>' in page
    assert '<a href="/">View site</a>' in page
    assert "<title>Select query request to view | Insights</title>" in page


def test_a_running_big_export_shows_its_slices(admin_client, customer_factory):
    from datetime import UTC, datetime

    from queries.models import QuerySlice, SliceState

    query = QueryRequest.objects.create(customer=customer_factory("acme"), body="{}", fingerprint="f" * 64)
    bounds = [datetime(2019, 11, 25, hour, tzinfo=UTC) for hour in (0, 6, 12)]
    for index, state in enumerate((SliceState.DONE, SliceState.RUNNING)):
        QuerySlice.objects.create(
            query=query,
            attempt=1,
            index=index,
            lower=bounds[index],
            upper=bounds[index + 1],
            state=state,
            runs=1,
            rows=1000 * (index + 1),
        )
    page = _page(admin_client, query)
    assert "Slices (one query, many workers)" in page
    states = re.findall(r'<td class="field-state">\s*<p>(\w+)</p>', page)
    assert states == ["Done", "Running"], states
    assert re.findall(r'<td class="field-rows">\s*<p>([\d,]+)</p>', page) == ["1000", "2000"]
    assert 'name="slices-0-state"' not in page and 'name="slices-0-DELETE"' not in page  # shown, not edited
