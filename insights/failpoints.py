"""Failpoints: named places where a test can make a real process pause, to land a fault (a SIGKILL, a
restart) at a moment no signal timing could hit, such as between placing a result's files and recording it.

Inert unless INSIGHTS_FAILPOINTS names one: `name=pause:SECONDS[,name=pause:SECONDS...]`. The process then
logs that it reached the failpoint and sleeps there. The idea is FoundationDB's buggify and TiKV's fail-rs,
reduced to the one action the tests need.
"""

from __future__ import annotations

import logging
import os
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


def failpoints_parse(spec: str) -> dict[str, float]:
    """`name=pause:SECONDS,...` -> {name: seconds}; ImproperlyConfigured on anything else."""
    points: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        verb, _, seconds = action.partition(":")
        try:
            if not name or verb != "pause":
                raise ValueError(item)
            points[name] = float(seconds)
        except ValueError:
            raise ImproperlyConfigured(f"INSIGHTS_FAILPOINTS: {item!r} is not name=pause:SECONDS") from None
    return points


def failpoint(name: str) -> None:
    """Pause here if the failpoint `name` is configured; otherwise do nothing."""
    seconds = settings.FAILPOINTS.get(name)
    if seconds is None:
        return
    logger.warning("failpoint %s reached in process %d: pausing %.1f s", name, os.getpid(), seconds)
    time.sleep(seconds)
