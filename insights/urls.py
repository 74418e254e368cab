"""The root URL map."""

from django.contrib import admin
from django.urls import include, path

from insights.apis import AuthenticateApi

urlpatterns = [
    path("admin/", admin.site.urls),
    path("_rest/v4/authenticate", AuthenticateApi.as_view(), name="authenticate"),
    path("_rest/v4/", include("queries.urls")),
]
