"""Bearer authentication (API keys and access tokens) and POST /_rest/v4/authenticate, through HTTP."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import path
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from insights.apis import AuthenticateApi
from insights.authentication import RecentCredentials
from insights.models import AccessToken, ApiKey, Customer
from insights.services import (
    ACCESS_TOKEN_TTL,
    access_token_issue,
    access_token_revoke,
    api_key_create,
    api_key_revoke,
    api_user_link,
    credential_resolve,
    customer_create,
)


class WhoAmIApi(APIView):
    """A tiny view behind the project's default authentication and permission classes."""

    def get(self, request: Request) -> Response:
        return Response({"customer": request.auth.key, "user": str(request.user)})


urlpatterns = [
    path("whoami", WhoAmIApi.as_view()),
    path("_rest/v4/authenticate", AuthenticateApi.as_view()),
]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

UNAUTHORIZED = {"code": 401, "error": "Unauthorized"}
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def customer() -> Customer:
    return customer_create(key="acme", name="Acme Corp")


@pytest.fixture
def api_key(customer: Customer) -> tuple[ApiKey, str]:
    return api_key_create(customer=customer, name="reporting")


def make_user(username: str, *, customer: Customer | None, permitted: bool = True, **extra) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, **extra)
    if permitted:
        user.user_permissions.add(
            Permission.objects.get(codename="use_api", content_type__app_label="insights")
        )
    if customer is not None:
        api_user_link(user=user, customer=customer)
    return user


@pytest.fixture
def api_user(customer: Customer) -> User:
    return make_user("alice", customer=customer)


def whoami(client: Client, authorization: str | None):
    headers = {} if authorization is None else {"Authorization": authorization}
    return client.get("/whoami", headers=headers)


def login(client: Client, body: object, content_type: str = "application/json"):
    return client.post("/_rest/v4/authenticate", body, content_type=content_type)


@pytest.fixture(autouse=True)
def no_credential_reuse(settings) -> None:
    """These tests change a credential and look at the very next request: per-process reuse is off here
    (its bound is tested on its own, below)."""
    settings.AUTH_CACHE_SECONDS = 0


# Refusals


def test_missing_header_is_401(client: Client) -> None:
    response = whoami(client, None)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Basic x", "Bearer a b", "", "Token abc", "bearer", "Bearer ik_", "Bearer it_x_y", "Bearer é"],
)
def test_malformed_header_is_401(client: Client, api_key: tuple[ApiKey, str], authorization: str) -> None:
    response = whoami(client, authorization)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_wrong_key_is_401(client: Client, api_key: tuple[ApiKey, str]) -> None:
    _, raw = api_key
    tampered = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    response = whoami(client, f"Bearer {tampered}")
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_revoked_api_key_is_401(client: Client, api_key: tuple[ApiKey, str]) -> None:
    row, raw = api_key
    assert whoami(client, f"Bearer {raw}").status_code == 200
    api_key_revoke(api_key=row)
    response = whoami(client, f"Bearer {raw}")
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_expired_token_is_401(client: Client, api_user: User) -> None:
    token, raw = access_token_issue(user=api_user)
    assert whoami(client, f"Bearer {raw}").status_code == 200
    AccessToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = whoami(client, f"Bearer {raw}")
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_revoked_token_is_401(client: Client, api_user: User) -> None:
    token, raw = access_token_issue(user=api_user)
    access_token_revoke(token=token)
    response = whoami(client, f"Bearer {raw}")
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_inactive_customer_refuses_keys_and_tokens(
    client: Client, customer: Customer, api_key: tuple[ApiKey, str], api_user: User
) -> None:
    _, key_raw = api_key
    _, token_raw = access_token_issue(user=api_user)
    Customer.objects.filter(pk=customer.pk).update(is_active=False)
    for raw in (key_raw, token_raw):
        response = whoami(client, f"Bearer {raw}")
        assert response.status_code == 401
        assert response.json() == UNAUTHORIZED


