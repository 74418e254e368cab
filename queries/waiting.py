"""Hybrid wait: `POST /dwh/Q?wait=N` (0 to QUERY_WAIT_MAX_SECONDS, 30 by default) answers as a POST does, but
only once the query has ended or N seconds have passed, with its status document added under `"status"`: a small
query needs no polling.

The query goes on either way; the connection is never held past N seconds (plus one status read). The wait
reads the status as a poll does (queries.selectors.query_get with STATUS_FIELDS: a reuse following another
query's run is settled on the way), and between reads:
- where the worker publishes ends (queries.end_signals: the broker is Redis), it sleeps until the end is
  published, reading again every WAIT_LONGEST_PAUSE for the ends nobody publishes (a cancel, the reaper);
- elsewhere it reads every WAIT_FIRST_PAUSE at first, so that a query ending in tens of milliseconds is seen
  within a few, then less and less often, up to every WAIT_LONGEST_PAUSE (a wait of 30 s: about 140 reads).
Each waiting POST holds one web thread for its wait.
"""

from __future__ import annotations

import time

from django.conf import settings

from insights.models import Customer
from queries.end_signals import query_end_listener
from queries.models import QueryRequest
from queries.selectors import STATUS_FIELDS, query_get
from queries.validation import QueryValidationError

WAIT_FIRST_PAUSE = 0.005
WAIT_GROWTH = 1.25
WAIT_LONGEST_PAUSE = 0.25


def wait_read(value: str | None) -> float | None:
    """`?wait=`: seconds from 0 to QUERY_WAIT_MAX_SECONDS (a decimal is taken), None when absent; else a 400."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    longest = settings.QUERY_WAIT_MAX_SECONDS
    if not 0 <= seconds <= longest:  # NaN fails both comparisons
        raise QueryValidationError(f"wait must be a number of seconds from 0 to {longest}.")
    return seconds


def query_wait(*, customer: Customer, guid: str, seconds: float) -> QueryRequest:
    """The query once it has ended, or as it is after `seconds` (see the module docstring)."""
    deadline = time.monotonic() + seconds
    query = query_get(customer=customer, guid=guid, fields=STATUS_FIELDS)
    if query.is_terminal or seconds <= 0:
        return query
    # A reuse that follows another query's run ends when that one does: its end wakes us too.
    ids = [query.pk] + ([query.reused_from_id] if query.reused_from_id is not None else [])
    with query_end_listener(ids) as pause_until_end:
        query = query_get(customer=customer, guid=guid, fields=STATUS_FIELDS)  # an end from now on wakes us
        pause = WAIT_FIRST_PAUSE
        while not query.is_terminal and (left := deadline - time.monotonic()) > 0:
            if pause_until_end is not None:
                pause_until_end(min(WAIT_LONGEST_PAUSE, left))
            else:
                time.sleep(min(pause, left))
                pause = min(pause * WAIT_GROWTH, WAIT_LONGEST_PAUSE)
            query = query_get(customer=customer, guid=guid, fields=STATUS_FIELDS)
    return query
