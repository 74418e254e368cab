"""GET /metrics and the HTTP middleware through Django's test client; the multiprocess files of a process.

What the service's processes write and a scrape merges is tested end to end (tests/test_metrics_e2e.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from insights import metrics
from tests.service import ROOT

TOKEN = "metrics-test-token-0123456789"
ROUTE = "_rest/v4/dwh/Q/<str:guid>/status"


def _requests(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("insights_http_requests_total", labels) or 0.0


def _route_labels() -> set[str]:
    (family,) = [m for m in REGISTRY.collect() if m.name == "insights_http_requests"]
    return {sample.labels["route"] for sample in family.samples}


@pytest.fixture()
def scrape_dir(settings, tmp_path):
    """An empty multiprocess directory for the view to merge (the test process's own files live elsewhere)."""
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    return tmp_path


# -- the middleware ---------------------------------------------------------------------------------------------


def test_requests_are_counted_by_their_url_pattern_never_their_path(client):
    guid = uuid.uuid4().hex
    before = _requests("GET", ROUTE, "401")
    assert client.get(f"/_rest/v4/dwh/Q/{guid}/status").status_code == 401
    assert _requests("GET", ROUTE, "401") - before == 1
    assert not [label for label in _route_labels() if guid in label]
    assert (
        REGISTRY.get_sample_value("insights_http_request_duration_seconds_count", {"route": ROUTE}) or 0
    ) >= 1


def test_the_landing_page_is_labelled_slash_not_empty(client):
    before = _requests("GET", "/", "200")
    assert client.get("/").status_code == 200
    assert _requests("GET", "/", "200") - before == 1
    assert "" not in _route_labels()


def test_a_path_no_pattern_matches_is_one_label_and_odd_methods_are_other(client):
    before = _requests("GET", metrics.UNMATCHED, "404"), _requests("other", metrics.UNMATCHED, "404")
    client.get(f"/no/such/page-{uuid.uuid4().hex}")
    client.generic("BREW", f"/coffee-{uuid.uuid4().hex}")
    after = _requests("GET", metrics.UNMATCHED, "404"), _requests("other", metrics.UNMATCHED, "404")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    assert not [label for label in _route_labels() if "page-" in label or "coffee-" in label]


@pytest.mark.django_db
def test_probes_and_scrapes_are_not_counted(client, scrape_dir):
    before = sum(s.value for m in REGISTRY.collect() if m.name == "insights_http_requests" for s in m.samples)
    client.get("/healthz")
    client.get("/metrics")
    after = sum(s.value for m in REGISTRY.collect() if m.name == "insights_http_requests" for s in m.samples)
    assert after == before


# -- GET /metrics: who may read it -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_with_a_token_only_its_bearer_reads_the_metrics(client, settings, scrape_dir):
    settings.METRICS_TOKEN = TOKEN
    refused = [
        client.get("/metrics"),
        client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token-0123456789"),
        client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}"),
        client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x"),
    ]
    assert {r.status_code for r in refused} == {401}
    assert {r.content for r in refused} == {b"401 Unauthorized\n"}, (
        "every refusal says the same, nothing more"
    )
    assert refused[0]["WWW-Authenticate"] == 'Bearer realm="metrics"'
    # A token is for scrapers elsewhere: it works from any address.
    allowed = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", REMOTE_ADDR="10.1.2.3")
    assert allowed.status_code == 200
    assert allowed["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "no-store" in allowed["Cache-Control"]
    assert b"# TYPE insights_queue_depth gauge" in allowed.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("address", "headers", "status"),
    [
        ("127.0.0.1", {}, 200),
        ("::1", {}, 200),
        ("::ffff:127.0.0.1", {}, 200),
        ("10.1.2.3", {}, 403),
        ("127.0.0.1", {"HTTP_X_FORWARDED_FOR": "203.0.113.9"}, 403),  # a proxy on this host relayed it
        ("127.0.0.1", {"HTTP_X_FORWARDED_PROTO": "https"}, 403),
    ],
)
def test_without_a_token_only_local_requests_read_the_metrics(
    client, settings, scrape_dir, address, headers, status
):
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics", REMOTE_ADDR=address, **headers)
    assert response.status_code == status
    assert (b"insights_" in response.content) == (status == 200)


@pytest.mark.django_db
def test_metrics_answer_any_host_over_plain_http_and_only_to_reads(client, settings, scrape_dir):
    """A scraper inside the deployment asks http://web:8000/metrics while ALLOWED_HOSTS names the public host
    and production redirects plain HTTP."""
    settings.METRICS_TOKEN = TOKEN
    settings.ALLOWED_HOSTS = ["insights.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}", "HTTP_HOST": "web:8000"}
    assert client.get("/metrics", **auth).status_code == 200
    assert client.head("/metrics", **auth).status_code == 200
    assert client.post("/metrics", **auth).status_code == 405
    assert client.get("/_rest/v4/dwh/Q", HTTP_HOST="web:8000").status_code == 400  # DisallowedHost


@pytest.mark.django_db
def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(client, settings, scrape_dir):
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response.content.endswith(b"# EOF\n")


def test_a_short_token_stops_the_service_at_start(tmp_path):
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "insights.settings",
            "INSIGHTS_VAR_DIR": str(tmp_path),
            "METRICS_TOKEN": "short",
        },
        capture_output=True,
        text=True,
    )
    assert started.returncode != 0
    assert "METRICS_TOKEN must be at least 16 characters" in started.stderr


# -- a process's files -----------------------------------------------------------------------------------------


def test_a_process_writes_files_named_by_its_host_and_pid(settings):
    metrics.process_live("test")
    path = Path(settings.PROMETHEUS_MULTIPROC_DIR) / f"gauge_livesum_{metrics.process_identity()}.db"
    assert path.is_file()
    assert metrics.process_identity().endswith(f"-{os.getpid()}")
    assert "_" not in metrics.process_identity(), "prometheus-client splits file names at '_'"


def test_files_of_dead_processes_of_this_host_are_forgotten_and_no_one_elses(settings, tmp_path):
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead, live = metrics.process_identity(int(gone.stdout)), metrics.process_identity()
    names = [
        f"gauge_livesum_{dead}.db",
        f"counter_{dead}.db",
        f"gauge_livesum_{live}.db",
        f"counter_{live}.db",
        "gauge_livesum_otherhost-1.db",  # another container: its pids mean nothing here
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")

    assert metrics.dead_processes_forget() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])
    assert metrics.dead_processes_forget(totals=True) == 1  # make run: every process starts from zero
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])