def test_deactivated_user_token_is_401(client: Client, api_user: User) -> None:
    _, raw = access_token_issue(user=api_user)
    User.objects.filter(pk=api_user.pk).update(is_active=False)
    assert whoami(client, f"Bearer {raw}").json() == UNAUTHORIZED


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    authorization=st.text(alphabet=st.characters(max_codepoint=255, exclude_categories=["Cs"]), max_size=80)
)
def test_any_unknown_header_is_exactly_401(client: Client, customer: Customer, authorization: str) -> None:
    response = whoami(client, authorization)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


# Acceptance


def test_valid_api_key_authenticates_its_customer(client: Client, api_key: tuple[ApiKey, str]) -> None:
    _, raw = api_key
    response = whoami(client, f"Bearer {raw}")
    assert response.status_code == 200
    assert response.json() == {"customer": "acme", "user": "API key 'reporting' of acme"}


def test_scheme_is_case_insensitive(client: Client, api_key: tuple[ApiKey, str]) -> None:
    _, raw = api_key
    assert whoami(client, f"bearer {raw}").json()["customer"] == "acme"


def test_valid_token_authenticates_user_and_customer(client: Client, api_user: User) -> None:
    _, raw = access_token_issue(user=api_user)
    response = whoami(client, f"Bearer {raw}")
    assert response.status_code == 200
    assert response.json() == {"customer": "acme", "user": "alice"}


def test_a_key_only_ever_reaches_its_own_customer(client: Client, api_key: tuple[ApiKey, str]) -> None:
    other = customer_create(key="globex", name="Globex")
    _, other_raw = api_key_create(customer=other, name="x")
    _, raw = api_key
    assert whoami(client, f"Bearer {raw}").json()["customer"] == "acme"
    assert whoami(client, f"Bearer {other_raw}").json()["customer"] == "globex"


def test_resolving_a_credential_is_one_query(
    django_assert_num_queries, api_key: tuple[ApiKey, str], api_user: User
) -> None:
    row, key_raw = api_key
    ApiKey.objects.filter(pk=row.pk).update(last_used_at=timezone.now())  # fresh: no write due
    _, token_raw = access_token_issue(user=api_user)
    with django_assert_num_queries(1):
        assert credential_resolve(key_raw) is not None
    with django_assert_num_queries(1):
        assert credential_resolve(token_raw) is not None
    with django_assert_num_queries(0):
        assert credential_resolve("not-a-credential") is None


def test_last_used_is_written_at_most_once_a_minute(client: Client, api_key: tuple[ApiKey, str]) -> None:
    row, raw = api_key
    assert row.last_used_at is None
    whoami(client, f"Bearer {raw}")
    row.refresh_from_db()
    assert row.last_used_at is not None

    recent = timezone.now() - timedelta(seconds=10)
    ApiKey.objects.filter(pk=row.pk).update(last_used_at=recent)
    whoami(client, f"Bearer {raw}")
    row.refresh_from_db()
    assert row.last_used_at == recent

    stale = timezone.now() - timedelta(minutes=2)
    ApiKey.objects.filter(pk=row.pk).update(last_used_at=stale)
    whoami(client, f"Bearer {raw}")
    row.refresh_from_db()
    assert row.last_used_at is not None and row.last_used_at > stale


def test_credentials_are_not_stored_in_plaintext(
    client: Client, api_key: tuple[ApiKey, str], api_user
) -> None:
    _, key_raw = api_key
    token_raw = login(client, {"username": "alice", "password": PASSWORD}).json()["token"]
    assert whoami(client, f"Bearer {key_raw}").status_code == 200
    assert whoami(client, f"Bearer {token_raw}").status_code == 200
    secrets = [key_raw, token_raw, *(raw.rsplit("_", 1)[1] for raw in (key_raw, token_raw))]

    for model in apps.get_models():
        columns = [field.attname for field in model._meta.concrete_fields]
        for row in model._base_manager.values_list(*columns):
            for value in row:
                assert not any(secret in str(value) for secret in secrets), (model, value)
    assert ApiKey.objects.filter(hashed=hashlib.sha256(key_raw.encode()).hexdigest()).exists()
    assert AccessToken.objects.filter(hashed=hashlib.sha256(token_raw.encode()).hexdigest()).exists()


# POST /_rest/v4/authenticate


