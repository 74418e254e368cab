"""Root fixtures: real servers (session scope) shared by every test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.servers import PostgresServer, RedisServer, postgres_server, redis_server

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
def redis() -> Iterator[RedisServer]:
    """A throwaway Redis server on a free port."""
    with redis_server() as server:
        yield server
