"""The service's URL map plus the anchor of the polling benchmark: a bare DRF endpoint (no authentication,
no permission) doing one primary-key lookup of a QueryRequest (docs/DESIGN.md §7)."""

from __future__ import annotations

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from insights.urls import urlpatterns as service_urlpatterns
from queries.models import QueryRequest

BARE_PATH = "_bench/bare/"


class BareLookupApi(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)

    def get(self, request: Request, pk: int) -> Response:
        query = QueryRequest.objects.get(pk=pk)
        return Response({"status": query.status, "guid": query.guid})


urlpatterns = [*service_urlpatterns, path(f"{BARE_PATH}<int:pk>", BareLookupApi.as_view(), name="bench-bare")]
