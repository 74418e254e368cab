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
