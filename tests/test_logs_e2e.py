"""The whole service's logs, on both shapes: gunicorn, a Celery worker and Celery beat at LOG_LEVEL=INFO, a
realistic session over HTTP (a wrong key, a bad body, a token from a password, the admin's login, a query
delivered locally and one delivered to S3 with presigned URLs), then every log file the processes wrote is read
back: one JSON object a line, the run's fields on the worker's lines about it, the request id on the web's,
a 4xx at INFO, and not one of the session's secrets anywhere."""

from __future__ import annotations

import http.cookiejar
import json
import re
import secrets
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from queries.dispatch import RUN_TASK
from queries.ingest import DEMO_CUSTOMER_KEYS
from tests.moto import MotoServer, moto_server
from tests.seed_requests import REQUEST_1
from tests.service import SHAPES, TEST_SECRETS_KEY, Service, service_running, shape_make

LOCAL_CUSTOMER, S3_CUSTOMER = DEMO_CUSTOMER_KEYS[0], DEMO_CUSTOMER_KEYS[1]
PROCESS_LOGS = ("web.log", "worker-0.log", "beat.log")


@dataclass
class Session:
    """What the session did, and every secret it used (each of which must appear in no log)."""

    service: Service
    guids: dict[str, str] = field(default_factory=dict)  # customer -> the guid of its query
    request_ids: dict[str, str] = field(default_factory=dict)  # what -> the X-Request-ID it was answered with
    secrets: dict[str, str] = field(default_factory=dict)  # what -> the secret

    def logs(self) -> dict[str, str]:
        """Every log file of the service, cut at its last complete line (a process may be mid-write)."""
        texts = {path.name: path.read_text() for path in sorted(self.service.var_dir.glob("*.log"))}
        return {name: text[: text.rfind("\n") + 1] for name, text in texts.items()}

    def records(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs()[name].splitlines() if line.strip()]


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module", params=SHAPES)
def session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, s3: MotoServer
) -> Iterator[Session]:
    var_dir = tmp_path_factory.mktemp(f"logs-{request.param}")
    with service_running(
        shape=shape_make(request.param, request, var_dir, "logs"),
        var_dir=var_dir,
        extra_env={"LOG_LEVEL": "INFO", "REAPER_INTERVAL_SECONDS": "2"},  # beat sends a task every 2 s
    ) as service:
        service.worker_start()
        service.beat_start()
        session = Session(service)
        _session_run(session, s3)
        yield session


def _session_run(session: Session, s3: MotoServer) -> None:
    service, found = session.service, session.secrets
    found["api key"] = service.customer_create(LOCAL_CUSTOMER)
    found["s3 customer's api key"] = service.customer_create(S3_CUSTOMER)
    found["s3 secret access key"] = f"s3-secret-{secrets.token_hex(12)}"
    config = s3.storage_config(s3.bucket_create("logs"), secret_access_key=found["s3 secret access key"])
    service.destination_create(S3_CUSTOMER, "bucket", config, default=True)
    found["api user's password"] = f"pw-{secrets.token_hex(12)}"
    found["admin's password"] = f"admin-{secrets.token_hex(12)}"
    _users_create(service, found["api user's password"], found["admin's password"])
    found["secrets key"] = service.env.get("INSIGHTS_SECRETS_KEY") or _embedded_secrets_key(service)
    found["wrong api key"] = f"wrong-{secrets.token_hex(12)}"
    found["wrong password"] = f"guess-{secrets.token_hex(12)}"

    _http_session(session)
    _admin_login(session)
    _wait_for(lambda: _run_ended_in_worker_log(session), "the runs' 'succeeded' lines in the worker's log")
    _wait_for(lambda: "Sending due task" in session.logs().get("beat.log", ""), "beat sending a task")


