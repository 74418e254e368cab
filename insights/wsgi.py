"""WSGI entry point (gunicorn insights.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "insights.settings")
application = get_wsgi_application()
