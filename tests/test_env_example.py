""".env.example is the configuration reference: it names every variable the code reads (and nothing else), and
a shell can source it as it stands and start the service on the embedded defaults."""

from __future__ import annotations

import re
import subprocess

from tests.service import BIN, ROOT

EXAMPLE = ROOT / ".env.example"
# Read by a program the project runs rather than by its code: gunicorn binds 0.0.0.0:$PORT; docker-compose.yml
# interpolates the passwords of the PostgreSQL and MinIO it starts.
READ_ELSEWHERE = {"PORT", "POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"}
_READ = re.compile(r"""(?:env_(?:str|int|bool|list)|os\.environ\.get)\(\s*["']([A-Z][A-Z0-9_]*)["']""")


def _read_by_code() -> set[str]:
    names: set[str] = set()
    for package in ("insights", "queries", "exports", "webhooks", "schedules"):
        for path in (ROOT / package).rglob("*.py"):
            names.update(_READ.findall(path.read_text()))
    return names - {"DJANGO_SETTINGS_MODULE"}


def _listed() -> list[str]:
    return re.findall(r"^([A-Z][A-Z0-9_]*)=", EXAMPLE.read_text(), flags=re.MULTILINE)


def test_every_variable_the_code_reads_is_listed_once() -> None:
    listed = _listed()
    assert len(listed) == len(set(listed)), "a variable is listed twice"
    read = _read_by_code()
    assert len(read) > 30, "the scan of the code found too little: is the pattern still right?"
    assert sorted(read - set(listed)) == [], "read by the code but missing from .env.example"
    assert sorted(set(listed) - read - READ_ELSEWHERE) == [], "listed but read by nothing"
    compose = (ROOT / "docker-compose.yml").read_text()
    assert all(f"${{{name}" in compose for name in READ_ELSEWHERE - {"PORT"})


def test_every_line_reads_the_same_in_a_shell_and_in_docker_compose() -> None:
    """Compose's .env reader does not strip a comment after an empty value (`NAME=   # text` is the value
    "# text"), and a shell would split a value with spaces: every assignment is a bare NAME=value."""
    for number, line in enumerate(EXAMPLE.read_text().splitlines(), start=1):
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*=[^\s#'\"]*", line), f".env.example:{number}: {line!r}"


def test_the_example_sources_cleanly_and_the_service_starts_on_it(tmp_path) -> None:
    """`set -a; . ./.env.example` then Django's checks and a Celery worker's configuration, in a clean
    environment (nothing from this shell), with the var dir pointed at a scratch directory."""
    script = (
        "set -eu; set -a; . ./.env.example; set +a; "
        f"export INSIGHTS_VAR_DIR={tmp_path}; "
        "python manage.py check --fail-level WARNING; "
        "python -c 'import django; django.setup(); from django.conf import settings as s; "
        'print(s.DATABASES["default"]["ENGINE"], s.CELERY_BROKER_URL, s.WAREHOUSE_URL)\'; '
        "celery -A insights report >/dev/null"
    )
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "insights.settings"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-3:] == [
        "django.db.backends.sqlite3",
        "filesystem://localhost//",  # .env.example's filesystem://, with the host kombu assumes
        f"duckdb:///{tmp_path}/warehouse.duckdb",
    ]
