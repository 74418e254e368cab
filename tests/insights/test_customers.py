"""Customers and credential services, and the create_customer management command."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Permission, User
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from insights.models import AccessToken, ApiKey, Customer
from insights.services import (
    AccessDenied,
    access_token_delete_expired,
    access_token_issue,
    access_token_obtain,
    api_key_create,
    api_key_revoke,
    api_user_link,
    credential_authenticate,
    customer_create,
)

pytestmark = pytest.mark.django_db

RAW_KEY_PATTERN = r"^ik_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$"


def run_command(*args: str) -> list[str]:
    out = StringIO()
    call_command("create_customer", *args, stdout=out)
    return out.getvalue().splitlines()


# Customer


def test_customer_defaults(settings) -> None:
    settings.QUERY_MAX_WINDOW_DAYS = 12
    customer = customer_create(key="acme", name="Acme Corp")
    assert str(customer) == "acme"
    assert (customer.max_concurrent_queries, customer.max_window_days) == (2, 12)
    assert (customer.max_bytes_per_query, customer.retention_days, customer.is_active) == (10**12, 7, True)


@pytest.mark.parametrize("key", ["Not A Slug", "", "a/b", "x" * 65])
def test_customer_create_rejects_a_bad_key(key: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        customer_create(key=key, name="Acme")
    assert "key" in excinfo.value.message_dict
    assert not Customer.objects.exists()


def test_customer_create_rejects_a_taken_key() -> None:
    customer_create(key="acme", name="Acme")
    with pytest.raises(ValidationError):
        customer_create(key="acme", name="Other")


# API keys and tokens


def test_api_key_is_random_and_hashed() -> None:
    customer = customer_create(key="acme", name="Acme")
    first, first_raw = api_key_create(customer=customer, name="a")
    second, second_raw = api_key_create(customer=customer, name="b")
    assert first_raw != second_raw and first.hashed != second.hashed
    assert first_raw.startswith(f"ik_{first.prefix}_")
    assert first.display_prefix == f"ik_{first.prefix}…"
    assert first_raw not in (first.hashed, first.prefix)


def test_api_key_revoke_is_idempotent() -> None:
    customer = customer_create(key="acme", name="Acme")
    api_key, raw = api_key_create(customer=customer, name="a")
    api_key_revoke(api_key=api_key)
    first_revocation = ApiKey.objects.get(pk=api_key.pk).revoked_at
    assert first_revocation is not None
    api_key_revoke(api_key=ApiKey.objects.get(pk=api_key.pk))
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at == first_revocation
    assert credential_authenticate(raw) is None


def test_access_token_requires_permission_and_link(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    customer = customer_create(key="acme", name="Acme")
    user = User.objects.create_user(username="alice", password="pw")
    with pytest.raises(AccessDenied):
        access_token_issue(user=user)  # neither permission nor link
    api_user_link(user=user, customer=customer)
    with pytest.raises(AccessDenied):
        access_token_issue(user=User.objects.get(pk=user.pk))  # link, no permission
    user.user_permissions.add(Permission.objects.get(codename="use_api"))
    user = User.objects.get(pk=user.pk)  # drop the cached permissions
    token, raw = access_token_issue(user=user)
    assert (token.customer, token.user) == (customer, user)
    assert credential_authenticate(raw) == customer
    with pytest.raises(AccessDenied):
        access_token_obtain(username="alice", password="wrong")
    assert credential_authenticate(access_token_obtain(username="alice", password="pw")[1]) == customer


def test_api_user_link_moves_a_user_to_another_customer() -> None:
    acme = customer_create(key="acme", name="Acme")
    globex = customer_create(key="globex", name="Globex")
    user = User.objects.create_user(username="alice")
    api_user_link(user=user, customer=acme)
    assert api_user_link(user=user, customer=globex).customer == globex
    assert User.objects.get(pk=user.pk).api_user.customer == globex


def test_access_token_delete_expired_keeps_live_tokens() -> None:
    customer = customer_create(key="acme", name="Acme")
    user = User.objects.create_superuser(username="root", password=None)
    api_user_link(user=user, customer=customer)
    expired, _ = access_token_issue(user=user)
    live, live_raw = access_token_issue(user=user)
    AccessToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert access_token_delete_expired() == 1
    assert list(AccessToken.objects.values_list("pk", flat=True)) == [live.pk]
    assert credential_authenticate(live_raw) == customer


def test_beat_deletes_expired_tokens_hourly(settings) -> None:
    from insights.celery import app
    from insights.tasks import access_tokens_delete_expired_task

    (entry,) = [
        e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "insights.delete_expired_tokens"
    ]
    assert entry["schedule"] == 3600.0
    app.loader.import_default_modules()  # what a worker does: the task is registered under that name
    assert app.tasks["insights.delete_expired_tokens"].run == access_tokens_delete_expired_task.run


# create_customer


def test_command_creates_a_customer_with_a_slug_key() -> None:
    lines = run_command("Acme Corp", "--max-concurrent", "5")
    customer = Customer.objects.get()
    assert (customer.key, customer.name, customer.max_concurrent_queries) == ("acme-corp", "Acme Corp", 5)
    assert lines == ["Created customer 'acme-corp' (Acme Corp), max 5 concurrent queries."]
    assert not ApiKey.objects.exists()


def test_command_prints_the_api_key_last_and_once() -> None:
    lines = run_command("Acme Corp", "--key", "acme", "--api-key")
    raw = lines[-1]
    assert raw.strip() == raw
    assert re.match(RAW_KEY_PATTERN, raw)
    assert credential_authenticate(raw) == Customer.objects.get(key="acme")
    assert sum(raw in line for line in lines) == 1
    assert ApiKey.objects.get().name == "create_customer"


def test_command_reuses_an_existing_customer() -> None:
    customer_create(key="acme", name="Acme Corp", max_concurrent_queries=3)
    lines = run_command("Renamed", "--key", "acme", "--api-key", "--max-concurrent", "9")
    customer = Customer.objects.get()
    assert (customer.name, customer.max_concurrent_queries) == ("Acme Corp", 3)
    assert lines[0] == "Customer 'acme' exists (Acme Corp); reusing it unchanged."
    assert credential_authenticate(lines[-1]) == customer
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Acme", "--key", "Not A Slug"], "key:"),
        (
            ["Acme", "--max-concurrent", "0"],
            "max_concurrent_queries: Ensure this value is greater than or equal to 1",
        ),
        (["Acme", "--max-concurrent", "100000"], "max_concurrent_queries:"),
        (["Acme", "--max-concurrent", "two"], "invalid int value"),
        (["   "], "NAME must not be empty"),
        (["!!!"], "Cannot derive a key"),
    ],
)
def test_command_rejects_bad_input(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run_command(*args)
    assert not Customer.objects.exists()
