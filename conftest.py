"""Root fixtures: real servers (session scope) shared by every test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.servers import (
    PostgresServer,
    RedisServer,
    SparkServer,
    postgres_server,
    redis_server,
    spark_server,
)

# Timing-based checks make a property test's verdict depend on the machine's load; the suite runs on 2 cores
# beside real servers, so correctness is judged without them.
settings.register_profile("insights", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("insights")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server on a free port."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def spark_connect() -> Iterator[SparkServer]:
    """A throwaway Spark Connect server (local[2]) on a free port; started once, ~10 s."""
    with spark_server() as server:
        yield server


@pytest.fixture()
def demo_warehouse(settings, tmp_path):
    """A DuckDB warehouse of demo sessions (customers acme and globex), made the service's warehouse."""
    from exports.engines import engine_from_url
    from queries.catalog import catalog
    from queries.ingest import demo_table

    path = tmp_path / "warehouse.duckdb"
    engine = engine_from_url(f"duckdb:///{path}", read_only=False)
    engine.ensure_schema(catalog().warehouse_columns())
    engine.load(demo_table(customers=["acme", "globex"], sessions=600, seed=5))
    engine.close()
    settings.WAREHOUSE_URL = f"duckdb:///{path}"
    return path


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """A throwaway Redis server on a free port."""
    with redis_server() as server:
        yield server


@pytest.fixture()
def customer_factory(db):
    """Make customers: customer_factory("acme", max_concurrent_queries=1)."""
    from insights.models import Customer

    def make(key: str = "acme", **fields):
        return Customer.objects.create(key=key, name=key.title(), **fields)

    return make


@pytest.fixture()
def local_exports(settings, tmp_path):
    """Point local storage, worker scratch space and the var dir at a temporary directory."""
    settings.VAR_DIR = tmp_path
    settings.EXPORT_LOCAL_DIR = tmp_path / "exports"
    return settings.EXPORT_LOCAL_DIR


@pytest.fixture()
def completed_query_factory(db, local_exports):
    """A Completed query whose one part and manifest really exist in local storage."""
    import gzip
    import hashlib

    from django.utils import timezone

    from queries.models import QueryRequest, QueryStatus

    def make(customer, *, finished_at=None, rows=(b"a", b"b")):
        query = QueryRequest.objects.create(
            customer=customer, body='{"q": 1}', fingerprint="f" * 64, status=QueryStatus.COMPLETED
        )
        content = gzip.compress(b"FlowId\n" + b"\n".join(rows) + b"\n")
        part = f"reports/{customer.key}/{query.guid}_QueryExport_1__000000000000.csv.gz"
        manifest = f"reports/{customer.key}/{query.guid}_manifest.json"
        for key, data in ((part, content), (manifest, b"{}")):
            (local_exports / key).parent.mkdir(parents=True, exist_ok=True)
            (local_exports / key).write_bytes(data)
        query.files = [
            {
                "path": part,
                "size": len(content),
                "rows": len(rows),
                "bytes": 0,
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        ]
        query.manifest_path = manifest
        query.finished_at = finished_at or timezone.now()
        query.save()
        return query

    return make


@pytest.fixture()
def sent_tasks(monkeypatch):
    """Tasks handed to the broker, recorded instead of sent: [(name, args, countdown)]. The broker path itself
    is tested end to end, with real workers."""
    from insights.celery import app

    sent: list[tuple[str, tuple, float | None]] = []

    def send_task(name, args=(), countdown=None, **options):
        sent.append((name, tuple(args), countdown))

    monkeypatch.setattr(app, "send_task", send_task)
    return sent


@pytest.fixture(autouse=True)
def _no_warm_engines_left(settings):
    """In-process runs keep no engine (a test reads the warehouse it ran on with DuckDB settings of its own,
    which DuckDB refuses while this process holds the file otherwise: the worker processes of the end-to-end
    tests keep theirs, and test_runner turns it on), and engines kept warm by a test's dry runs are closed
    after it: a later test may load (write) the same warehouse file."""
    settings.WORKER_ENGINE_IDLE_SECONDS = 0
    yield
    from queries.warm_engines import warm_engines, worker_engines

    warm_engines.close_all()
    worker_engines.close_all()


@pytest.fixture(autouse=True)
def _fresh_cache(settings):
    """Each test gets its own in-memory cache (failed-authentication counts must not leak between tests)."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tests"}
    }
    from django.core.cache import cache

    cache.clear()
