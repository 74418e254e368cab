"""A query's end published on the broker's Redis wakes a waiting POST (queries.end_signals), against a real Redis;
without Redis there is nothing to listen to and the wait reads the status on a schedule."""

from __future__ import annotations

import threading

from queries.end_signals import query_end_listener, query_end_publish


def test_a_published_end_wakes_the_listener_of_that_query_only(settings, redis):
    settings.CELERY_BROKER_URL = redis.url
    with query_end_listener([7, 8]) as pause:
        assert pause is not None
        assert pause(0.05) is False  # nothing published yet (the subscription's own answer is skipped)
        query_end_publish(query_id=9)  # another query's end
        assert pause(0.2) is False
        threading.Timer(0.1, query_end_publish, kwargs={"query_id": 8}).start()
        assert pause(60) is True  # woken by the end, long before the minute


def test_without_redis_there_is_nothing_to_listen_to(settings):
    settings.CELERY_BROKER_URL = "filesystem://"
    query_end_publish(query_id=1)  # a no-op, never an error
    with query_end_listener([1]) as pause:
        assert pause is None


def test_a_redis_that_does_not_answer_is_no_error(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    query_end_publish(query_id=1)
    with query_end_listener([1]) as pause:
        assert pause is None
