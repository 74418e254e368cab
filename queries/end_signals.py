"""A query's end, said on Redis: a POST waiting for its query (`?wait=N`, queries.waiting) wakes when the worker
records the end, instead of reading the status over and over while the worker needs the CPU.

The worker publishes on `insights:query-ended:<id>` once its Completed, Failed or time-limit Canceled is written
(queries.lifecycle); a waiter subscribes before it first reads the status, so an end between the two is not
missed. Ends that nobody publishes (a customer's cancel, the reaper's) are seen by the waiter's slower re-reads.

Redis is the broker's (`CELERY_BROKER_URL`): on the embedded default (the filesystem broker) there is none,
nothing is published and waiters read the status on a schedule instead. Redis failing is never an error here:
a publish that fails is a waiter that wakes on its next re-read.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

CHANNEL = "insights:query-ended:{query_id}"
SOCKET_SECONDS = 1.0

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def query_end_publish(*, query_id: int) -> None:
    """Say that the query ended (never raises)."""
    client = _client()
    if client is None:
        return
    try:
        client.publish(CHANNEL.format(query_id=query_id), b"1")
    except redis.RedisError:
        logger.debug("the end of query %s could not be published", query_id, exc_info=True)


@contextlib.contextmanager
def query_end_listener(query_ids: Iterable[int]) -> Iterator[Callable[[float], bool] | None]:
    """While open, `pause(seconds)` returns once one of the queries may have ended (True) or after `seconds`
    (False). None where ends are not published (no Redis, or it does not answer): poll instead."""
    client = _client()
    if client is None:
        yield None
        return
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(*(CHANNEL.format(query_id=query_id) for query_id in query_ids))
    except redis.RedisError:
        pubsub.close()
        yield None
        return

    def pause(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                if pubsub.get_message(timeout=left) is not None:  # the subscription's own answer is skipped
                    return True
        except redis.RedisError:
            time.sleep(max(deadline - time.monotonic(), 0))
        return False

    try:
        yield pause
    finally:
        with contextlib.suppress(redis.RedisError):
            pubsub.close()


def _client() -> redis.Redis | None:
    """A client of the broker's Redis, one per process and URL; None when the broker is not Redis."""
    url = str(settings.CELERY_BROKER_URL)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = redis.Redis.from_url(
                url, socket_timeout=SOCKET_SECONDS, socket_connect_timeout=SOCKET_SECONDS
            )
            _clients[url] = client
        return client
