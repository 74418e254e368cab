"""`manage.py check --deploy` is clean with production settings, and production refuses insecure defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "INSIGHTS_PRODUCTION": "1",
    "DJANGO_SECRET_KEY": "p" * 20 + "Q7#kz!v9Lm2$Xr8@Wn4^Ht6&Jd1*Bs5(Fy3)Gc0",
    "DJANGO_ALLOWED_HOSTS": "insights.example.com",
    "INSIGHTS_SECRETS_KEY": Fernet.generate_key().decode(),
}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "INSIGHTS_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True
    )


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    done = _manage(
        "check", "--deploy", "--fail-level", "WARNING", env={**PRODUCTION, "INSIGHTS_VAR_DIR": str(tmp_path)}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_production_without_a_secret_key_does_not_start(tmp_path):
    env = {k: v for k, v in PRODUCTION.items() if k != "DJANGO_SECRET_KEY"}
    done = _manage("check", env={**env, "INSIGHTS_VAR_DIR": str(tmp_path)})
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in done.stderr


def test_a_bad_integer_setting_fails_at_start_up(tmp_path):
    done = _manage("check", env={"EXPORT_PART_BYTES": "lots", "INSIGHTS_VAR_DIR": str(tmp_path)})
    assert done.returncode != 0
    assert "EXPORT_PART_BYTES must be an integer" in done.stderr
