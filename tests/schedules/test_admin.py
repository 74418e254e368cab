"""The operators' console for schedules: per customer, with next and last run and failures; pause, resume and
run now."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from schedules.models import RunState, Schedule, ScheduleRun
from schedules.services import schedule_create

pytestmark = pytest.mark.django_db

LIST = "/admin/schedules/schedule/"
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=ZoneInfo("Europe/Helsinki"))
BODY = {
    "query": {"data": {"CallEvent": {"fields": ["Ani"]}}},
    "window": "previous_day",
    "every": "day",
    "at": "02:00",
    "timezone": "Europe/Helsinki",
    "description": "Daily calls",
}


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


def test_the_list_shows_each_customers_schedules_with_next_and_last_run_and_failures(
    admin_client, customer_factory, sent_tasks
):
    acme, globex = customer_factory("acme", max_concurrent_queries=5), customer_factory("globex")
    ran = schedule_create(customer=acme, body=BODY)
    admin_client.post(LIST, {"action": "run_now", "_selected_action": [ran.pk]})
    failing = schedule_create(customer=globex, body={**BODY, "description": "Weekly", "every": "week"})
    Schedule.objects.filter(pk=failing.pk).update(consecutive_failures=2)
    page = admin_client.get(LIST).content.decode()
    for text in (
        "Daily calls",
        "every day at 02:00 Europe/Helsinki",
        "2026-06-10 23:00:00",
        "submitted",
        "Weekly",
    ):
        assert text in page, text
    assert '<td class="field-consecutive_failures">2</td>' in page
    only_acme = admin_client.get(f"{LIST}?customer__id__exact={acme.pk}").content.decode()
    assert "Daily calls" in only_acme and "Weekly" not in only_acme
    detail = admin_client.get(f"{LIST}{ran.pk}/change/").content.decode()
    assert "Runs (latest first)" in detail and "Submitted" in detail


def test_pause_resume_and_run_now_actions(admin_client, customer_factory, sent_tasks):
    schedule = schedule_create(customer=customer_factory("acme", max_concurrent_queries=5), body=BODY)
    admin_client.post(LIST, {"action": "pause_schedules", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert schedule.paused and schedule.paused_reason == "Paused by an operator (admin)."
    response = admin_client.post(LIST, {"action": "run_now", "_selected_action": [schedule.pk]}, follow=True)
    assert "The schedule is paused: resume it first." in response.content.decode()
    assert not ScheduleRun.objects.exists()
    admin_client.post(LIST, {"action": "resume_schedules", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert not schedule.paused and schedule.next_run_at == datetime(
        2026, 6, 10, 23, 0, tzinfo=ZoneInfo("UTC")
    )
    response = admin_client.post(LIST, {"action": "run_now", "_selected_action": [schedule.pk]}, follow=True)
    run = ScheduleRun.objects.get(schedule=schedule)
    assert run.state == RunState.SUBMITTED and run.manual and run.query is not None
    assert f"running as query {run.query.guid}" in response.content.decode()


def test_schedules_are_not_added_or_edited_in_the_console(admin_client, customer_factory):
    schedule = schedule_create(customer=customer_factory("acme"), body=BODY)
    assert admin_client.get(f"{LIST}add/").status_code == 403
    page = admin_client.get(f"{LIST}{schedule.pk}/change/").content.decode()
    assert 'name="_save"' not in page


def test_an_operator_deletes_a_schedule_as_the_customer_would_and_its_exports_keep_its_id(
    admin_client, customer_factory, sent_tasks
):
    """Django's own delete (the bulk action, the page's button) would remove the row with its runs, and the
    exports would lose their schedule_id: it is not offered; the console's delete is the customer's DELETE."""
    schedule = schedule_create(customer=customer_factory("acme", max_concurrent_queries=5), body=BODY)
    admin_client.post(LIST, {"action": "run_now", "_selected_action": [schedule.pk]})
    export = ScheduleRun.objects.get(schedule=schedule).query
    assert admin_client.get(f"{LIST}{schedule.pk}/delete/").status_code == 403
    listing = admin_client.get(LIST).content.decode()
    assert 'value="delete_selected"' not in listing and 'value="delete_schedules"' in listing

    response = admin_client.post(
        LIST, {"action": "delete_schedules", "_selected_action": [schedule.pk]}, follow=True
    )
    assert "Deleted 1 schedule(s)." in response.content.decode()
    schedule.refresh_from_db()
    assert schedule.deleted_at is not None and schedule.paused
    assert schedule.paused_reason == "Deleted by an operator (admin)."
    assert export is not None and ScheduleRun.objects.get(query=export).schedule_id == schedule.pk
    assert "deleted" in admin_client.get(LIST).content.decode()


def test_actions_are_offered_by_the_operators_permissions(client, django_user_model, customer_factory):
    from django.contrib.auth.models import Permission

    schedule_create(customer=customer_factory("acme"), body=BODY)  # a list with no rows offers no action
    viewer = django_user_model.objects.create_user("viewer", password="pw-123456789", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_schedule"))
    client.force_login(viewer)
    listing = client.get(LIST).content.decode()
    assert "Daily calls" in listing and 'value="pause_schedules"' not in listing
    assert 'value="delete_schedules"' not in listing
    viewer.user_permissions.add(Permission.objects.get(codename="change_schedule"))
    viewer = django_user_model.objects.get(pk=viewer.pk)  # permissions are cached per user object
    client.force_login(viewer)
    listing = client.get(LIST).content.decode()
    for action in ("pause_schedules", "resume_schedules", "run_now"):
        assert f'value="{action}"' in listing, action
    assert 'value="delete_schedules"' not in listing
    viewer.user_permissions.add(Permission.objects.get(codename="delete_schedule"))
    viewer = django_user_model.objects.get(pk=viewer.pk)
    client.force_login(viewer)
    assert 'value="delete_schedules"' in client.get(LIST).content.decode()
