"""The Celery application, configured from Django settings (CELERY_* names)."""

import os
from pathlib import Path

from celery import Celery, signals
from django.conf import settings

from insights.logs import log_context_clear, logging_configure

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "insights.settings")

app = Celery("insights")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def _logging_setup(**kwargs: object) -> None:
    """Worker and beat log through the service's LOGGING (one JSON object per line), not Celery's own handler
    and formatter; with a receiver here Celery installs neither (and LOG_LEVEL, not --loglevel, applies)."""
    logging_configure(settings.LOGGING)


@signals.task_prerun.connect
@signals.task_postrun.connect
def _log_context_reset(**kwargs: object) -> None:
    """A run binds its guid, customer and attempt (queries.runner) until its task ends, so Celery's own
    "succeeded" line carries them too; no task inherits the previous one's."""
    log_context_clear()


# Metrics (insights.metrics, imported when called: it reads the settings, which import this module). A pool
# process counts itself live until it ends in order; a worker starting forgets its host's processes that died
# without saying so (a SIGKILL, a container killed).
@signals.worker_init.connect
def _metrics_worker_start(**kwargs: object) -> None:
    from insights.metrics import dead_processes_forget

    dead_processes_forget()


@signals.worker_process_init.connect
def _metrics_process_start(**kwargs: object) -> None:
    from insights.metrics import process_live

    process_live("worker")


@signals.worker_process_shutdown.connect
def _metrics_process_end(pid: int, **kwargs: object) -> None:
    from insights.metrics import process_dead

    process_dead(pid)


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
