"""Operators' view of queries: filter, search, inspect, cancel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from exports.errors import StorageError
from insights.destinations import destination_default
from queries.apis import file_chunks
from queries.delivery import query_storage, result_redeliver
from queries.errors import ConcurrencyLimitReached, QueryConflict
from queries.models import QueryRequest, QueryStatus
from queries.serializers import ExportSerializer
from queries.services import query_cancel, query_create
from queries.validation import QueryValidationError

# The type tags of a plan's parameters (queries.plan), as an operator reads them.
PARAMETER_TYPES = {"s": "string", "i": "integer", "f": "float", "b": "boolean", "t": "timestamp"}


@admin.register(QueryRequest)
class QueryRequestAdmin(admin.ModelAdmin):
    list_display = (
        "guid",
        "customer",
        "status",
        "description",
        "output_format",
        "submitted_at",
        "started_at",
        "finished_at",
        "row_count",
        "attempts",
    )
    list_filter = ("status", "customer")
    search_fields = ("guid", "fingerprint", "description", "filename")
    list_select_related = ("customer",)
    date_hierarchy = "submitted_at"
    actions = ("cancel_queries", "rerun_queries", "redeliver_queries")
    readonly_fields = (
        "guid",
        "customer",
        "status",
        "messages",
        "author",
        "description",
        "filename",
        "pretty_export",
        "pretty_body",
        "fingerprint",
        "pretty_plan",
        "submitted_at",
        "started_at",
        "finished_at",
        "duration",
        "attempts",
        "lease_expires_at",
        "enqueued_at",
        "cancel_requested",
        "progress_rows",
        "progress_bytes",
        "row_count",
        "pretty_files",
        "manifest_path",
        "pretty_summary",
    )
    exclude = ("body", "plan", "files", "publication", "output", "summary")
    fieldsets = (
        (None, {"fields": ("guid", "customer", "status", "messages")}),
        ("Export", {"fields": ("author", "description", "filename", "pretty_export")}),
        ("Query", {"fields": ("pretty_body", "fingerprint", "pretty_plan")}),
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
                    "enqueued_at",
                    "cancel_requested",
                )
            },
        ),
        (
            "Result",
            {
                "fields": (
                    "progress_rows",
                    "progress_bytes",
                    "row_count",
                    "pretty_files",
                    "manifest_path",
                    "pretty_summary",
                )
            },
        ),
    )

    change_list_template = "admin/queries/change_list_live_link.html"

    def get_urls(self) -> list[URLPattern]:
        live = path("live/", self.admin_site.admin_view(self.live_view), name="queries_queryrequest_live")
        part = path(
            "<int:object_id>/file/<int:part>/",
            self.admin_site.admin_view(self.file_view),
            name="queries_queryrequest_file",
        )
        return [live, part, *super().get_urls()]

    def file_view(self, request: HttpRequest, object_id: int, part: int) -> StreamingHttpResponse:
        """One of a result's files, for an operator (the API's downloads take a customer's credential)."""
        query = QueryRequest.objects.filter(pk=object_id).select_related("destination").first()
        if query is None or not 0 <= part < len(query.files):
            raise Http404("no such file")
        entry = query.files[part]
        storage = query_storage(query)
        try:
            stream = storage.open(entry["path"])
        except StorageError as error:
            storage.close()
            raise Http404(f"the file cannot be read: {error}") from None
        response = StreamingHttpResponse(
            file_chunks(stream, storage), content_type="application/octet-stream"
        )
        response["Content-Disposition"] = f'attachment; filename="{entry["path"].rsplit("/", 1)[-1]}"'
        return response

    def live_view(self, request: HttpRequest) -> TemplateResponse:
        """Pending and running queries, grouped by customer, with slot use against the limit."""
        live = QueryRequest.objects.filter(status=QueryStatus.PENDING).select_related("customer")
        grouped: dict[int, dict[str, Any]] = {}
        for query in live.order_by("customer__key", "submitted_at"):
            grouped.setdefault(query.customer_id, {"customer": query.customer, "live": []})["live"].append(
                query
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Live queries",
            "customers": list(grouped.values()),
        }
        return TemplateResponse(request, "admin/queries/live.html", context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: QueryRequest | None = None) -> bool:
        return False

    @admin.display(description="format")
    def output_format(self, obj: QueryRequest) -> str:
        return str(obj.output.get("format", "csv"))

    @admin.display(description="the export, as the API shows it")
    def pretty_export(self, obj: QueryRequest) -> str:
        """The export object of GET /dwh/exports/{guid}, and a link to each file."""
        export = ExportSerializer(obj).data
        links = [
            format_html(
                '<a href="{}">{}</a>',
                reverse("admin:queries_queryrequest_file", args=(obj.pk, n)),
                entry["path"],
            )
            for n, entry in enumerate(obj.files)
        ]
        return format_html(
            "<pre>{}</pre>{}",
            json.dumps(export, indent=2, ensure_ascii=False),
            format_html_join("", "<div>{}</div>", ((link,) for link in links)),
        )

    @admin.display(description="body")
    def pretty_body(self, obj: QueryRequest) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.body_json, indent=2, ensure_ascii=False))

    @admin.display(description="summary")
    def pretty_summary(self, obj: QueryRequest) -> str:
        if not obj.summary:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(json.loads(obj.summary), indent=2, ensure_ascii=False))

    @admin.display(description="compiled SQL and parameters")
    def pretty_plan(self, obj: QueryRequest) -> str:
        if not obj.plan:
            return "-"
        plan = json.loads(obj.plan)
        params = "\n".join(
            f"  ${number} = {value} ({PARAMETER_TYPES.get(kind, kind)})"
            for number, (kind, value) in enumerate(plan.get("params", []), start=1)
        )
        return format_html("<pre>{}</pre><pre>{}</pre>", plan.get("sql", ""), params or "")

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
                query_cancel(query=query)
                canceled += 1
            except QueryConflict:
                pass
        self.message_user(
            request,
            f"Cancel requested for {canceled} quer{'y' if canceled == 1 else 'ies'}.",
            messages.SUCCESS,
        )

    @admin.action(description="Re-run selected queries (as new queries of the same customer)")
    def rerun_queries(self, request: HttpRequest, queryset: QuerySet[QueryRequest]) -> None:
        for query in queryset.select_related("customer"):
            try:
                created = query_create(customer=query.customer, body=query.body_json)
            except (ConcurrencyLimitReached, QueryValidationError) as error:
                self.message_user(request, f"{query.guid}: not re-run: {error.message}", messages.WARNING)
            else:
                self.message_user(request, f"{query.guid}: re-run as {created.guid}.", messages.SUCCESS)

    @admin.action(description="Re-deliver selected results to the customer's default destination")
    def redeliver_queries(self, request: HttpRequest, queryset: QuerySet[QueryRequest]) -> None:
        for query in queryset.filter(status=QueryStatus.COMPLETED).select_related("customer", "destination"):
            destination = destination_default(query.customer)
            workdir = Path(settings.VAR_DIR) / "work" / f"redeliver-{query.guid}"
            try:
                result_redeliver(query=query, destination=destination, workdir=workdir)
            except StorageError as error:
                self.message_user(request, f"{query.guid}: not re-delivered: {error}", messages.ERROR)
            else:
                where = destination or "local storage"
                self.message_user(request, f"{query.guid}: re-delivered to {where}.", messages.SUCCESS)
