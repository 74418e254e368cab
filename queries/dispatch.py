"""Handing runs to the broker, and noticing when the broker lost what it held.

The run task is sent by name, so nothing here imports the task module (tasks import the runner and the
upkeep, which enqueue through here: importing the tasks back would make a cycle).
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.utils import timezone

from insights.celery import app
from queries.lifecycle import queries_enqueued

logger = logging.getLogger(__name__)

RUN_TASK = "queries.run"
SLICE_TASK = "queries.run_slice"
# A key of ours in the broker's Redis: when it is gone, so is every message the broker held (a restart
# without persistence, a flush), and every queued query must be sent again.
BROKER_MARK = "insights:broker-mark"


def query_enqueue(*, query_id: int, countdown: float | None = None) -> bool:
    """Send the query's run to the broker. Never raises: the query is committed already, and a query whose
    message did not go out is sent again by the reaper at its next tick (its `enqueued_at` is cleared)."""
    try:
        app.send_task(RUN_TASK, args=(query_id,), countdown=countdown)
    except Exception:
        # Any failure (the broker down, a transport that cannot load): the POST still answers 201.
        logger.warning(
            "query %s could not be sent to the broker; the reaper will send it", query_id, exc_info=True
        )
        queries_enqueued([query_id], at=None)
        return False
    return True


def slice_enqueue(*, slice_id: int, countdown: float | None = None) -> bool:
    """Send one slice of a big export (queries.slice_runner) to the broker. Never raises: a slice whose message
    did not go out is sent again by the reaper (queries.slice_lifecycle.slices_unclaimed)."""
    try:
        app.send_task(SLICE_TASK, args=(slice_id,), countdown=countdown)
    except Exception:
        logger.warning(
            "slice %s could not be sent to the broker; the reaper will send it", slice_id, exc_info=True
        )
        return False
    return True


def slices_enqueue(slice_ids: list[int]) -> int:
    """Send several slices (the reaper's); returns how many went out."""
    return sum(slice_enqueue(slice_id=slice_id) for slice_id in slice_ids)


def queries_enqueue(query_ids: list[int]) -> int:
    """Send several runs (the reaper's); returns how many went out."""
    return sum(query_enqueue(query_id=query_id) for query_id in query_ids)


def broker_messages_lost() -> bool:
    """Whether the broker lost its messages since the last call: our mark in its Redis is gone (it is set
    again now). True on the first call against a new broker too, which costs a harmless duplicate message.
    Brokers other than Redis keep their messages on disk: False."""
    url = str(settings.CELERY_BROKER_URL)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return False
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.set(BROKER_MARK, timezone.now().isoformat(), nx=True))
    except redis.RedisError:
        logger.warning("could not check the broker for lost messages", exc_info=True)
        return False
    finally:
        client.close()
