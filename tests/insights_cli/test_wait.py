"""--wait: the backoff schedule, the polling loop, and how a query's end becomes the exit code."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from insights_cli.errors import EXIT_CANCELED, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, CliError
from insights_cli.wait import poll_delays, query_wait, state_exit_code, state_problem
from tests.insights_cli.test_client import client_for

GUID = "c" * 32


def _state(status: str, rows: int = 0, **extra: Any) -> dict[str, Any]:
    return {"status": status, "guid": GUID, "progress": {"rows": rows, "bytes": rows * 10}, **extra}


class Recorder:
    def __init__(self) -> None:
        self.states: list[dict[str, Any]] = []

    def update(self, state: dict[str, Any]) -> None:
        self.states.append(state)


def test_the_backoff_starts_quick_and_settles_at_two_seconds() -> None:
    assert [round(d, 4) for d in itertools.islice(poll_delays(), 9)] == [
        0.2, 0.3, 0.45, 0.675, 1.0125, 1.5188, 2.0, 2.0, 2.0,
    ]  # fmt: skip
    assert all(d == 2.0 for d in itertools.islice(poll_delays(), 50, 60))


def test_waiting_polls_on_the_schedule_and_shows_every_status() -> None:
    answers = iter([_state("Pending"), _state("Pending", 10), _state("Pending", 20), _state("Completed", 30)])
    slept: list[float] = []
    view = Recorder()
    with client_for(lambda request: httpx.Response(200, json=next(answers))) as client:
        final = query_wait(client, GUID, view, sleep=slept.append)
    assert final == _state("Completed", 30)
    assert slept == pytest.approx([0.0, 0.2, 0.3, 0.45])
    assert [s["progress"]["rows"] for s in view.states] == [0, 10, 20, 30]


def test_a_poll_that_fails_says_the_query_goes_on() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(CliError) as raised, client_for(handler) as client:
        query_wait(client, GUID, Recorder(), sleep=lambda s: None)
    assert raised.value.exit_code == EXIT_UNREACHABLE
    assert f"query {GUID} goes on (see `insights status {GUID}`)" in raised.value.message


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("Completed", EXIT_OK),
        ("Pending", EXIT_OK),
        ("Failed", EXIT_FAILED),
        ("Canceled", EXIT_CANCELED),
        ("Expired", EXIT_OK),
    ],
)
def test_how_a_query_ended_is_the_exit_code(status: str, code: int) -> None:
    assert state_exit_code(_state(status)) == code


def test_the_problem_is_told_in_the_services_words() -> None:
    state = _state("Failed", messages=["The query returned empty values"])
    assert state_problem(state) == f"query {GUID} Failed: The query returned empty values"


# --- the POST's own wait (`?wait=N`) first, then polls only if the query is still Pending ------------------


def _no_request(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request expected: {request.method} {request.url}")


def test_a_query_that_ended_within_the_posts_wait_is_not_polled() -> None:
    view = Recorder()
    with client_for(_no_request) as client:
        final = query_wait(client, GUID, view, sleep=lambda s: None, first=_state("Completed", 30))
    assert final == _state("Completed", 30) and view.states == [final]


def test_a_query_still_pending_after_the_posts_wait_is_polled_after_a_first_delay() -> None:
    answers = iter([_state("Pending", 20), _state("Failed", 20)])
    slept: list[float] = []
    view = Recorder()
    with client_for(lambda request: httpx.Response(200, json=next(answers))) as client:
        final = query_wait(client, GUID, view, sleep=slept.append, first=_state("Pending", 10))
    assert final["status"] == "Failed"
    assert slept == pytest.approx([0.2, 0.3])  # no poll at once: the POST has just answered
    assert [s["progress"]["rows"] for s in view.states] == [10, 20, 20]


def _submitting(*answers: httpx.Response) -> tuple[list[httpx.Request], Any]:
    requests: list[httpx.Request] = []
    queue = iter(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return next(queue)

    return requests, handler


def test_submitting_with_the_servers_wait() -> None:
    requests, handler = _submitting(httpx.Response(201, json={"id": GUID, "status": _state("Completed", 5)}))
    with client_for(handler) as client:
        assert client.query_submit({"data": {}}, wait=5) == (GUID, _state("Completed", 5))
    (request,) = requests
    assert (request.method, request.url.path, request.url.params["wait"]) == ("POST", "/_rest/v4/dwh/Q", "5")
    assert request.extensions["timeout"]["read"] == pytest.approx(35.0)  # the wait, then the usual timeout


def test_a_service_without_the_wait_answers_at_once_with_no_status() -> None:
    _, handler = _submitting(httpx.Response(201, json={"id": GUID}))
    with client_for(handler) as client:
        assert client.query_submit({"data": {}}, wait=5) == (GUID, None)


def test_a_service_with_a_shorter_wait_gets_the_query_without_it() -> None:
    refused = {"code": 400, "message": "wait must be a number of seconds from 0 to 2."}
    requests, handler = _submitting(httpx.Response(400, json=refused), httpx.Response(201, json={"id": GUID}))
    with client_for(handler) as client:
        assert client.query_submit({"data": {}}, wait=5) == (GUID, None)
    assert [dict(r.url.params) for r in requests] == [{"wait": "5"}, {}]


def test_a_refused_submission_keeps_the_services_words() -> None:
    limit = {"code": 429, "message": "max concurrent queries per user (2) reached"}
    requests, handler = _submitting(httpx.Response(429, json=limit, headers={"Retry-After": "3"}))
    with pytest.raises(CliError) as raised, client_for(handler) as client:
        client.query_submit({"data": {}}, wait=5)
    assert raised.value.message == "max concurrent queries per user (2) reached (HTTP 429; retry after 3 s)"
    assert raised.value.exit_code == 1 and len(requests) == 1  # not sent again
