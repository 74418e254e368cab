"""The operator's dashboard (the admin's index page): one reading of queries.operations, and the warnings an
operator should act on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from queries.operations import (
    BeatTick,
    CustomerSlots,
    RecentRuns,
    WorkersAnswer,
    beat_last_tick,
    queue_depth,
    recent_runs,
    slots_by_customer,
    workers_ping,
)

RECENT_HOURS = 24


@dataclass(frozen=True)
class SlotsRow:
    """One customer's line: its slots in use (running or queued) against its limit."""

    key: str
    name: str
    in_use: int
    running: int
    queued: int
    limit: int
    percent: int  # of the limit in use, at most 100 (a limit lowered below the use shows full)

    @classmethod
    def of(cls, slots: CustomerSlots) -> SlotsRow:
        percent = 100 if slots.limit <= 0 else min(100, round(100 * slots.in_use / slots.limit))
        return cls(
            slots.key,
            slots.name,
            slots.in_use,
            slots.running,
            slots.in_use - slots.running,
            slots.limit,
            percent,
        )


@dataclass(frozen=True)
class Dashboard:
    now: datetime
    slots: list[SlotsRow]
    queued: int
    running: int
    workers: WorkersAnswer
    beat: BeatTick | None
    recent: RecentRuns
    warnings: list[str] = field(default_factory=list)

    @property
    def beat_age_seconds(self) -> int | None:
        return None if self.beat is None else max(0, int((self.now - self.beat.at).total_seconds()))

    @property
    def beat_late(self) -> bool:
        return self.beat is None or self.beat.late(self.now)


def dashboard_read(
    *, now: datetime | None = None, ping: Callable[[], WorkersAnswer] = workers_ping
) -> Dashboard:
    """Everything the dashboard shows, read once. `ping` asks the workers (it waits up to a second)."""
    now = now or timezone.now()
    slots = slots_by_customer(now=now)
    queued = queue_depth(now=now)
    workers = ping()
    beat = beat_last_tick()
    return Dashboard(
        now=now,
        slots=[SlotsRow.of(row) for row in slots],
        queued=queued,
        running=sum(row.running for row in slots),
        workers=workers,
        beat=beat,
        recent=recent_runs(hours=RECENT_HOURS, now=now),
        warnings=dashboard_warnings(queued=queued, workers=workers, beat=beat, now=now),
    )


def dashboard_warnings(
    *, queued: int, workers: WorkersAnswer, beat: BeatTick | None, now: datetime
) -> list[str]:
    """What needs an operator: queries that nothing will run, a broker that does not answer, a silent beat."""
    warnings = []
    if workers.error:
        warnings.append(f"Workers could not be asked: {workers.error}.")
    if queued and not workers.names:
        plural = "query is" if queued == 1 else "queries are"
        warnings.append(
            f"{queued} {plural} queued and no worker answers: start one (celery -A insights worker)."
        )
    if beat is None:
        warnings.append(
            "Beat has recorded no tick: without it the reaper, retention and the sweep do not run "
            "(start exactly one: celery -A insights beat)."
        )
    elif beat.late(now):
        age = int((now - beat.at).total_seconds())
        warnings.append(
            f"Beat's last tick was {age} s ago, though it meant to tick again after {beat.next_in:.0f} s: "
            "is it running?"
        )
    return warnings