def _http_session(session: Session) -> None:
    service, found, ids = session.service, session.secrets, session.request_ids
    unauthorized = service.request("GET", "/_rest/v4/dwh/Q", key=found["wrong api key"])
    assert unauthorized.status == 401
    ids["401"] = unauthorized.headers["X-Request-ID"]
    bad = service.request("POST", "/_rest/v4/dwh/Q", key=found["api key"], body={"data": {}})
    assert bad.status == 400
    ids["400"] = bad.headers["X-Request-ID"]

    login = {"username": "ann", "password": found["wrong password"]}
    assert service.request("POST", "/_rest/v4/authenticate", body=login).status == 401
    login["password"] = found["api user's password"]
    authenticated = service.request("POST", "/_rest/v4/authenticate", body=login)
    assert authenticated.status == 200, authenticated.body
    found["token"] = authenticated.json()["token"]
    assert service.request("GET", "/_rest/v4/dwh/Q", key=found["token"]).status == 200

    for customer, key in ((LOCAL_CUSTOMER, found["api key"]), (S3_CUSTOMER, found["s3 customer's api key"])):
        submitted = service.request(
            "POST", "/_rest/v4/dwh/Q", key=key, body=REQUEST_1, headers={"X-Request-ID": f"e2e-{customer}"}
        )
        assert submitted.status == 201 and submitted.headers["X-Request-ID"] == f"e2e-{customer}"
        session.guids[customer] = guid = submitted.json()["id"]
        assert service.wait_terminal(guid, key)["status"] == "Completed"
    assert service.download_rows(session.guids[LOCAL_CUSTOMER], found["api key"])[0] == "FlowId"

    s3_key, s3_guid = found["s3 customer's api key"], session.guids[S3_CUSTOMER]
    listed = service.request("GET", f"/_rest/v4/dwh/Q/{s3_guid}", key=s3_key).json()
    found["presigned url signature"] = _signature(listed["files"][0]["url"])
    redirected = service.request("GET", f"/_rest/v4/dwh/Q/{s3_guid}/download", key=s3_key)
    assert redirected.status == 303
    found["redirect's signature"] = _signature(redirected.headers["Location"])


def _users_create(service: Service, api_password: str, admin_password: str) -> None:
    """What an operator does in the admin: an API user of the first customer, and a superuser."""
    service.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import Permission, User\n"
        "from insights.models import Customer\n"
        "from insights.services import api_user_link\n"
        f"user = User.objects.create_user('ann', password={api_password!r})\n"
        "user.user_permissions.add(Permission.objects.get(codename='use_api'))\n"
        f"api_user_link(user=user, customer=Customer.objects.get(key={LOCAL_CUSTOMER!r}))\n"
        f"User.objects.create_superuser('root', 'root@example.com', {admin_password!r})\n",
    )


def _admin_login(session: Session) -> None:
    """The admin's login form, a wrong password then the right one, as a browser sends them."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    url = session.service.base_url + "/admin/login/"
    for password, landed in ((session.secrets["wrong password"], "/admin/login/"), (None, "/admin/")):
        with opener.open(url, timeout=30) as page:
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode())
        assert token is not None
        form = {
            "username": "root",
            "password": password or session.secrets["admin's password"],
            "csrfmiddlewaretoken": token.group(1),
            "next": "/admin/",
        }
        with opener.open(url, data=urllib.parse.urlencode(form).encode(), timeout=30) as answer:
            assert answer.status == 200 and urllib.parse.urlsplit(answer.url).path == landed
    cookies = {cookie.name: cookie.value or "" for cookie in jar}
    session.secrets["admin's session cookie"], session.secrets["csrf cookie"] = (
        cookies["sessionid"],
        cookies["csrftoken"],
    )


def _embedded_secrets_key(service: Service) -> str:
    """The key the embedded shape generated on first use (the production shape is given TEST_SECRETS_KEY)."""
    return (service.var_dir / "secrets.key").read_text().strip()


def _signature(url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-Signature"][0]


def _run_ended_in_worker_log(session: Session) -> bool:
    lines = session.logs().get("worker-0.log", "").splitlines()
    return all(
        any(f'"guid": "{guid}"' in line and " succeeded in " in line for line in lines)
        for guid in session.guids.values()
    )


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.2)


# -- the checks ----------------------------------------------------------------------------------------------


def test_every_line_of_every_process_is_one_json_object(session: Session) -> None:
    logs = session.logs()
    assert set(PROCESS_LOGS) <= set(logs), sorted(logs)
    for name, text in logs.items():
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines, f"{name} is empty"
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"{name}:{number} is not JSON: {line[:300]!r}")
            assert isinstance(record, dict) and {"time", "level", "logger", "message"} <= set(record), line


def test_the_worker_s_lines_about_a_run_carry_its_guid_customer_and_attempt(session: Session) -> None:
    """Every line of a run, Celery's own "succeeded" line included. (Celery's "received" line comes from the
    worker's main process before any run is claimed: it carries the task id only.)"""
    records = session.records("worker-0.log")
    customers = {guid: customer for customer, guid in session.guids.items()}
    about_runs = [
        r
        for r in records
        if any(guid in r["message"] for guid in customers)
        or (r["logger"] == "celery.app.trace" and RUN_TASK in r["message"])
    ]
    for record in about_runs:
        assert record.get("guid") in customers, record
        assert (record["customer"], record["attempt"]) == (customers[record["guid"]], 1), record
    for guid in customers:
        mine = [r["message"] for r in about_runs if r["guid"] == guid]
        assert f"query {guid} attempt 1 started" in mine, mine
        assert any(m.startswith(f"Task {RUN_TASK}[") and " succeeded in " in m for m in mine), mine
    upkeep = [
        r for r in records if r["logger"] == "celery.app.trace" and "queries.reap_leases" in r["message"]
    ]
    assert upkeep and not any("guid" in r for r in upkeep)  # beat's tasks are about no run


