"""A webhook receiver for tests: a threaded http.server on a free loopback port that records every request and
answers what the test planned (a status per request, then a default), or holds requests until it is released."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """`plan`: the statuses of the next requests, in order (then `default`). `hold`: set, requests wait until
    `release()` (or `hold_seconds`), then are answered."""

    url: str = ""
    plan: list[int] = field(default_factory=list)
    default: int = 200
    answer_body: bytes = b"ok"
    extra_headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False
    requests: list[Received] = field(default_factory=list)
    held: int = 0  # requests waiting for release()
    _released: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def release(self) -> None:
        self._released.set()

    def answered(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        with self._changed:
            return [r for r in self.requests if 200 <= r.status < 300]

    def wait_until(self, done: Callable[[Receiver], bool], *, timeout: float = 120) -> None:
        """Block until `done(receiver)` holds (checked whenever a request arrives or is answered)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"the receiver did not get what was expected in {timeout}s: {self.requests}"
                    )
                self._changed.wait(left)

    def wait_answered(self, count: int, *, timeout: float = 120) -> list[Received]:
        """Block until `count` requests were answered 2xx; returns them."""
        self.wait_until(lambda receiver: len(receiver.answered()) >= count, timeout=timeout)
        return self.answered()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        if self.hold:
            with self._changed:
                self.held += 1
                self._changed.notify_all()
            self._released.wait(300)
        with self._changed:
            status = self.plan.pop(0) if self.plan else self.default
            self.requests.append(Received(handler.path, dict(handler.headers.items()), body, status))
            self.held -= int(self.hold)
            self._changed.notify_all()
        handler.send_response(status)
        for name, value in self.extra_headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(self.answer_body)))
        handler.end_headers()
        handler.wfile.write(self.answer_body)


@contextlib.contextmanager
def receiver_running(**options: Any) -> Iterator[Receiver]:
    receiver = Receiver(**options)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver._handle(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/insights?source=test"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release()
        server.shutdown()
        server.server_close()


def signature_valid(
    secret: str, received: Received, *, now: float | None = None, tolerance: int = 300
) -> bool:
    """The receiver's check, written here from the documented scheme with the hmac module alone (not with the
    service's code): `Insights-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, and a fresh `t`."""
    parts = dict(item.split("=", 1) for item in received.headers["Insights-Signature"].split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256).hexdigest()
    fresh = abs((now if now is not None else time.time()) - timestamp) <= tolerance
    return fresh and hmac.compare_digest(expected, parts["v1"])
