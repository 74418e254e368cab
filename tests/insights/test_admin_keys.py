"""The admin for customers and access: adding an API key shows it once; keys and tokens can be revoked;
no page shows a secret or its digest."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import path

from insights.models import AccessToken, ApiKey, ApiUser, Customer
from insights.services import (
    access_token_issue,
    api_key_create,
    api_user_link,
    credential_authenticate,
    customer_create,
)

urlpatterns = [path("admin/", admin.site.urls)]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

RAW_KEY = re.compile(r"ik_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def operator(client: Client) -> Client:
    client.force_login(User.objects.create_superuser(username="operator", password=None))
    return client


@pytest.fixture
def customer() -> Customer:
    return customer_create(key="acme", name="Acme Corp")


def page(client: Client, url: str, **kwargs) -> str:
    response = client.get(url, **kwargs)
    assert response.status_code == 200, url
    return response.content.decode()


def test_adding_a_key_shows_it_once(operator: Client, customer: Customer) -> None:
    response = operator.post(
        "/admin/insights/apikey/add/", {"customer": customer.pk, "name": "reporting"}, follow=True
    )
    assert response.status_code == 200
    shown = RAW_KEY.findall(response.content.decode())
    assert len(shown) == 1
    raw = shown[0]
    api_key = ApiKey.objects.get()
    assert (api_key.name, api_key.customer) == ("reporting", customer)
    assert api_key.hashed == hashlib.sha256(raw.encode()).hexdigest()
    assert credential_authenticate(raw) == customer

    secret = raw.rsplit("_", 1)[1]
    for url in (
        "/admin/insights/apikey/",
        f"/admin/insights/apikey/{api_key.pk}/change/",
        f"/admin/insights/customer/{customer.pk}/change/",
        "/admin/insights/apikey/add/",
    ):
        content = page(operator, url)
        assert secret not in content, url
        assert api_key.hashed not in content, url
    assert api_key.display_prefix in page(operator, "/admin/insights/apikey/")


def test_adding_a_key_needs_a_customer_and_a_name(operator: Client, customer: Customer) -> None:
    response = operator.post("/admin/insights/apikey/add/", {"customer": customer.pk, "name": ""})
    assert response.status_code == 200  # the form again, with its errors
    assert not ApiKey.objects.exists()
    assert not RAW_KEY.search(response.content.decode())


def test_editing_a_key_changes_only_its_name(operator: Client, customer: Customer) -> None:
    api_key, raw = api_key_create(customer=customer, name="old")
    other = customer_create(key="globex", name="Globex")
    url = f"/admin/insights/apikey/{api_key.pk}/change/"
    response = operator.post(url, {"name": "new", "customer": other.pk})
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert (api_key.name, api_key.customer) == ("new", customer)
    assert credential_authenticate(raw) == customer


def test_revoke_action(operator: Client, customer: Customer) -> None:
    kept, kept_raw = api_key_create(customer=customer, name="kept")
    revoked, revoked_raw = api_key_create(customer=customer, name="revoked")
    response = operator.post(
        "/admin/insights/apikey/", {"action": "revoke", "_selected_action": [revoked.pk]}, follow=True
    )
    assert "Revoked 1 API key(s)." in response.content.decode()
    assert credential_authenticate(revoked_raw) is None
    assert credential_authenticate(kept_raw) == customer
    assert ApiKey.objects.get(pk=kept.pk).revoked_at is None


def test_customer_pages(operator: Client, customer: Customer) -> None:
    api_key_create(customer=customer, name="reporting")
    assert "Acme Corp" in page(operator, "/admin/insights/customer/", data={"q": "acme"})
    content = page(operator, f"/admin/insights/customer/{customer.pk}/change/")
    assert "reporting" in content
    assert 'name="key"' not in content  # the key is read-only once created


def test_customer_add(operator: Client) -> None:
    response = operator.post(
        "/admin/insights/customer/add/",
        {
            "key": "globex",
            "name": "Globex",
            "max_concurrent_queries": 4,
            "max_window_days": 31,
            "max_bytes_per_query": 10**9,
            "retention_days": 7,
            "is_active": "on",
            **{
                f"{prefix}-{field}": 0
                for prefix in ("api_users", "api_keys")
                for field in ("TOTAL_FORMS", "INITIAL_FORMS")
            },
        },
    )
    assert response.status_code == 302
    assert Customer.objects.get(key="globex").max_concurrent_queries == 4


def test_token_pages_are_read_only_and_revocable(operator: Client, customer: Customer) -> None:
    user = User.objects.get(username="operator")
    api_user_link(user=user, customer=customer)
    token, raw = access_token_issue(user=user)
    content = page(operator, "/admin/insights/accesstoken/")
    assert token.display_prefix in content
    assert token.hashed not in content and raw.rsplit("_", 1)[1] not in content
    assert token.hashed not in page(operator, f"/admin/insights/accesstoken/{token.pk}/change/")
    assert operator.get("/admin/insights/accesstoken/add/").status_code == 403

    operator.post("/admin/insights/accesstoken/", {"action": "revoke", "_selected_action": [token.pk]})
    assert credential_authenticate(raw) is None


def test_api_user_can_be_linked_in_the_admin(operator: Client, customer: Customer) -> None:
    user = User.objects.create_user(username="alice")
    response = operator.post("/admin/insights/apiuser/add/", {"user": user.pk, "customer": customer.pk})
    assert response.status_code == 302
    assert ApiUser.objects.get(user=user).customer == customer
    assert "alice" in page(operator, "/admin/insights/apiuser/")


def test_admin_requires_staff(client: Client, customer: Customer) -> None:
    response = client.get("/admin/insights/apikey/add/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert not AccessToken.objects.exists()
