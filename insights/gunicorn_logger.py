"""gunicorn's access line as a structured record (gunicorn.conf.py names this class as `logger_class`).

gunicorn's own access line is one preformatted string in Apache's format; here each request is one record of
the gunicorn.access logger with its fields apart, its level following the status (a 5xx is an ERROR, anything
else INFO), and the request id the response carries. The query string is left out: it is where a client would
mistakenly put a credential. gunicorn's `access_log_format` is therefore not used.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

from insights.request_ids import HEADER

_HEADER_LOWER = HEADER.lower()


def _response_header(headers: Any, name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return str(value)
    return None


class GunicornLogger(Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        logging.captureWarnings(True)  # the master never loads Django, which would do it

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        status = resp.status_code if isinstance(resp.status_code, int) else None  # None: no response started
        level = logging.INFO if status is not None and status < 500 else logging.ERROR
        if not (self.access_log_enabled and self.access_log.isEnabledFor(level)):
            return  # e.g. LOG_LEVEL=WARNING: nothing is built for a line no one writes
        method, path = environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "-")
        fields: dict[str, Any] = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "bytes": getattr(resp, "sent", None),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        request_id = _response_header(resp.headers, _HEADER_LOWER)
        if request_id is not None:
            fields["request_id"] = request_id
        self.access_log.log(level, "%s %s %s", method, path, status, extra=fields)
