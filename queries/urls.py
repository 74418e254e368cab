from django.urls import path

from queries import apis, export_apis, preview_apis

urlpatterns = [
    path("dwh/Q", apis.QueryCollectionApi.as_view(), name="query-collection"),
    path("dwh/Q/preview", preview_apis.QueryPreviewApi.as_view(), name="query-preview"),
    path("dwh/Q/<str:guid>/summary", preview_apis.QuerySummaryApi.as_view(), name="query-summary"),
    path("dwh/Q/<str:guid>/status", apis.QueryStatusApi.as_view(), name="query-status"),
    path("dwh/Q/<str:guid>/download", apis.QueryDownloadApi.as_view(), name="query-download"),
    path("dwh/Q/<str:guid>/download/<int:part>", apis.QueryDownloadApi.as_view(), name="query-download-part"),
    path(
        "dwh/Q/<str:guid>/download/<str:part>",
        apis.QueryPartNameApi.as_view(),
        name="query-download-bad-part",
    ),
    path("dwh/Q/<str:guid>", apis.QueryDetailApi.as_view(), name="query-detail"),
    path("dwh/summary", preview_apis.WindowSummaryApi.as_view(), name="summary"),
    path("dwh/exports", export_apis.ExportCollectionApi.as_view(), name="export-collection"),
    path("dwh/exports/<str:guid>", export_apis.ExportDetailApi.as_view(), name="export-detail"),
]
