"""Compile once: the body becomes text (in the customer's key order), the run's plan is stored beside it
(compiled_sql goes in 0004), and queries get `enqueued_at` and the publication journal.

Queued or running queries are compiled here from their stored body, so a worker never compiles; one that no
longer validates ends Failed. Finished queries keep their SQL in a display-only plan (version 0).
"""

import json
from datetime import timedelta

from django.db import migrations, models
from django.utils import timezone

NOT_VALID = "The query is no longer valid and cannot run; submit it again."


def plans_build(apps, schema_editor):
    from queries.compiler import query_compile
    from queries.plan import plan_build
    from queries.validation import QueryValidationError, query_validate
    from queries.warehouse import warehouse_dialect

    query_request = apps.get_model("queries", "QueryRequest")
    for row in query_request.objects.select_related("customer").iterator():
        if row.status != "Pending":
            row.plan = json.dumps({"version": 0, "sql": row.compiled_sql})
            row.save(update_fields=["plan"])
            continue
        try:
            query = query_validate(
                json.loads(row.body), max_window=timedelta(days=row.customer.max_window_days)
            )
        except (QueryValidationError, ValueError):
            row.status, row.messages, row.finished_at = "Failed", [NOT_VALID], timezone.now()
            row.lease_expires_at = None
            row.save(update_fields=["status", "messages", "finished_at", "lease_expires_at"])
            continue
        statement = query_compile(query, customer_id=row.customer.key, dialect=warehouse_dialect())
        row.plan = plan_build(query, statement)
        row.save(update_fields=["plan"])


class Migration(migrations.Migration):
    dependencies = [("queries", "0002_destination")]

    operations = [
        migrations.AlterField(
            model_name="queryrequest",
            name="body",
            field=models.TextField(
                help_text="The request body as the customer sent it (JSON, in its own key order)."
            ),
        ),
        migrations.AddField(
            model_name="queryrequest",
            name="plan",
            field=models.TextField(
                blank=True,
                help_text="What a run executes, compiled once at POST (queries.plan): SQL, parameters, columns.",
            ),
        ),
        migrations.AddField(
            model_name="queryrequest",
            name="enqueued_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="queryrequest",
            name="publication",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.RunPython(plans_build, migrations.RunPython.noop),
    ]
