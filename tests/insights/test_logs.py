"""Structured logs, piece by piece: the JSON line, the bound fields (request id, query run), 4xx as INFO, the
request-id middleware through Django's test client, gunicorn's access line, and a real run's lines. The whole
service's logs are checked end to end in tests/test_logs_e2e.py."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery import signals
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from gunicorn.config import Config

from exports.errors import StorageError
from exports.storage.base import Publication
from exports.storage.local import LocalStorage
from insights.gunicorn_logger import GunicornLogger
from insights.logs import (
    ClientErrorsAsInfo,
    ContextFilter,
    JsonLineFormatter,
    PlainFormatter,
    log_context_clear,
    log_context_set,
    log_format_parse,
    log_level_parse,
    logging_config,
)
from insights.request_ids import request_id_from

GENERATED = re.compile(r"[0-9a-f]{16}")


class _Lines(logging.Handler):
    """What the service's one handler writes (same formatter and filters), kept in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(JsonLineFormatter())
        self.addFilter(ContextFilter())
        self.addFilter(ClientErrorsAsInfo())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def records(self, logger: str | None = None) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.lines]
        return [r for r in parsed if logger is None or r["logger"] == logger]


@pytest.fixture()
def lines() -> Iterator[_Lines]:
    """A handler on the root, at INFO whatever LOG_LEVEL this run has; no fields bound before or after."""
    handler, root, django_logger = _Lines(), logging.getLogger(), logging.getLogger("django")
    levels = root.level, django_logger.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    django_logger.setLevel(logging.INFO)
    log_context_clear()
    yield handler
    log_context_clear()
    root.removeHandler(handler)
    root.setLevel(levels[0])
    django_logger.setLevel(levels[1])


# -- the line ----------------------------------------------------------------------------------------------


def test_a_record_is_one_json_line_with_time_level_logger_and_message(lines: _Lines) -> None:
    log = logging.getLogger("insights.test")
    log.info("hello %s", "world", extra={"rows": 3})
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("it failed")
    assert all("\n" not in line for line in lines.lines)
    hello, failed = lines.records()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", hello["time"])
    assert {k: hello[k] for k in ("level", "logger", "message", "rows")} == {
        "level": "INFO",
        "logger": "insights.test",
        "message": "hello world",
        "rows": 3,
    }
    assert isinstance(hello["pid"], int)
    assert failed["level"] == "ERROR" and "ValueError: bad\nvalue" in failed["exception"]


def test_django_s_request_object_is_never_written_and_celery_s_details_are_task(lines: _Lines) -> None:
    """Django passes the request itself along with a 4xx/5xx (its repr holds the query string)."""
    request = SimpleNamespace(__repr__=lambda self: "<WSGIRequest: GET '/x?token=secret'>")
    logging.getLogger("django.request").error("Boom: /x", extra={"status_code": 500, "request": request})
    logging.getLogger("celery.app.trace").info("done", extra={"data": {"id": "t1", "name": "queries.run"}})
    boom, done = lines.records()
    assert "request" not in boom and "secret" not in lines.lines[0]
    assert done["task"] == {"id": "t1", "name": "queries.run"}


def test_the_plain_format_is_one_readable_line_with_the_bound_fields_at_its_end() -> None:
    record = logging.LogRecord("insights.test", logging.INFO, __file__, 1, "hello", None, None)
    record.guid, record.attempt = "abc", 2
    assert re.fullmatch(
        r"\S+Z INFO insights.test hello \[guid=abc attempt=2\]", PlainFormatter().format(record)
    )


# -- bound fields ------------------------------------------------------------------------------------------


def test_bound_fields_are_on_every_record_until_cleared(lines: _Lines) -> None:
    log = logging.getLogger("exports.anywhere")
    log_context_set(guid="g1", customer="acme", attempt=2)
    log.warning("deep down")
    log.warning("the caller's own", extra={"attempt": 9})
    log_context_clear()
    log.warning("after")
    deep, own, after = lines.records()
    assert {k: deep[k] for k in ("guid", "customer", "attempt")} == {
        "guid": "g1",
        "customer": "acme",
        "attempt": 2,
    }
    assert own["attempt"] == 9
    assert not {"guid", "customer", "attempt"} & set(after)


def test_a_thread_sees_the_fields_only_when_started_in_a_copy_of_the_context(lines: _Lines) -> None:
    """Why the runner and exports start their threads with contextvars.copy_context().run."""
    import contextvars

    log = logging.getLogger("exports.thread")
    log_context_set(guid="g1")
    plain = threading.Thread(target=log.warning, args=("plain thread",))
    copied = threading.Thread(target=contextvars.copy_context().run, args=(log.warning, "copied context"))
    for thread in (plain, copied):
        thread.start()
        thread.join()
    assert [r.get("guid") for r in lines.records()] == [None, "g1"]


def test_celery_clears_the_fields_when_a_task_ends(lines: _Lines) -> None:
    import insights.celery  # noqa: F401  # connects the signal receivers

    log_context_set(guid="g1")
    signals.task_postrun.send(sender=None)
    logging.getLogger("celery.app.trace").info("next task")
    assert "guid" not in lines.records()[0]


