"""Django's admin app, with queries.admin_site.InsightsAdminSite as its default site (INSTALLED_APPS names
this class instead of "django.contrib.admin"). A module of its own: it is imported before the models are
ready, so it imports none, and an AdminConfig in queries/apps.py would be taken for the queries app's own."""

from django.contrib.admin.apps import AdminConfig


class InsightsAdminConfig(AdminConfig):
    default_site = "queries.admin_site.InsightsAdminSite"
