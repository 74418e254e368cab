"""The key that encrypts destination secrets at rest is never one the source code could derive.

The embedded default generates a random key once per var dir (beside the database it protects); any other
metadata database, and production, refuse to start without INSIGHTS_SECRETS_KEY."""

from __future__ import annotations

import base64
import hashlib
import stat
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet, InvalidToken

from insights.secrets import LOCAL_KEY_FILE, local_key, secrets_decrypt, secrets_encrypt
from tests.service import ROOT

START = "import django; django.setup(); print('started')"


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", START],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "insights.settings", **env},
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    "env",
    [
        {"DATABASE_URL": "postgresql://insights@127.0.0.1:1/insights"},
        {"INSIGHTS_PRODUCTION": "1", "DJANGO_SECRET_KEY": "x" * 50, "DJANGO_ALLOWED_HOSTS": "example.com"},
    ],
    ids=["postgresql-metadata", "production"],
)
def test_no_start_without_a_secrets_key_beside_a_shared_database_or_in_production(env, tmp_path):
    refused = _start({**env, "INSIGHTS_VAR_DIR": str(tmp_path)})
    assert refused.returncode != 0
    assert "INSIGHTS_SECRETS_KEY must be set" in refused.stderr
    started = _start(
        {**env, "INSIGHTS_VAR_DIR": str(tmp_path), "INSIGHTS_SECRETS_KEY": Fernet.generate_key().decode()}
    )
    assert started.returncode == 0, started.stderr[-2000:]


def test_the_embedded_default_generates_a_random_private_key_once_per_var_dir(settings, tmp_path):
    settings.SECRETS_KEY = ""
    settings.VAR_DIR = tmp_path / "one"
    token = secrets_encrypt({"password": "hunter2"})
    key_file = tmp_path / "one" / LOCAL_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = key_file.read_text()
    assert secrets_decrypt(token) == {"password": "hunter2"}
    assert local_key() == first.strip(), "the key is made once and then reused"

    settings.VAR_DIR = (
        tmp_path / "two"
    )  # another installation: another key, so its dump decrypts nothing here
    assert local_key() != first.strip()
    with pytest.raises(InvalidToken):
        Fernet(first.strip().encode()).decrypt(secrets_encrypt({"password": "x"}).encode())


def test_the_key_is_not_the_one_derived_from_the_source(settings, tmp_path):
    """The old development key was sha256 of a constant in settings.py: anyone with the source could decrypt
    a database dump. It no longer decrypts anything."""
    settings.SECRETS_KEY = ""
    settings.VAR_DIR = tmp_path
    token = secrets_encrypt({"password": "hunter2"})
    derived = base64.urlsafe_b64encode(hashlib.sha256(b"insecure-development-key-do-not-deploy").digest())
    with pytest.raises(InvalidToken):
        Fernet(derived).decrypt(token.encode())