# -- levels ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logger", "level", "status", "logged_as"),
    [
        ("django.request", logging.WARNING, 401, "INFO"),
        ("django.request", logging.WARNING, 429, "INFO"),
        ("django.security.DisallowedHost", logging.ERROR, 400, "INFO"),
        ("django.request", logging.ERROR, 500, "ERROR"),
        ("django.request", logging.ERROR, 503, "ERROR"),
        ("queries.runner", logging.WARNING, None, "WARNING"),
    ],
)
def test_a_client_error_is_info_and_a_server_error_stays_error(
    lines: _Lines, logger: str, level: int, status: int | None, logged_as: str
) -> None:
    logging.getLogger(logger).log(level, "a response", extra={"status_code": status})
    assert [r["level"] for r in lines.records()] == [logged_as]


def test_a_client_error_lowered_to_info_is_dropped_where_info_is_not_logged(lines: _Lines) -> None:
    logging.getLogger("django").setLevel(logging.WARNING)  # restored by the fixture
    logging.getLogger("django.request").warning("Not Found: /x", extra={"status_code": 404})
    logging.getLogger("django.request").error("Server Error: /y", extra={"status_code": 500})
    assert [r["message"] for r in lines.records()] == ["Server Error: /y"]


def test_libraries_that_log_credentials_at_debug_never_log_below_info() -> None:
    debug = logging_config(level="DEBUG", log_format="json")
    assert debug["root"]["level"] == "DEBUG"
    for name in ("botocore", "boto3", "urllib3", "paramiko", "django.db.backends"):
        assert debug["loggers"][name]["level"] == "INFO"
    assert logging_config(level="ERROR", log_format="json")["loggers"]["botocore"]["level"] == "ERROR"


def test_gunicorn_and_django_loggers_hand_their_records_to_the_one_handler() -> None:
    config = logging_config(level="INFO", log_format="plain")
    assert config["handlers"]["stderr"]["formatter"] == "plain"
    for name in ("gunicorn.error", "gunicorn.access", "django", "py.warnings"):
        assert config["loggers"][name]["handlers"] == [] and config["loggers"][name]["propagate"] is True


def test_log_level_and_format_are_checked_at_start_up() -> None:
    assert log_level_parse(" debug ") == "DEBUG" and log_format_parse("PLAIN") == "plain"
    with pytest.raises(ImproperlyConfigured, match="LOG_LEVEL must be one of DEBUG, INFO"):
        log_level_parse("verbose")
    with pytest.raises(ImproperlyConfigured, match="LOG_FORMAT must be one of json, plain, not 'xml'"):
        log_format_parse("xml")


# -- the request id ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("3f2c9a1e-8b7d-4c6a-9e5f-0a1b2c3d4e5f", True),
        ("Root=1-67891233-abcdef012345678912345678", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("has space", False),
        ("tab\there", False),
        ("new\nline", False),
        ("caf\u00e9", False),
        ("", False),
        (None, False),
    ],
)
def test_a_sane_incoming_request_id_is_kept_and_anything_else_replaced(
    incoming: str | None, kept: bool
) -> None:
    request_id = request_id_from(incoming)
    assert request_id == incoming if kept else GENERATED.fullmatch(request_id)


def test_every_response_carries_a_new_request_id(client: Client) -> None:
    ids = {client.get("/healthz")["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3 and all(GENERATED.fullmatch(i) for i in ids)
    assert client.head("/healthz")["X-Request-ID"]


def test_the_caller_s_request_id_comes_back_and_a_bad_one_is_replaced(client: Client) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "lb-1234"})["X-Request-ID"] == "lb-1234"
    replaced = client.get("/healthz", headers={"X-Request-ID": "a" * 200})["X-Request-ID"]
    assert GENERATED.fullmatch(replaced)


@pytest.mark.django_db
def test_a_4xx_is_logged_once_at_info_with_the_request_id_which_is_cleared_after(
    client: Client, lines: _Lines
) -> None:
    response = client.get(
        "/_rest/v4/dwh/Q", headers={"Authorization": "Bearer wrong-key", "X-Request-ID": "r-401"}
    )
    assert response.status_code == 401 and response["X-Request-ID"] == "r-401"
    logging.getLogger("insights.test").info("between requests")
    unauthorized, between = lines.records()
    assert {k: unauthorized[k] for k in ("logger", "level", "status_code", "request_id")} == {
        "logger": "django.request",
        "level": "INFO",
        "status_code": 401,
        "request_id": "r-401",
    }
    assert "request_id" not in between
    assert "wrong-key" not in "".join(lines.lines)


# -- gunicorn's access line --------------------------------------------------------------------------------


