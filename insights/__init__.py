"""The Insights project: settings, URL map, Celery app, customers and authentication."""

from insights.celery import app as celery_app

__all__ = ["celery_app"]
