"""Queries stored before compile-once (body as JSON, compiled_sql) migrate on both metadata databases: a
queued one gets the plan a worker runs, a finished one keeps its SQL for the admin, the body becomes text."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.service import ROOT, TEST_SECRETS_KEY

BEFORE = ("queries", "0002_destination")
BODY = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["Ani"]}},
}
SETUP = f"""
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
apps = MigrationExecutor(connection).loader.project_state({BEFORE!r}).apps
Customer, Query = apps.get_model("insights", "Customer"), apps.get_model("queries", "QueryRequest")
acme = Customer.objects.create(key="acme", name="Acme")
Query.objects.create(guid="a" * 32, customer=acme, body={BODY!r}, fingerprint="f" * 64, compiled_sql="SELECT 1")
Query.objects.create(guid="b" * 32, customer=acme, body={BODY!r}, fingerprint="f" * 64, compiled_sql="SELECT 2",
                     status="Completed")
Query.objects.create(guid="c" * 32, customer=acme, body={{"data": 1}}, fingerprint="f" * 64)
"""
CHECK = """
import json
from queries.models import QueryRequest
from queries.plan import plan_columns
rows = {q.guid[0]: q for q in QueryRequest.objects.all()}
print(json.dumps({
    "queued_columns": plan_columns(rows["a"].plan),
    "queued_body": rows["a"].body_json,
    "finished_plan": json.loads(rows["b"].plan),
    "invalid": [rows["c"].status, rows["c"].messages],
}))
"""


@pytest.mark.parametrize("metadata", ["sqlite", "postgresql"])
def test_stored_queries_get_their_plan(metadata, request, tmp_path):
    if metadata == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'insights.sqlite3'}"
    else:
        database_url = request.getfixturevalue("postgres").create_database("migrations_0003")
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "insights.settings",
        "INSIGHTS_VAR_DIR": str(tmp_path),
        "DATABASE_URL": database_url,
        "INSIGHTS_SECRETS_KEY": TEST_SECRETS_KEY,
    }

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    manage("migrate", *BEFORE)
    manage("migrate", "insights")
    manage("shell", "-c", SETUP)
    manage("migrate")
    state = json.loads(manage("shell", "-c", CHECK).strip().splitlines()[-1])
    assert state["queued_columns"] == ["Ani"]
    assert state["queued_body"] == BODY
    assert state["finished_plan"] == {"version": 0, "sql": "SELECT 2"}
    assert state["invalid"][0] == "Failed" and "submit it again" in state["invalid"][1][0]
