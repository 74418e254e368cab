"""The root URL map."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views import defaults
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from insights.admin_login import admin_login
from insights.apis import AuthenticateApi
from queries.apis import api_path_not_found
from webhooks.apis import WebhookApi

# The schema and its docs page are public, and ignore any Authorization header (a stale token must not hide them).
PUBLIC = {"authentication_classes": [], "permission_classes": [AllowAny]}

urlpatterns = [
    path("", TemplateView.as_view(template_name="insights/landing.html"), name="landing"),
    path("admin/login/", admin_login, name="admin-login"),  # before the admin's own: throttled
    path("admin/", admin.site.urls),
    path("_rest/v4/authenticate", AuthenticateApi.as_view(), name="authenticate"),
    path("_rest/v4/schema", SpectacularAPIView.as_view(**PUBLIC), name="schema"),
    path("_rest/v4/docs", SpectacularSwaggerView.as_view(url_name="schema", **PUBLIC), name="docs"),
    path("_rest/v4/webhook", WebhookApi.as_view(), name="webhook"),
    path("_rest/v4/", include("queries.urls")),
    path("_rest/v4/", include("schedules.urls")),
]


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A URL no route matches: JSON under the API (never Django's HTML page), the HTML page elsewhere."""
    if request.path.startswith("/_rest/"):
        return api_path_not_found(request)
    return defaults.page_not_found(request, exception)


handler404 = page_not_found
