"""Celery beat's scheduler, which also records each tick in the shared cache so the admin's dashboard can tell
an operator whether beat (and with it the reaper, retention and the sweep) is alive.

Beat holds no connection an operator can probe: the only sign of life is that it keeps ticking. The cache is
the one store every process shares on both shapes (a directory on the embedded shape, Redis in production),
so the tick goes there. Chosen by CELERY_BEAT_SCHEDULER in settings.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.beat import PersistentScheduler
from django.core.cache import cache

logger = logging.getLogger(__name__)

BEAT_TICK_KEY = "insights:beat:tick"


def beat_tick_record(*, next_in: float, at: float | None = None) -> None:
    """Store when beat last ticked and how long it means to sleep before the next tick. A cache that does not
    answer is logged, never raised: beat must go on scheduling the upkeep without it."""
    try:
        cache.set(BEAT_TICK_KEY, {"at": time.time() if at is None else at, "next_in": next_in}, timeout=None)
    except Exception as error:  # the cache's own errors differ by backend (OSError, redis errors)
        logger.warning("beat: the tick could not be recorded in the cache: %s", error)


def beat_tick_read() -> dict[str, Any] | None:
    """The last recorded tick ({"at": epoch seconds, "next_in": seconds}), or None: never recorded, or the
    cache does not answer (logged)."""
    try:
        value = cache.get(BEAT_TICK_KEY)
    except Exception as error:
        logger.warning("dashboard: beat's tick could not be read from the cache: %s", error)
        return None
    return value if isinstance(value, dict) else None


class TickRecordingScheduler(PersistentScheduler):
    """Celery's default scheduler (its schedule file in CELERY_BEAT_SCHEDULE_FILENAME), plus a record of
    every tick."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        next_in = float(super().tick(*args, **kwargs))
        beat_tick_record(next_in=next_in)
        return next_in
