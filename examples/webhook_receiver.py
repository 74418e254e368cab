"""A webhook receiver for Insights: checks the signature, refuses stale timestamps, skips repeats.

INSIGHTS_WEBHOOK_SECRET: the `secret` the PUT answered (while you rotate it, the new and the old, comma-separated).
RECEIVER_PORT: where to listen (default 8080), on loopback: put it behind your HTTPS proxy to take real events.
"""

import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRETS = [
    secret.strip().encode() for secret in os.environ["INSIGHTS_WEBHOOK_SECRET"].split(",") if secret.strip()
]
if not SECRETS:  # an empty key would accept a signature anyone can make
    raise SystemExit("INSIGHTS_WEBHOOK_SECRET holds no secret")
TOLERANCE = 300  # seconds: a signature older than this is a replay
handled: set[str] = set()  # event ids done (use your database: deliveries are at least once)


def verified(header: str, body: bytes, now: float) -> bool:
    fields = [item.strip().split("=", 1) for item in header.split(",") if "=" in item]
    stamps = [value for name, value in fields if name == "t"]
    signatures = [value for name, value in fields if name == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or abs(now - int(stamps[0])) > TOLERANCE:
        return False
    expected = [
        hmac.new(key, stamps[0].encode() + b"." + body, hashlib.sha256).hexdigest() for key in SECRETS
    ]
    return any(hmac.compare_digest(mine, given) for mine in expected for given in signatures)


def handle(event: dict) -> None:
    """Your work (here: a line per event). `data` is the export for query.* events, the schedule for schedule.*."""
    data = event["data"]
    if event["type"].startswith("query."):
        print(event["type"], event["sequence"], data["id"], data["status"], flush=True)
    else:
        print(event["type"], event["sequence"], "schedule", data["id"], data.get("paused_reason"), flush=True)


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not verified(self.headers.get("Insights-Signature", ""), body, time.time()):
            # Not from Insights (or signed with a secret you do not have): a 4xx is not retried.
            self.send_response(400)
            self.end_headers()
            return
        event = json.loads(body)
        if event["id"] not in handled:
            handle(event)  # if this raises, the connection closes unanswered and the event comes again later
            handled.add(event["id"])
        self.send_response(204)
        self.end_headers()


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(os.environ.get("RECEIVER_PORT", "8080"))), Receiver).serve_forever()
