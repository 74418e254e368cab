"""The README's webhook receiver (examples/webhook_receiver.py, printed in the README as it is) run as a customer
runs it, taking events signed by the service's own signer: it takes what Insights sends, query and schedule
events alike, once each, and refuses what Insights did not sign."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port
from webhooks.signing import signature_header

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "webhook_receiver.py"
OLD, NEW = "whsec_old-secret", "whsec_new-secret"


def test_the_readme_prints_the_example_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert EXAMPLE.read_text() in blocks


@pytest.fixture()
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "receiver.log"
    # Spaces and an empty entry (a trailing comma) are what a hand-edited list holds: no empty key may come of it.
    env = {**os.environ, "INSIGHTS_WEBHOOK_SECRET": f"{NEW}, {OLD},", "RECEIVER_PORT": str(port)}
    with log.open("w") as out:  # its own lines; the server's access log goes to stderr
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLE)], env=env, stdout=out, stderr=subprocess.DEVNULL
        )
    url = f"http://127.0.0.1:{port}/insights"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(url, content=b"{}")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError(f"the example receiver did not start: {log.read_text()}") from None
                time.sleep(0.05)
        yield url, log
    finally:
        process.terminate()
        process.wait(10)


def _event(event_id: str, type: str, sequence: int, data: dict[str, object]) -> bytes:
    body = {"id": event_id, "type": type, "created_at": "2026-12-05T16:00:00.123Z", "sequence": sequence}
    return json.dumps({**body, "data": data}, separators=(",", ":")).encode()


def _send(url: str, body: bytes, *, secret: str = NEW, at: int | None = None) -> int:
    header = signature_header(secret=secret, body=body, timestamp=int(time.time()) if at is None else at)
    return httpx.post(url, content=body, headers={"Insights-Signature": header}).status_code


def test_the_example_takes_signed_events_once_and_refuses_the_rest(receiver: tuple[str, Path]) -> None:
    url, log = receiver
    completed = _event("evt_1", "query.completed", 3, {"id": "4d1c3ff0", "status": "Completed", "rows": 2})
    paused = _event("evt_2", "schedule.paused", 1, {"id": 7, "paused": True, "paused_reason": "Deleted."})

    assert _send(url, completed) == 204
    assert _send(url, completed) == 204  # a repeated delivery: answered, not handled again
    assert _send(url, paused, secret=OLD) == 204  # the old secret, during a rotation
    assert (
        _send(url, _event("evt_3", "query.failed", 4, {"id": "x", "status": "Failed"}), secret="whsec_other")
        == 400
    )
    assert (
        _send(
            url,
            _event("evt_4", "query.failed", 4, {"id": "x", "status": "Failed"}),
            at=int(time.time()) - 600,
        )
        == 400
    )
    signed_with_nothing = _event("evt_5", "query.failed", 4, {"id": "x", "status": "Failed"})
    assert _send(url, signed_with_nothing, secret="") == 400
    tampered = completed.replace(b'"rows":2', b'"rows":3')
    assert httpx.post(url, content=tampered, headers={"Insights-Signature": "t=1,v1=00"}).status_code == 400

    assert log.read_text().splitlines() == [
        "query.completed 3 4d1c3ff0 Completed",
        "schedule.paused 1 schedule 7 Deleted.",
    ]


def test_the_example_refuses_to_start_without_a_secret() -> None:
    env = {**os.environ, "INSIGHTS_WEBHOOK_SECRET": " , ", "RECEIVER_PORT": str(free_port())}
    done = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "holds no secret" in done.stderr
