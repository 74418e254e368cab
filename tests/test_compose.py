"""docker-compose.yml cannot be run here (no Docker engine): check that what it names exists."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APP_SERVICES = ["web", "worker", "beat", "migrate"]
SETTINGS_SOURCE = (ROOT / "insights" / "settings.py").read_text()


def test_compose_has_every_service_of_the_design():
    assert set(COMPOSE["services"]) >= {"web", "worker", "beat", "redis", "postgres", "sftp", "minio"}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_command_names_modules_that_exist(name):
    argv = shlex.split(COMPOSE["services"][name]["command"])
    if argv[0] == "gunicorn":
        module, _, attribute = argv[1].partition(":")
        assert hasattr(importlib.import_module(module), attribute or "application")
    elif argv[0] == "celery":
        app_module = argv[argv.index("-A") + 1]
        assert importlib.import_module(app_module).celery_app.main == "insights"
        assert argv[3] in {"worker", "beat"}
    elif argv[:2] == ["python", "manage.py"]:
        assert (ROOT / "manage.py").exists()
        assert argv[2] in get_commands()
    else:
        pytest.fail(f"unexpected command {argv}")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_environment_is_read_by_settings(name):
    for variable in COMPOSE["services"][name]["environment"]:
        assert re.search(rf'"{variable}"', SETTINGS_SOURCE), f"{variable} is not read by insights/settings.py"


def test_dockerfile_installs_the_requirements():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements.txt" in dockerfile
    assert (ROOT / "deploy" / "postgres-init.sql").exists()
