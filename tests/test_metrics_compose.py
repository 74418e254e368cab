"""docker-compose.yml gives web and the workers one metrics directory: a scrape of web must see the workers'.

No Docker engine runs here: like tests/test_compose.py, each app service's environment is the one compose would
give its container, and the service's own settings say where its metrics go."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.service import ROOT
from tests.test_compose import SERVICES, VOLUME_MOUNT, Mapping, service_env

PRINT_DIR = "from django.conf import settings; print(settings.PROMETHEUS_MULTIPROC_DIR)"


def test_web_worker_and_beat_write_their_metrics_into_one_directory_on_the_shared_volume() -> None:
    mapping = Mapping(hosts={}, volume=Path(VOLUME_MOUNT))
    directories = {}
    for name in ("web", "worker", "beat"):
        assert f"insights-var:{VOLUME_MOUNT}" in SERVICES[name]["volumes"], name
        done = subprocess.run(
            [sys.executable, "-c", PRINT_DIR],
            cwd=ROOT,
            env={**service_env(name, mapping), "DJANGO_SETTINGS_MODULE": "insights.settings"},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        directories[name] = done.stdout.strip()
    assert set(directories.values()) == {f"{VOLUME_MOUNT}/metrics"}, directories
