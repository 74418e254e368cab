# Schedules and their runs (schedules.models).

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("insights", "0002_destinations"),
        ("queries", "0007_query_slices"),  # QueryRequest is all a run needs
    ]

    operations = [
        migrations.CreateModel(
            name="Schedule",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "query",
                    models.TextField(
                        help_text="The query body without timestamp (JSON, in the customer's key order)."
                    ),
                ),
                (
                    "window",
                    models.CharField(
                        help_text="previous_hour, previous_day, previous_week, previous_month, or last.",
                        max_length=16,
                    ),
                ),
                (
                    "window_last",
                    models.CharField(
                        blank=True, help_text="The ISO 8601 duration of a `last` window.", max_length=64
                    ),
                ),
                ("every", models.CharField(help_text="hour, day, week or month.", max_length=8)),
                (
                    "at",
                    models.CharField(
                        default="00:00", help_text="Local time HH:MM (hourly: 00:MM).", max_length=5
                    ),
                ),
                (
                    "timezone",
                    models.CharField(
                        default="UTC", help_text="IANA time zone of `at` and the window.", max_length=64
                    ),
                ),
                (
                    "output",
                    models.JSONField(
                        blank=True, default=dict, help_text="The export's output options, as given."
                    ),
                ),
                ("description", models.TextField(blank=True, max_length=500)),
                ("filename", models.CharField(blank=True, max_length=100)),
                (
                    "author",
                    models.CharField(
                        blank=True, help_text="The API key's or the user's name.", max_length=150
                    ),
                ),
                ("paused", models.BooleanField(default=False)),
                (
                    "paused_reason",
                    models.TextField(
                        blank=True, help_text="Why it is paused (by whom, or after which failures)."
                    ),
                ),
                ("paused_at", models.DateTimeField(blank=True, null=True)),
                ("consecutive_failures", models.PositiveIntegerField(default=0)),
                ("next_run_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("deleted_at", models.DateTimeField(blank=True, null=True)),
                (
                    "customer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="schedules",
                        to="insights.customer",
                    ),
                ),
                (
                    "destination",
                    models.ForeignKey(
                        blank=True,
                        help_text="Where its exports go; empty: the customer's default destination.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="schedules",
                        to="insights.destination",
                    ),
                ),
            ],
            options={
                "ordering": ["customer", "pk"],
            },
        ),
        migrations.CreateModel(
            name="ScheduleRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "due_at",
                    models.DateTimeField(
                        help_text="The due time (UTC); a run now's is when it was asked for."
                    ),
                ),
                ("manual", models.BooleanField(default=False, help_text="Asked for (run now), not due.")),
                ("window_start", models.DateTimeField()),
                ("window_end", models.DateTimeField()),
                (
                    "body",
                    models.TextField(
                        help_text="The query body sent, window filled in (JSON, the customer's key order)."
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("waiting", "Waiting"),
                            ("submitted", "Submitted"),
                            ("completed", "Completed"),
                            ("failed", "Failed"),
                            ("skipped", "Skipped"),
                        ],
                        default="waiting",
                        max_length=16,
                    ),
                ),
                (
                    "attempts",
                    models.PositiveIntegerField(default=0, help_text="Times its query was asked for."),
                ),
                ("next_attempt_at", models.DateTimeField(blank=True, null=True)),
                ("message", models.TextField(blank=True, help_text="Why it waits, failed or was skipped.")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "query",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="schedule_run",
                        to="queries.queryrequest",
                    ),
                ),
                (
                    "schedule",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="runs",
                        to="schedules.schedule",
                    ),
                ),
            ],
            options={
                "ordering": ["-due_at"],
            },
        ),
        migrations.AddIndex(
            model_name="schedule",
            index=models.Index(fields=["paused", "next_run_at"], name="schedule_due"),
        ),
        migrations.AddIndex(
            model_name="schedulerun",
            index=models.Index(fields=["state", "next_attempt_at"], name="schedule_run_state"),
        ),
        migrations.AddConstraint(
            model_name="schedulerun",
            constraint=models.UniqueConstraint(fields=("schedule", "due_at"), name="schedule_run_once"),
        ),
    ]
