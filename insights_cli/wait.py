"""Waiting for a query to end: the POST's own server-side wait first (`?wait=N`, commands.query), then, if the
query is still Pending, status polls on a backoff schedule, each one shown, until a terminal status."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from insights_cli.client import Client
from insights_cli.errors import EXIT_CANCELED, EXIT_FAILED, EXIT_OK, CliError

FIRST_DELAY, FACTOR, CEILING = 0.2, 1.5, 2.0
# Pending is queued or running; every other status is final. What each means for the exit code (Expired and
# Deleted completed once: their result is gone, which `download` reports).
EXIT_BY_STATUS = {"Completed": EXIT_OK, "Failed": EXIT_FAILED, "Canceled": EXIT_CANCELED}


class StatusView(Protocol):
    def update(self, state: dict[str, Any]) -> None: ...


def poll_delays(
    first: float = FIRST_DELAY, factor: float = FACTOR, ceiling: float = CEILING
) -> Iterator[float]:
    """Seconds between polls: quick at first (small queries end in well under a second), then every
    `ceiling` seconds, so a long export costs the service one cheap request every couple of seconds."""
    delay = first
    while True:
        yield min(delay, ceiling)
        delay *= factor


def query_wait(
    client: Client,
    guid: str,
    view: StatusView,
    *,
    sleep: Callable[[float], None] = time.sleep,
    delays: Iterator[float] | None = None,
    first: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The query's last status body, once it is no longer Pending. A failure to poll says the query goes on.
    `first`: the status the POST answered after its server-side wait (`?wait=N`): shown, and polling starts
    only if it is still Pending, after the first delay."""
    polls: Iterator[float] = itertools.chain([0.0], delays or poll_delays())
    if first is not None:
        view.update(first)
        if first["status"] != "Pending":
            return first
        polls = delays or poll_delays()
    for delay in polls:
        sleep(delay)
        try:
            state = client.query_status(guid)
        except CliError as error:
            raise CliError(
                f"{error.message}; query {guid} goes on (see `insights status {guid}`)", error.exit_code
            ) from None
        view.update(state)
        if state["status"] != "Pending":
            return state
    raise AssertionError("poll_delays never ends")


def state_exit_code(state: dict[str, Any]) -> int:
    return EXIT_BY_STATUS.get(str(state["status"]), EXIT_OK)


def state_problem(state: dict[str, Any]) -> str:
    """Why a query ended without a result, in the service's words."""
    messages = "; ".join(state.get("messages") or []) or "no message"
    return f"query {state['guid']} {state['status']}: {messages}"