@pytest.fixture()
def gunicorn_logger() -> Iterator[tuple[GunicornLogger, _Lines]]:
    """gunicorn's logger as the master makes it (access log on), its access lines captured; gunicorn's own
    handlers and propagate flags are put back afterwards."""
    loggers = [logging.getLogger(name) for name in ("gunicorn.error", "gunicorn.access")]
    saved = [(log.handlers[:], log.propagate, log.level) for log in loggers]
    cfg = Config()
    cfg.set("accesslog", "-")
    made, handler = GunicornLogger(cfg), _Lines()
    made.access_log.addHandler(handler)
    yield made, handler
    for log, (handlers, propagate, level) in zip(loggers, saved, strict=True):
        log.handlers[:] = handlers
        log.propagate, log.level = propagate, level


@pytest.mark.parametrize(("status", "level"), [(200, "INFO"), (404, "INFO"), (502, "ERROR")])
def test_gunicorn_s_access_line_is_structured_with_the_response_s_request_id(
    gunicorn_logger: tuple[GunicornLogger, _Lines], status: int, level: str
) -> None:
    made, handler = gunicorn_logger
    response = SimpleNamespace(status_code=status, headers=[("X-Request-ID", "r-9")], sent=42)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/_rest/v4/dwh/Q/abc/status",
        "QUERY_STRING": "token=not-for-the-log",
        "REMOTE_ADDR": "10.0.0.7",
        "HTTP_AUTHORIZATION": "Bearer not-for-the-log",
    }
    made.access(response, None, environ, timedelta(milliseconds=12.5))
    (line,) = handler.records()
    assert line["message"] == f"GET /_rest/v4/dwh/Q/abc/status {status}"
    assert {
        k: line[k] for k in ("level", "method", "path", "status", "bytes", "remote_addr", "request_id")
    } == {
        "level": level,
        "method": "GET",
        "path": "/_rest/v4/dwh/Q/abc/status",
        "status": status,
        "bytes": 42,
        "remote_addr": "10.0.0.7",
        "request_id": "r-9",
    }
    assert line["duration_ms"] == 12.5
    assert "not-for-the-log" not in handler.lines[0]


def test_below_log_level_gunicorn_writes_only_the_server_errors(
    gunicorn_logger: tuple[GunicornLogger, _Lines],
) -> None:
    made, handler = gunicorn_logger
    made.access_log.setLevel(logging.WARNING)  # LOG_LEVEL=WARNING; put back by the fixture
    for status in (200, 404, 500):
        response = SimpleNamespace(status_code=status, headers=[], sent=0)
        made.access(response, None, {"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, timedelta(0))
    assert [(r["status"], r["level"]) for r in handler.records()] == [(500, "ERROR")]


# -- a real run --------------------------------------------------------------------------------------------


class _FlakyPublication(Publication):
    """A local publication whose first stage fails as a dropped connection would (a retry is logged)."""

    def __init__(self, inner: Publication) -> None:
        self.inner, self.failed = inner, False

    def stage(self, source: Path, key: str) -> None:
        if not self.failed:
            self.failed = True
            raise StorageError("connection reset by peer", retryable=True)
        self.inner.stage(source, key)

    def commit(self, manifest: tuple[bytes, str], *, commit_check: Any = None) -> None:
        self.inner.commit(manifest, commit_check=commit_check)

    def abort(self) -> None:
        self.inner.abort()


@pytest.mark.django_db(transaction=True)  # the upload thread uses its own connection: it must see the rows
def test_every_line_of_a_run_carries_its_guid_customer_and_attempt_even_from_the_upload_thread(
    customer_factory: Any,
    demo_warehouse: Path,
    local_exports: Path,
    sent_tasks: list,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    lines: _Lines,
) -> None:
    from queries import runner
    from queries.models import QueryStatus
    from queries.services import query_create

    class FlakyStorage(LocalStorage):
        def publication(self) -> Publication:
            return _FlakyPublication(super().publication())

    settings.DELIVERY_BACKOFF_SECONDS = 0
    monkeypatch.setattr(runner, "destination_storage", lambda destination: FlakyStorage(local_exports))
    body = {
        "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
        "data": {"CallEvent": {"fields": ["SessionId"]}},
    }
    query = query_create(customer=customer_factory("acme"), body=body)
    runner.query_run(query_id=query.pk)
    query.refresh_from_db()
    assert query.status == QueryStatus.COMPLETED, query.messages
    about_the_run = [r for r in lines.records() if query.guid in r["message"]]
    messages = [r["message"] for r in about_the_run]
    assert f"query {query.guid} attempt 1 started" in messages
    assert f"query {query.guid}: delivery try 1 failed (connection reset by peer); retrying" in messages
    for record in about_the_run:
        assert (record["guid"], record["customer"], record["attempt"]) == (query.guid, "acme", 1)


def test_the_embedded_broker_names_its_host_so_kombu_warns_nothing(caplog, tmp_path):
    """`filesystem://` (the default) names no host: kombu logged a WARNING "No hostname was supplied" in every
    process that touched the broker. The settings write out the host it assumes."""
    from kombu import Connection

    from insights.env import broker_url

    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path)}
    with (
        caplog.at_level(logging.WARNING, logger="kombu"),
        Connection(broker_url("filesystem://"), transport_options=options) as connection,
    ):
        connection.clone().release()
        connection.as_uri()  # the worker's banner
    assert [r.getMessage() for r in caplog.records if r.name.startswith("kombu")] == []
