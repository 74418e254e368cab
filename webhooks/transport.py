"""One POST of an event to an address that was checked (webhooks.addresses): the connection goes to that address,
with the URL's host in the Host header and in TLS (SNI and certificate check), so what the check saw is what is
reached. No redirect is followed, no proxy from the environment is used, and at most the first kilobyte of the
answer is read."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
from django.conf import settings

from webhooks.addresses import IPAddress, Target

BODY_KEPT = 1024
USER_AGENT = "Insights-Webhooks/1"


@dataclass(frozen=True)
class Answer:
    """What one attempt got: a status and the start of the body, or an error (`status_code` None)."""

    status_code: int | None
    latency_ms: int
    body: str = ""
    error: str = ""


def event_post(*, target: Target, address: IPAddress, body: bytes, headers: dict[str, str]) -> Answer:
    host = f"[{address}]" if address.version == 6 else str(address)
    url = f"{target.scheme}://{host}:{target.port}{target.path}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    connect, read = settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS, settings.WEBHOOK_READ_TIMEOUT_SECONDS
    timeout = httpx.Timeout(connect=connect, read=read, write=read, pool=connect)
    sent = {
        **headers,
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "identity",
    }
    started = time.monotonic()
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream("POST", url, content=body, headers=sent, extensions=extensions) as response,
        ):
            latency_ms = _millis_since(started)
            return Answer(response.status_code, latency_ms, body=_head(response))
    except httpx.TimeoutException as error:
        return Answer(None, _millis_since(started), error=f"timed out ({type(error).__name__})")
    except httpx.HTTPError as error:
        return Answer(None, _millis_since(started), error=f"{type(error).__name__}: {error}"[:500])


def _head(response: httpx.Response) -> str:
    """The first BODY_KEPT bytes of the answer, as text; the rest is never read."""
    kept = b""
    try:
        for chunk in response.iter_raw():
            kept += chunk
            if len(kept) >= BODY_KEPT:
                break
    except httpx.HTTPError:
        pass  # a body cut short: the status already says how it went
    return kept[:BODY_KEPT].decode("utf-8", errors="replace")


def _millis_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
