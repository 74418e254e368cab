"""The Insights API over HTTP (httpx): one method per endpoint the CLI uses, each returning the decoded JSON
answer. Every way a call can go wrong becomes a CliError carrying its exit code and the service's own message:
the error envelope `{"code", "message"}`, the 401's `{"code", "error"}`, and the unknown-guid list
`[{"message", "code"}]`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx

from insights_cli import __version__
from insights_cli.config import API_PREFIX, Settings
from insights_cli.errors import EXIT_AUTH, EXIT_UNREACHABLE, CliError, exit_code_for_status

TIMEOUT_SECONDS = 30.0
PAGE_SIZE = 100  # exports per page when listing (the API allows 1-500)
# What a server closing an idle kept-alive connection looks like to the client that just reused it.
STALE_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
# How the service refuses a `?wait=` beyond its QUERY_WAIT_MAX_SECONDS (queries.waiting.wait_read).
WAIT_REFUSED = "wait must be"
AUTH_HINT = "check the API key (--token, INSIGHTS_TOKEN or token in config.toml)"


class Client:
    """A session with one service, authenticated with one API key."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.url = settings.url
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=settings.url + API_PREFIX,
            headers={
                "Authorization": f"Bearer {settings.token}",
                "User-Agent": f"insights-cli/{__version__}",
            },
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    # --- the endpoints ------------------------------------------------------------------------------------

    def catalog(self, *, verbose: bool = False) -> Any:
        return self._json("GET", "/dwh/Q", params={"verbose": "true"} if verbose else None)

    def query_create(self, body: Any) -> str:
        """The new query's guid."""
        created = self._json("POST", "/dwh/Q", json=body)
        return str(created["id"])

    def query_submit(self, body: Any, *, wait: float) -> tuple[str, dict[str, Any] | None]:
        """POST with `?wait=N` (the service's hybrid wait): the new query's guid, and its status document once
        it ended or `wait` seconds passed. The status is None where the service answers without one (a version
        before the hybrid wait ignores the parameter), or refuses `wait` (a QUERY_WAIT_MAX_SECONDS set lower:
        checked before anything is created, so the query is then submitted without it)."""
        params = {"wait": f"{wait:g}"}
        with self._call():
            response = self._request("POST", "/dwh/Q", json=body, params=params, timeout=self.timeout + wait)
        if response.status_code == 400 and error_message(response).startswith(WAIT_REFUSED):
            return self.query_create(body), None
        if not response.is_success:
            raise response_error(response)
        created = response.json() if _is_json(response) else None
        if not isinstance(created, dict) or "id" not in created:
            raise self._json_refused("POST", "/dwh/Q")
        state = created.get("status")
        return str(created["id"]), dict(state) if isinstance(state, dict) else None

    def query_status(self, guid: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/dwh/Q/{guid}/status"))

    def query_location(self, guid: str) -> dict[str, Any]:
        """Where the result is: once Completed, `files` lists each part's path, size, rows and sha256 (the
        manifest's entries)."""
        return dict(self._json("GET", f"/dwh/Q/{guid}"))

    def query_cancel(self, guid: str) -> dict[str, Any]:
        return dict(self._json("DELETE", f"/dwh/Q/{guid}"))

    def query_preview(self, body: Any) -> dict[str, Any]:
        return dict(self._json("POST", "/dwh/Q/preview", json=body))

    def export_get(self, guid: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/dwh/exports/{guid}"))

    def exports_list(
        self, *, status: str | None = None, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The customer's exports, newest first, following `next` until it is null or `limit` were given."""
        given = 0
        params: dict[str, str] | None = {"limit": str(_page_size(limit))}
        if status:
            assert params is not None
            params["status"] = status
        url = "/dwh/exports"
        while True:
            page = self._json("GET", url, params=params)
            for export in page["exports"]:
                yield export
                given += 1
                if limit is not None and given >= limit:
                    return
            if not page.get("next"):
                return
            url, params = page["next"], None  # an absolute URL holding the filters and the cursor

    @contextlib.contextmanager
    def part_stream(self, guid: str, part: int, *, offset: int = 0) -> Iterator[httpx.Response]:
        """The response of a part's download, from byte `offset` on (a Range request): 206 with the rest, or
        200 with the whole part if the server ignored the range, or 416 when `offset` is at or past its end.
        A result on S3 answers 303 to a presigned URL: followed (httpx drops the Authorization header when a
        redirect leaves the service's origin)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self._call():
            with self._http.stream(
                "GET", f"/dwh/Q/{guid}/download/{part}", headers=headers, follow_redirects=True
            ) as response:
                if response.status_code not in (200, 206, 416):
                    response.read()
                    raise response_error(response)
                yield response

    # --- plumbing -----------------------------------------------------------------------------------------

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        with self._call():
            response = self._request(method, url, **kwargs)
        if not response.is_success:
            raise response_error(response)
        try:
            return response.json()
        except ValueError:
            raise self._json_refused(method, url) from None

    def _json_refused(self, method: str, url: str) -> CliError:
        return CliError(
            f"{self.url} answered {method} {API_PREFIX}{url.split('?')[0]} with something that is not "
            "JSON: is it the Insights service's root URL?",
            EXIT_UNREACHABLE,
        )

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request; a GET whose kept-alive connection the server closed just as it was sent is sent once
        more on a new connection. The server's keep-alive (gunicorn's 2 s) and the CLI's polling interval meet,
        so a poll would otherwise fail now and then while the query runs on. Other methods are not repeated:
        the service may have acted on them."""
        try:
            return self._http.request(method, url, **kwargs)
        except STALE_CONNECTION:
            if method != "GET":
                raise
            return self._http.request(method, url, **kwargs)

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        """Transport failures as exit 5, naming the URL (the request itself may be mid-stream)."""
        try:
            yield
        except httpx.TimeoutException:
            raise CliError(
                f"the Insights service at {self.url} did not answer within {self.timeout:.0f} s",
                EXIT_UNREACHABLE,
            ) from None
        except httpx.TransportError as error:
            raise CliError(
                f"cannot reach the Insights service at {self.url}: {error or type(error).__name__}",
                EXIT_UNREACHABLE,
            ) from None


def _page_size(limit: int | None) -> int:
    return PAGE_SIZE if limit is None else max(1, min(limit, PAGE_SIZE))


def response_error(response: httpx.Response) -> CliError:
    """The error answer as one line: the service's message, the HTTP status, and what to do where it helps."""
    status = response.status_code
    message = error_message(response)
    detail = f"HTTP {status}"
    if status == 429 and response.headers.get("Retry-After"):
        detail += f"; retry after {response.headers['Retry-After']} s"
    code = exit_code_for_status(status)
    if code == EXIT_AUTH:
        detail += f"; {AUTH_HINT}"
    elif not _is_json(
        response
    ):  # every answer of the API is JSON: this is another server (or a proxy's page)
        code = EXIT_UNREACHABLE
        detail += "; not the Insights API: is the URL the service's root?"
    return CliError(f"{message} ({detail})", code)


def _is_json(response: httpx.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


def error_message(response: httpx.Response) -> str:
    """The service's words for an error answer, whatever its shape; a non-JSON answer (a proxy's page) is
    named by its status line and first line of text."""
    try:
        body = response.json()
    except ValueError:
        first = next(iter(response.text.strip().splitlines()), "")[:200]
        reason = response.reason_phrase or "error"
        return f"{reason}: {first}" if first else reason
    return describe(body) or response.reason_phrase or "error"


def describe(body: Any) -> str:
    """The envelope's message (`message`, or `error`), or each of a list of them; a structured message
    (`{"Date_Filters": {"message": ..., "code": "422-6"}}`, DRF's field lists) flattened to `key: message`."""
    if isinstance(body, list):
        return "; ".join(filter(None, (describe(item) for item in body)))
    if isinstance(body, dict):
        for key in ("message", "error"):
            if key in body:
                return _message(body[key])
        return _message(body)
    return _message(body)


def _message(message: Any) -> str:
    if isinstance(message, str):
        return message
    if isinstance(message, list):
        return "; ".join(_message(item) for item in message)
    if isinstance(message, dict):
        if "message" in message:
            return _message(message["message"])
        return "; ".join(f"{key}: {_message(value)}" for key, value in message.items())
    return json.dumps(message)