def test_authenticate_returns_a_24h_token(client: Client, api_user: User) -> None:
    response = login(client, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expires_at"}
    assert body["token"].startswith("it_")
    expires_at = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    token = AccessToken.objects.get(user=api_user)
    assert expires_at == token.expires_at.replace(microsecond=0)
    assert token.expires_at - token.created_at == ACCESS_TOKEN_TTL
    assert whoami(client, f"Bearer {body['token']}").json() == {"customer": "acme", "user": "alice"}


def test_superuser_needs_no_explicit_permission(client: Client, customer: Customer) -> None:
    make_user("root", customer=customer, permitted=False, is_superuser=True)
    assert login(client, {"username": "root", "password": PASSWORD}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice", "password": "wrong"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "alice", "password": PASSWORD + " "},
    ],
)
def test_authenticate_bad_credentials_is_401(client: Client, api_user: User, body: dict[str, str]) -> None:
    response = login(client, body)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert not AccessToken.objects.exists()


def test_authenticate_without_permission_is_401(client: Client, customer: Customer) -> None:
    make_user("bob", customer=customer, permitted=False)
    response = login(client, {"username": "bob", "password": PASSWORD})
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_authenticate_without_customer_link_is_401(client: Client) -> None:
    make_user("carol", customer=None)
    response = login(client, {"username": "carol", "password": PASSWORD})
    assert response.json() == UNAUTHORIZED


def test_authenticate_inactive_user_or_customer_is_401(client: Client, customer: Customer) -> None:
    make_user("dave", customer=customer, is_active=False)
    assert login(client, {"username": "dave", "password": PASSWORD}).json() == UNAUTHORIZED
    make_user("erin", customer=customer)
    Customer.objects.filter(pk=customer.pk).update(is_active=False)
    assert login(client, {"username": "erin", "password": PASSWORD}).json() == UNAUTHORIZED


def test_authenticate_missing_field_is_400(client: Client) -> None:
    response = login(client, {"username": "alice"})
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": {"password": ["This field is required."]}}


@pytest.mark.parametrize("raw_body", ["{not json", "[]", '"alice"', ""])
def test_authenticate_malformed_body_is_400(client: Client, raw_body: str) -> None:
    response = login(client, raw_body)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 400 and body["message"]


def test_authenticate_other_methods_are_405(client: Client) -> None:
    response = client.get("/_rest/v4/authenticate")
    assert response.status_code == 405
    assert response.json()["code"] == 405


# Reuse of a resolved credential for AUTH_CACHE_SECONDS


def test_a_revoked_key_stops_working_once_its_reuse_lifetime_ends(
    settings, api_key: tuple[ApiKey, str]
) -> None:
    settings.AUTH_CACHE_SECONDS = 1
    now = [100.0]
    recent = RecentCredentials(clock=lambda: now[0])
    row, raw = api_key
    assert recent.resolve(raw) is not None
    api_key_revoke(api_key=row)
    now[0] += 0.9
    assert recent.resolve(raw) is not None, "reused within the lifetime, as documented"
    now[0] += 0.1
    assert recent.resolve(raw) is None, "looked up again after 1 s: the revocation holds"
    now[0] += 5
    assert recent.resolve(raw) is None


def test_unknown_credentials_are_never_reused(settings, api_key: tuple[ApiKey, str]) -> None:
    settings.AUTH_CACHE_SECONDS = 1
    recent = RecentCredentials(clock=lambda: 0.0)
    row, raw = api_key
    api_key_revoke(api_key=row)
    assert recent.resolve(raw) is None
    ApiKey.objects.filter(pk=row.pk).update(revoked_at=None)
    assert recent.resolve(raw) is not None, "a refusal is not remembered"


def test_reuse_is_bounded_in_entries(settings, customer: Customer) -> None:
    settings.AUTH_CACHE_SECONDS = 1
    recent = RecentCredentials(clock=lambda: 0.0)
    recent.MAX_ENTRIES = 3
    raws = [api_key_create(customer=customer, name=f"k{n}")[1] for n in range(5)]
    for raw in raws:
        assert recent.resolve(raw) is not None
    assert len(recent._entries) <= 3
