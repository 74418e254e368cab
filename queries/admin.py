"""Operators' view of queries: filter, search, inspect, cancel."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from queries.errors import QueryConflict
from queries.models import QueryRequest, QueryStatus
from queries.services import query_cancel


@admin.register(QueryRequest)
class QueryRequestAdmin(admin.ModelAdmin):
    list_display = (
        "guid",
        "customer",
        "status",
        "submitted_at",
        "started_at",
        "finished_at",
        "row_count",
        "attempts",
    )
    list_filter = ("status", "customer")
    search_fields = ("guid", "fingerprint")
    list_select_related = ("customer",)
    date_hierarchy = "submitted_at"
    actions = ("cancel_queries",)
    readonly_fields = (
        "guid",
        "customer",
        "status",
        "messages",
        "pretty_body",
        "fingerprint",
        "compiled_sql",
        "submitted_at",
        "started_at",
        "finished_at",
        "duration",
        "attempts",
        "lease_expires_at",
        "cancel_requested",
        "progress_rows",
        "progress_bytes",
        "row_count",
        "pretty_files",
        "manifest_path",
    )
    exclude = ("body", "files")
    fieldsets = (
        (None, {"fields": ("guid", "customer", "status", "messages")}),
        ("Query", {"fields": ("pretty_body", "fingerprint", "compiled_sql")}),
        (
            "Timings",
            {
                "fields": (
                    "submitted_at",
                    "started_at",
                    "finished_at",
                    "duration",
                    "attempts",
                    "lease_expires_at",
                    "cancel_requested",
                )
            },
        ),
        (
            "Result",
            {"fields": ("progress_rows", "progress_bytes", "row_count", "pretty_files", "manifest_path")},
        ),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: QueryRequest | None = None) -> bool:
        return False

    @admin.display(description="body")
    def pretty_body(self, obj: QueryRequest) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.body, indent=2, ensure_ascii=False))

    @admin.display(description="files")
    def pretty_files(self, obj: QueryRequest) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.files, indent=2))

    @admin.display(description="run time")
    def duration(self, obj: QueryRequest) -> str:
        if obj.started_at and obj.finished_at:
            return f"{(obj.finished_at - obj.started_at).total_seconds():.3f} s"
        return "-"

    @admin.action(description="Cancel selected pending queries")
    def cancel_queries(self, request: HttpRequest, queryset: QuerySet[QueryRequest]) -> None:
        canceled = 0
        for query in queryset.filter(status=QueryStatus.PENDING):
            try:
                query_cancel(request=query)
                canceled += 1
            except QueryConflict:
                pass
        self.message_user(
            request,
            f"Cancel requested for {canceled} quer{'y' if canceled == 1 else 'ies'}.",
            messages.SUCCESS,
        )
