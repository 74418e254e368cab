"""gunicorn's settings for every web process of Insights (gunicorn reads ./gunicorn.conf.py from its working
directory: the checkout, or /app in the image). The command line adds the bind address and the process count."""

import os

from django.conf import settings
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

# gunicorn 25+ opens a control socket under $HOME; in the image $HOME is the var volume that every web
# replica shares, and one instance would remove another's socket. Nothing here uses it.
control_socket_disable = True

# gunicorn's own lines (start-up, workers, the access line) go through the service's LOGGING, the one Django
# applies in each worker: JSON (or LOG_FORMAT=plain) at LOG_LEVEL, on stderr. The access line is structured
# by insights.gunicorn_logger (gunicorn's --log-level and access_log_format do not apply).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "insights.settings")
logconfig_dict = settings.LOGGING
logger_class = "insights.gunicorn_logger.GunicornLogger"


# Metrics (insights.metrics, imported when first called). A web process counts itself live until it exits;
# the master, which sees every exit (a SIGKILL's too), takes that away, and at start forgets this host's
# processes that died unannounced (a container killed and restarted).
def on_starting(server: Arbiter) -> None:
    from insights.metrics import dead_processes_forget

    dead_processes_forget()


def post_worker_init(worker: Worker) -> None:
    from insights.metrics import process_live

    process_live("web")


def child_exit(server: Arbiter, worker: Worker) -> None:
    from insights.metrics import process_dead

    process_dead(worker.pid)