def test_the_web_s_lines_about_a_request_carry_its_request_id(session: Session) -> None:
    records = session.records("web.log")
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    about_requests = access + [r for r in records if r["logger"].startswith("django")]
    assert all(r.get("request_id") for r in about_requests), [
        r for r in about_requests if "request_id" not in r
    ]
    for customer in session.guids:
        submit = [r for r in access if r["request_id"] == f"e2e-{customer}"]
        assert [(r["method"], r["path"], r["status"]) for r in submit] == [("POST", "/_rest/v4/dwh/Q", 201)]
    polls = [r for r in access if r["path"].endswith("/status")]
    assert polls and len({r["request_id"] for r in polls}) == len(polls)  # a new id for each request


@pytest.mark.parametrize(("status", "message"), [(401, "Unauthorized"), (400, "Bad Request")])
def test_a_client_error_is_one_info_line_from_django_and_one_from_gunicorn(
    session: Session, status: int, message: str
) -> None:
    request_id = session.request_ids[str(status)]
    lines = [r for r in session.records("web.log") if r.get("request_id") == request_id]
    assert sorted((r["logger"], r["level"]) for r in lines) == [
        ("django.request", "INFO"),
        ("gunicorn.access", "INFO"),
    ]
    django_line = next(r for r in lines if r["logger"] == "django.request")
    assert (django_line["status_code"], django_line["message"]) == (status, f"{message}: /_rest/v4/dwh/Q")


def test_a_clean_session_logs_no_error(session: Session) -> None:
    for name in PROCESS_LOGS:
        errors = [r for r in session.records(name) if r["level"] in ("ERROR", "CRITICAL")]
        assert errors == [], (name, errors)


def test_no_secret_of_the_session_appears_in_any_log(session: Session) -> None:
    found = session.secrets
    assert found["secrets key"] == (
        TEST_SECRETS_KEY
        if session.service.shape.name == "production"
        else _embedded_secrets_key(session.service)
    )
    assert all(len(secret) >= 16 for secret in found.values()), found
    logs = session.logs()
    for what, secret in found.items():
        for name, text in logs.items():
            assert secret not in text, f"the {what} appears in {name}"
    assert "Bearer" not in "".join(logs.values())  # no Authorization header, whatever it held


def test_no_process_warns_about_the_broker_s_url(session: Session) -> None:
    """kombu warned "No hostname was supplied" in every process on the embedded broker (`filesystem://`)."""
    for name in PROCESS_LOGS:
        kombu = [
            r for r in session.records(name) if r["logger"].startswith("kombu") and r["level"] == "WARNING"
        ]
        assert kombu == [], (name, kombu)
