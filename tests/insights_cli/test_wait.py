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
