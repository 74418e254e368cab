"""Structured logs: every process (gunicorn and Django, the Celery worker, Celery beat) writes one JSON object per
line to stderr through the one logging configuration built here (settings.LOGGING).

A line logged deep in `exports` or in a library knows nothing of the request or the query run it serves, so the
fields that say so (`request_id` on the web, `guid`, `customer`, `attempt` in a worker) are bound once, in a
context variable, where the request or the run starts, and a filter on the one handler copies them onto every
record. A context variable rather than a thread-local: each thread (and asyncio task) sees only its own.
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "plain")
CONTEXT_FIELDS = ("request_id", "guid", "customer", "attempt")

# Libraries that log credentials, request signatures (presigned URLs, Authorization headers) or SQL parameters
# at DEBUG: they never log below INFO, whatever LOG_LEVEL says.
SECRET_BEARING_AT_DEBUG = ("botocore", "boto3", "s3transfer", "urllib3", "paramiko", "django.db.backends")
# Loggers that Django's or gunicorn's defaults give handlers of their own (plain text, or only under DEBUG):
# here they hand every record to the root's one handler instead.
_REROUTED = ("django", "django.server", "py.warnings", "gunicorn.error", "gunicorn.access")
# Record attributes never written out: Django's `request` (its repr holds the query string) and the plain
# formatter's own line.
_NEVER_WRITTEN = ("request", "plain_context")

_EMPTY: Mapping[str, object] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar("log_context", default=_EMPTY)


def log_context_set(**fields: object) -> None:
    """The fields every line logged from here on in this context carries (replacing any bound before): a
    request's id, or a query run's guid, customer and attempt."""
    _context.set(MappingProxyType(fields))


def log_context_clear() -> None:
    _context.set(_EMPTY)


def log_context() -> Mapping[str, object]:
    return _context.get()


class ContextFilter(logging.Filter):
    """Adds the bound fields to each record; a field the caller passed itself (`extra=`) is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            record.__dict__.setdefault(name, value)
        return True


class ClientErrorsAsInfo(logging.Filter):
    """Django logs every 4xx response as a WARNING (django.request) and a suspicious request as an ERROR
    (django.security.*), both with a `status_code`: a client's mistake is not the service's, so such a record
    is INFO here (and dropped where its logger does not log INFO). 5xx records stay ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if not (isinstance(status, int) and 400 <= status < 500):
            return True
        if record.levelno > logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"
        # Decided from the logger, not the record: another handler's copy of this filter may have lowered it.
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def _utc_time(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLineFormatter(JsonFormatter):
    """One JSON object per record: time (UTC), level, logger, message, the bound fields, whatever the caller
    passed as `extra=`, and the traceback as `exception`. Celery's task lines carry their details as `task`."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            rename_fields={
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "process": "pid",
                "exc_info": "exception",
                "data": "task",
            },
            reserved_attrs=[*RESERVED_ATTRS, *_NEVER_WRITTEN],
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_time(record)


class PlainFormatter(logging.Formatter):
    """For a developer's terminal (LOG_FORMAT=plain): one readable line, the bound fields at its end."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s%(plain_context)s")

    def format(self, record: logging.LogRecord) -> str:
        bound = [f"{name}={record.__dict__[name]}" for name in CONTEXT_FIELDS if name in record.__dict__]
        record.plain_context = f" [{' '.join(bound)}]" if bound else ""
        return super().format(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_time(record)


def log_level_parse(raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ImproperlyConfigured(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {raw!r}")
    return level


def log_format_parse(raw: str) -> str:
    log_format = raw.strip().lower()
    if log_format not in LOG_FORMATS:
        raise ImproperlyConfigured(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {raw!r}")
    return log_format


def logging_config(*, level: str, log_format: str) -> dict[str, Any]:
    """The dictConfig of every process: one stderr handler on the root, everything propagating to it."""
    floor = level if logging.getLevelName(level) >= logging.INFO else "INFO"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}, "client_errors_info": {"()": ClientErrorsAsInfo}},
        "formatters": {"json": {"()": JsonLineFormatter}, "plain": {"()": PlainFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["context", "client_errors_info"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            **{name: {"handlers": [], "propagate": True, "level": level} for name in _REROUTED},
            **{name: {"level": floor} for name in SECRET_BEARING_AT_DEBUG},
            # httpx writes every request's URL at INFO, and a webhook URL may hold the receiver's token.
            "httpx": {"level": "WARNING"},
        },
    }


def logging_configure(config: dict[str, Any]) -> None:
    """Apply `config` (Django's LOGGING_CONFIG, and Celery's setup_logging signal): Python warnings become
    log records too, so nothing reaches stderr unformatted."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
