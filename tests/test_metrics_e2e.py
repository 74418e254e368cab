"""GET /metrics end to end on both shapes: gunicorn (2 web processes) and a real Celery worker (2 pool
processes) writing into one multiprocess directory, scraped over HTTP with the token.

A scrape must see what the worker's pool processes counted (the export, the lease heartbeats), what both web
processes counted (every status poll, exactly once), the gauges read from the metadata database at scrape time,
and the live processes: a web process killed with SIGKILL is taken off by gunicorn's child_exit hook, and pool
processes that end in order take themselves off."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from queries.ingest import DEMO_CUSTOMER_KEYS
from tests.seed_requests import REQUEST_1
from tests.servers import _stop, free_port
from tests.service import SHAPES, Service, process_children, service_of_shape

TOKEN = "e2e-metrics-token-0123456789abcdef"
STATUS_ROUTE = "_rest/v4/dwh/Q/<str:guid>/status"
CUSTOMER = DEMO_CUSTOMER_KEYS[0]


class Scrape:
    """One scrape of /metrics, parsed: value(sample name, **labels), None when the sample is absent."""

    def __init__(self, text: str) -> None:
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))


def scrape(service: Service) -> Scrape:
    response = service.request("GET", "/metrics", key=TOKEN)
    assert response.status == 200, response.body[:300]
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.body.decode())


def scrape_until(service: Service, check: Callable[[Scrape], bool], timeout: float = 30) -> Scrape:
    deadline = time.monotonic() + timeout
    while True:
        scraped = scrape(service)
        if check(scraped) or time.monotonic() > deadline:
            return scraped
        time.sleep(0.2)


@pytest.fixture(scope="module", params=SHAPES)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with service_of_shape(
        request,
        tmp_path_factory,
        "metrics",
        extra_env={"METRICS_TOKEN": TOKEN},
    ) as running:
        yield running


def test_a_scrape_sees_the_queue_then_the_workers_export_and_every_poll(service: Service) -> None:
    key = service.customer_create(CUSTOMER)
    started = time.time()
    created = service.request("POST", "/_rest/v4/dwh/Q", key=key, body=REQUEST_1)
    assert created.status == 201, created.body
    guid = created.json()["id"]

    # No worker yet: the query waits. (Both web processes are up once each has counted itself.)
    queued = scrape_until(service, lambda s: s.value("insights_processes", role="web") == 2)
    assert queued.value("insights_metadata_up") == 1
    assert queued.value("insights_queue_depth") == 1
    assert queued.value("insights_queries", status="Pending") == 1
    assert queued.value("insights_slots_in_use", customer=CUSTOMER) == 1
    assert queued.value("insights_slots_limit", customer=CUSTOMER) == 2
    assert queued.value("insights_processes", role="web") == 2

    # The pause keeps the run going for a few lease heartbeats (one a second) after its files are placed.
    service.worker_start(extra_env={"INSIGHTS_FAILPOINTS": "publish.committed=pause:2.5"})
    polls, status = 0, "Pending"
    deadline = time.monotonic() + 90
    while status == "Pending" and time.monotonic() < deadline:
        polled = service.request("GET", f"/_rest/v4/dwh/Q/{guid}/status", key=key)
        assert polled.status == 200, polled.body
        polls, status = polls + 1, polled.json()["status"]
        time.sleep(0.1)
    assert status == "Completed"
    files = service.request("GET", f"/_rest/v4/dwh/Q/{guid}", key=key).json()["files"]

    done = scrape(service)
    engine = {"embedded": "duckdb", "production": "postgresql"}[service.shape.name]
    export = {"engine": engine, "storage": "local"}
    assert done.value("insights_export_rows_count", **export) == 1
    assert done.value("insights_export_rows_sum", **export) == sum(f["rows"] for f in files) > 0
    assert done.value("insights_export_bytes_sum", **export) == sum(f["size"] for f in files)
    assert done.value("insights_export_duration_seconds_count", **export) == 1
    # Both web processes answered polls; the scrape (answered by one of them) counts every one, once.
    assert done.value("insights_http_requests_total", method="GET", route=STATUS_ROUTE, status="200") == polls
    assert done.value("insights_http_request_duration_seconds_count", route=STATUS_ROUTE) == polls
    assert (
        done.value("insights_http_requests_total", method="POST", route="_rest/v4/dwh/Q", status="201") == 1
    )
    renewed = done.value("insights_lease_heartbeats_total", outcome="renewed")
    assert renewed is not None and renewed >= 1
    last_beat = done.value("insights_lease_heartbeat_last_timestamp_seconds")
    assert last_beat is not None and started < last_beat <= time.time()
    assert done.value("insights_queue_depth") == 0
    assert done.value("insights_queries", status="Completed") == 1
    assert done.value("insights_slots_in_use", customer=CUSTOMER) == 0
    pool = scrape_until(service, lambda s: s.value("insights_processes", role="worker") == 2)
    assert pool.value("insights_processes", role="worker") == 2

    service.workers_stop()
    stopped = scrape(service)
    assert stopped.value("insights_processes", role="worker") in (None, 0), "pool processes that ended"
    assert stopped.value("insights_export_rows_count", **export) == 1, "totals outlive their processes"


def test_a_killed_web_process_is_counted_once_and_its_replacement_once(service: Service) -> None:
    """A second gunicorn on the same service (its 2 processes write into the same directory); one of its
    processes is killed with SIGKILL, which no process can report itself: the master's child_exit does."""
    metrics_dir = Path(service.env["PROMETHEUS_MULTIPROC_DIR"])
    extra = service.web_start(free_port())
    try:
        assert (
            scrape_until(service, lambda s: s.value("insights_processes", role="web") == 4).value(
                "insights_processes", role="web"
            )
            == 4
        )
        victim, survivor = process_children(extra.pid)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            children = set(process_children(extra.pid))
            replacements = children - {victim, survivor}
            if replacements and all(
                list(metrics_dir.glob(f"gauge_livesum_*-{pid}.db")) for pid in replacements
            ):
                break
            time.sleep(0.2)
        assert replacements, "gunicorn did not replace the killed process"
        assert not list(metrics_dir.glob(f"gauge_livesum_*-{victim}.db")), "child_exit removed its live gauge"
        assert scrape(service).value("insights_processes", role="web") == 4
    finally:
        _stop(extra)
    assert scrape(service).value("insights_processes", role="web") == 2
