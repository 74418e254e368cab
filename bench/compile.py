"""Validation + compilation time per typical query (goal: under 1 ms)."""

from __future__ import annotations

import json
import statistics
import time

from bench.report import Report
from exports.engines.duckdb import DuckDBEngine
from queries.compiler import query_compile
from queries.validation import query_validate
from tests.seed_requests import REQUEST_2

TYPICAL = {
    "seed request 2": REQUEST_2,
    "scope, 3 events": {
        "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lt": "2019-11-26T00:00:00+01:00"},
        "data": {
            "ApplicationExitEvent": {"fields": ["FlowId", "ExitReason"]},
            "CallEvent": {"fields": ["Ani", "Duration"], "filters": {"Duration": {"$gt": 30}}},
            "MsgEvent": {"fields": ["To", "MsgStatus"]},
        },
        "scope": {"filters": {"DtmfEvent": {"DtmfInput": {"$in": ["0", "9"]}}}, "scope": "SessionId"},
        "filters": {"ApplicationExitEvent": {"ExitReason": {"$ne": "Normal"}}},
    },
}


def run(report: Report, iterations: int = 2000) -> None:
    for label, body in TYPICAL.items():
        text = json.dumps(body)
        samples = []
        for _ in range(iterations):
            started = time.perf_counter()
            query = query_validate(json.loads(text))
            query_compile(query, customer_id="acme", dialect=DuckDBEngine.dialect)
            samples.append(time.perf_counter() - started)
        median_us = statistics.median(samples) * 1e6
        report.add(f"validate_compile[{label}]", median_us, "us", ratio=median_us / 1000, anchor="1 ms goal")
