"""The admin site: Insights branding, and the operator's dashboard on its index page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from queries.dashboard import dashboard_read


class InsightsAdminSite(admin.AdminSite):
    """Installed as `admin.site` by queries.admin_apps.InsightsAdminConfig, so every `@admin.register` lands
    here. Only the index reads the dashboard: it pings the workers, which takes up to a second."""

    site_header = "Insights"
    site_title = "Insights"
    index_title = "Operator's console"
    site_url = "/"
    index_template = "admin/queries/dashboard.html"
    # The index lists every model already; without the sidebar the query list fits 1280 px beside its filters.
    enable_nav_sidebar = False

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        return super().index(request, extra_context={"dashboard": dashboard_read(), **(extra_context or {})})
