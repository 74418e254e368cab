"""The API client's pure logic over httpx.MockTransport: every error answer becomes the service's message and
the exit code the CLI promises; listing follows `next`; downloads ask for ranges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from insights_cli.client import Client
from insights_cli.config import Settings
from insights_cli.errors import (
    EXIT_AUTH,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    exit_code_for_status,
)

ROOT = "http://insights.test"


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> Client:
    return Client(Settings(url=ROOT, token="the-key"), transport=httpx.MockTransport(handler))


def _failing(status: int, body: Any = None, **kwargs: Any) -> CliError:
    """The error the client raises when the service answers `status` with `body`."""

    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, **kwargs)
        return httpx.Response(status, json=body, **kwargs)

    with pytest.raises(CliError) as raised, client_for(handler) as client:
        client.catalog()
    return raised.value


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, 1), (401, 4), (403, 4), (404, 1), (409, 1), (410, 1), (413, 1), (429, 1), (500, 5), (503, 5)],
)
def test_exit_code_for_each_status(status: int, code: int) -> None:
    assert exit_code_for_status(status) == code


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (401, {"code": 401, "error": "Unauthorized"}, EXIT_AUTH, "Unauthorized (HTTP 401; check the API key"),
        (403, {"code": 403, "message": "Forbidden."}, EXIT_AUTH, "Forbidden. (HTTP 403"),
        (
            400,
            {"code": 400, "message": "Flow Id is not a valid field."},
            EXIT_USAGE,
            "Flow Id is not a valid",
        ),
        (
            400,
            {"code": 400, "message": {"Date_Filters": {"message": "Dates must be ...", "code": "422-6"}}},
            EXIT_USAGE,
            "Date_Filters: Dates must be ... (HTTP 400)",
        ),
        (
            404,
            [{"message": "could not get QueryRequest object: it does not exist.", "code": 404}],
            EXIT_USAGE,
            "could not get QueryRequest object: it does not exist. (HTTP 404)",
        ),
        (
            400,
            {"code": 400, "message": {"limit": ["Too big.", "Not even."]}},
            EXIT_USAGE,
            "limit: Too big.; Not",
        ),
        (500, {"code": 500, "message": "Internal error; it has been logged."}, EXIT_UNREACHABLE, "Internal"),
    ],
)
def test_error_answers_carry_the_services_message_and_exit_code(
    status: int, body: Any, code: int, message: str
) -> None:
    error = _failing(status, body)
    assert error.exit_code == code
    assert message in error.message


def test_a_limit_says_when_to_retry() -> None:
    error = _failing(
        429,
        {"code": 429, "message": "max concurrent queries per user (2) reached"},
        headers={"Retry-After": "5"},
    )
    assert error.message == "max concurrent queries per user (2) reached (HTTP 429; retry after 5 s)"
    assert error.exit_code == EXIT_USAGE


def test_a_proxys_html_error_page_is_named_by_its_status() -> None:
    error = _failing(502, None, text="<html>upstream went away</html>\n<body>...</body>")
    assert error.exit_code == EXIT_UNREACHABLE
    assert error.message == (
        "Bad Gateway: <html>upstream went away</html> (HTTP 502; not the Insights API: is the URL the "
        "service's root?)"
    )


def test_another_servers_404_page_is_not_the_service() -> None:
    error = _failing(404, None, text="<!DOCTYPE HTML>\n<title>File not found</title>")
    assert error.exit_code == EXIT_UNREACHABLE
    assert "not the Insights API" in error.message


@pytest.mark.parametrize(
    "stale",
    [httpx.RemoteProtocolError("Server disconnected without sending a response."), httpx.ReadError("")],
)
def test_a_poll_on_a_connection_the_server_just_closed_is_sent_again(stale: Exception) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            raise stale
        return httpx.Response(200, json={"status": "Pending"})

    with client_for(handler) as client:
        assert client.query_status("0" * 32) == {"status": "Pending"}
    assert calls == ["GET", "GET"]


def test_a_post_is_never_sent_twice() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    with pytest.raises(CliError) as raised, client_for(handler) as client:
        client.query_create({"timestamp": {}})
    assert calls == ["POST"] and raised.value.exit_code == EXIT_UNREACHABLE


def test_a_success_that_is_not_json_is_not_the_service() -> None:
    with (
        pytest.raises(CliError) as raised,
        client_for(lambda r: httpx.Response(200, text="<html>")) as client,
    ):
        client.catalog()
    assert raised.value.exit_code == EXIT_UNREACHABLE
    assert f"{ROOT} answered GET /_rest/v4/dwh/Q with something that is not JSON" in raised.value.message


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (httpx.ConnectError("Connection refused"), f"cannot reach the Insights service at {ROOT}"),
        (httpx.ReadTimeout("timed out"), f"the Insights service at {ROOT} did not answer within 30 s"),
    ],
)
def test_an_unreachable_service_is_exit_5_naming_the_url(failure: Exception, words: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    with pytest.raises(CliError) as raised, client_for(handler) as client:
        client.query_status("0" * 32)
    assert raised.value.exit_code == EXIT_UNREACHABLE
    assert words in raised.value.message


def test_requests_carry_the_key_under_the_api_prefix() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "a" * 32})

    with client_for(handler) as client:
        assert client.query_create({"timestamp": {}}) == "a" * 32
    assert seen[0].url == f"{ROOT}/_rest/v4/dwh/Q"
    assert seen[0].headers["Authorization"] == "Bearer the-key"
    assert seen[0].headers["Content-Type"] == "application/json"


def _exports(first: int, count: int) -> list[dict[str, Any]]:
    return [{"id": f"{n:032x}"} for n in range(first, first + count)]


def test_listing_follows_next_until_null() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        cursor = request.url.params.get("cursor")
        if cursor is None:
            return httpx.Response(
                200,
                json={
                    "exports": _exports(0, 2),
                    "next": f"{ROOT}/_rest/v4/dwh/exports?status=Completed&limit=100&cursor=c2",
                },
            )
        if cursor == "c2":
            return httpx.Response(
                200,
                json={
                    "exports": _exports(2, 2),
                    "next": f"{ROOT}/_rest/v4/dwh/exports?status=Completed&limit=100&cursor=c4",
                },
            )
        return httpx.Response(200, json={"exports": _exports(4, 1), "next": None})

    with client_for(handler) as client:
        listed = list(client.exports_list(status="Completed"))
    assert [e["id"] for e in listed] == [e["id"] for e in _exports(0, 5)]
    assert asked[0] == f"{ROOT}/_rest/v4/dwh/exports?limit=100&status=Completed"
    assert len(asked) == 3


def test_listing_stops_at_the_limit_without_reading_further_pages() -> None:
    asked: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(
            200, json={"exports": _exports(0, 3), "next": f"{ROOT}/_rest/v4/dwh/exports?cursor=x"}
        )

    with client_for(handler) as client:
        assert len(list(client.exports_list(limit=3))) == 3
    assert [r.url.params["limit"] for r in asked] == ["3"]


def test_a_download_from_an_offset_asks_for_the_rest() -> None:
    ranges: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ranges.append(request.headers.get("Range"))
        return httpx.Response(206, content=b"rest")

    with client_for(handler) as client:
        with client.part_stream("a" * 32, 2, offset=1234) as response:
            assert response.read() == b"rest"
        with client.part_stream("a" * 32, 2) as response:
            assert response.status_code == 206
    assert ranges == ["bytes=1234-", None]


def test_a_refused_download_is_the_services_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            409, json={"code": 409, "message": "Query x has no result to download (status Pending)."}
        )

    with pytest.raises(CliError) as raised, client_for(handler) as client:
        with client.part_stream("a" * 32, 0):
            pass
    assert raised.value.message == "Query x has no result to download (status Pending). (HTTP 409)"
    assert raised.value.exit_code == EXIT_USAGE


def test_a_download_redirected_off_the_service_keeps_its_range_but_not_the_key() -> None:
    """A result on S3: the part's download is a 303 to a presigned URL, which must not receive the API key."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "insights.test":
            return httpx.Response(
                303, headers={"Location": "https://bucket.s3.test/reports/p.csv.gz?X-Sig=1"}
            )
        return httpx.Response(206, content=b"rest")

    with client_for(handler) as client, client.part_stream("a" * 32, 0, offset=10) as response:
        assert response.read() == b"rest"
    assert [str(r.url) for r in seen][1] == "https://bucket.s3.test/reports/p.csv.gz?X-Sig=1"
    assert seen[0].headers["Authorization"] == "Bearer the-key" and "Authorization" not in seen[1].headers
    assert seen[1].headers["Range"] == "bytes=10-"
