"""The Celery application, configured from Django settings (CELERY_* names)."""

import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "insights.settings")

app = Celery("insights")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _broker_ready(sender: Celery, **kwargs: object) -> None:
    broker_folders_ensure()


def broker_folders_ensure() -> None:
    """The embedded filesystem broker needs its folders before the first message; Redis needs nothing."""
    if not str(app.conf.broker_url).startswith("filesystem"):
        return
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
