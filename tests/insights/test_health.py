"""Liveness and readiness probes: /healthz needs nothing; /readyz says which dependency is down."""

from __future__ import annotations

import duckdb
import pytest


def test_healthz_answers_without_credentials(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.django_db
def test_readyz_checks_every_dependency_and_names_the_one_down(client, settings, tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    settings.WAREHOUSE_URL = f"duckdb:///{warehouse}"
    settings.EXPORT_LOCAL_DIR = tmp_path / "exports"
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json()
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "warehouse": "ok", "storage": "ok"},
    }
    warehouse.unlink()
    down = client.get("/readyz")
    assert down.status_code == 503
    assert down.json()["checks"]["warehouse"] == "unavailable (WarehouseError)"
    assert down.json()["checks"]["database"] == "ok"
    assert str(warehouse) not in down.content.decode(), "a probe names what failed, not how it is configured"


def test_probes_are_not_redirected_to_https_in_production(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/admin/login/").status_code == 301


def test_probes_answer_whatever_host_they_are_sent_to(client, settings):
    """Compose's healthcheck asks http://127.0.0.1:8000/readyz while ALLOWED_HOSTS names the public host."""
    settings.ALLOWED_HOSTS = ["insights.example.com"]
    assert client.get("/healthz", HTTP_HOST="127.0.0.1:8000").status_code == 200
    assert client.get("/_rest/v4/dwh/Q", HTTP_HOST="127.0.0.1:8000").status_code == 400  # DisallowedHost


def test_head_of_a_probe_has_its_headers_and_no_body(client):
    response = client.head("/healthz")
    assert response.status_code == 200 and response.content == b""
    assert int(response["Content-Length"]) == len(client.get("/healthz").content)
