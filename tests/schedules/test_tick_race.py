"""Two beat ticks at once, as two processes on a real PostgreSQL: one run per due time, one query.

The test holds the schedule's row lock while both ticks start, waits until PostgreSQL shows both blocked on it,
then lets go: the two claims meet at the same row at the same moment, not one after the other by luck."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psycopg

from tests.service import ROOT, TEST_SECRETS_KEY

SETUP = """
from datetime import timedelta
from django.utils import timezone
from insights.models import Customer
from schedules.models import Schedule
from schedules.services import schedule_create
customer = Customer.objects.create(key="acme", name="Acme", max_concurrent_queries=10)
body = {"query": {"data": {"CallEvent": {"fields": ["Ani"]}}}, "window": {"last": "PT1H"}, "every": "hour"}
schedule = schedule_create(customer=customer, body=body)
due = timezone.now().replace(minute=0, second=0, microsecond=0)
Schedule.objects.filter(pk=schedule.pk).update(next_run_at=due)
print(schedule.pk)
"""
TICK = "from schedules.runs import schedules_tick; print(schedules_tick())"
CHECK = """
import json
from queries.models import QueryRequest
from schedules.models import ScheduleRun
runs = list(ScheduleRun.objects.values_list("due_at", "state", "query_id"))
print(json.dumps({"runs": len(runs), "states": [r[1] for r in runs], "queries": QueryRequest.objects.count()}))
"""


def test_two_ticks_racing_for_one_due_time_make_one_run_and_one_query(postgres, tmp_path):
    database_url = postgres.create_database("schedules_race")
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "insights.settings",
        "INSIGHTS_VAR_DIR": str(tmp_path),
        "DATABASE_URL": database_url,
        "INSIGHTS_SECRETS_KEY": TEST_SECRETS_KEY,
        "LOG_LEVEL": "WARNING",
    }

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    manage("migrate", "--noinput")
    schedule_id = int(manage("shell", "-c", SETUP).strip().splitlines()[-1])
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT 1 FROM schedules_schedule WHERE id = %s FOR UPDATE", [schedule_id])
        ticks = [
            subprocess.Popen(
                [sys.executable, "manage.py", "shell", "-c", TICK],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        _wait_for_blocked(database_url, ticks, count=2)
        holder.rollback()  # both ticks go at once
        outputs = [tick.communicate(timeout=120) for tick in ticks]
    assert all(tick.returncode == 0 for tick in ticks), [err[-2000:] for _, err in outputs]
    state = json.loads(manage("shell", "-c", CHECK).strip().splitlines()[-1])
    assert state == {"runs": 1, "states": ["submitted"], "queries": 1}
    reports = " ".join(out for out, _ in outputs)
    assert "claimed=1" in reports and "claimed=0" in reports, reports


def _wait_for_blocked(database_url: str, ticks: list[subprocess.Popen[str]], *, count: int) -> None:
    """Until `count` sessions wait for a lock (the ticks, on the held row); fails if a tick ends first."""
    deadline = time.monotonic() + 120
    with psycopg.connect(database_url, autocommit=True) as observer:
        while time.monotonic() < deadline:
            waiting = observer.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting is not None and waiting[0] >= count:
                return
            ended = [tick for tick in ticks if tick.poll() is not None]
            assert not ended, [tick.communicate()[1][-2000:] for tick in ended]
            time.sleep(0.05)
    raise AssertionError("the ticks never both waited for the schedule's lock within 120 s")
