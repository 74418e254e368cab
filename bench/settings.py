"""The service's settings plus the benchmark's bare endpoint (`bench.urls`); used by `bench.polling` only."""

from insights.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
