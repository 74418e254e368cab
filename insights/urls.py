"""The root URL map."""

from django.contrib import admin
from django.urls import include, path

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from insights.apis import AuthenticateApi

urlpatterns = [
    path("admin/", admin.site.urls),
    path("_rest/v4/authenticate", AuthenticateApi.as_view(), name="authenticate"),
    path("_rest/v4/schema", SpectacularAPIView.as_view(), name="schema"),
    path("_rest/v4/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("_rest/v4/", include("queries.urls")),
]
