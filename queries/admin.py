"""Operators' view of queries: filter, search, inspect, cancel."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from exports.errors import StorageError
from insights.admin_actions import OperatorActions
from insights.destinations import destination_default
from queries.apis import file_chunks
from queries.delivery import query_storage, result_redeliver
from queries.errors import ConcurrencyLimitReached, QueryConflict, ResultUnavailable
from queries.export_settings import APPLIES, DEFAULTS
from queries.models import IdempotencyKey, QueryRequest, QuerySlice, QueryStatus
from queries.result_rows import FIRST_ROWS, result_first_rows
from queries.serializers import ExportSerializer
from queries.services import export_delete, query_cancel, query_create
from queries.validation import QueryValidationError

REUSES_SHOWN = 20  # on a query's page, of the queries that reuse its result
# The type tags of a plan's parameters (queries.plan), as an operator reads them.
PARAMETER_TYPES = {"s": "string", "i": "integer", "f": "float", "b": "boolean", "t": "timestamp", "d": "date"}


class QuerySliceInline(admin.TabularInline):
    """A big export's slices (queries.slice_lifecycle), while they run: which worker state each is in, how far
    it got. Read-only: slices are the run's business (rows of a published query are gone)."""

    model = QuerySlice
    extra = 0
    can_delete = False
    fields = ("index", "attempt", "state", "runs", "lower", "upper", "rows", "bytes", "lease_expires_at")
    readonly_fields = fields
    ordering = ("attempt", "index")
    verbose_name_plural = "Slices (one query, many workers)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReuseFilter(admin.SimpleListFilter):
    """Queries that ran (or will) apart from reuses of another's result (max_age, queries.reuse)."""

    title = "reuse"
    parameter_name = "reuse"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Reused another's result"), ("no", "Ran itself")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[QueryRequest]) -> QuerySet[QueryRequest]:
        if self.value() in ("yes", "no"):
            return queryset.filter(reused_from__isnull=self.value() == "no")
        return queryset


@admin.register(QueryRequest)
class QueryRequestAdmin(OperatorActions):
    # Fits 1280 px beside the filters: times to the second, the description cut short, the run time instead of
    # its two ends, the attempt beside the status when there was more than one.
    list_display = (
        "guid",
        "customer",
        "status_shown",
        "description_short",
        "output_format",
        "submitted",
        "duration",
        "rows",
    )
    list_filter = ("status", ReuseFilter, "customer")
    search_fields = ("guid", "fingerprint", "description", "filename")
    list_select_related = ("customer",)
    date_hierarchy = "submitted_at"
    actions = ("cancel_queries", "rerun_queries", "redeliver_queries", "delete_results")
    exclude = ("body", "plan", "files", "publication", "output", "summary")
    inlines = (QuerySliceInline,)
    fieldsets = (
        (None, {"fields": ("customer", "status", "messages")}),  # the guid is the page's title
        ("Request", {"fields": ("reused_from_link", "reuses_shown", "idempotency_keys_shown")}),
        (
            "Export",
            {
                "fields": (
                    "author",
                    "description",
                    "filename",
                    "effective_output",
                    "destination_shown",
                    "pretty_export",
                )
            },
        ),
        ("Query", {"fields": ("pretty_body", "fingerprint", "pretty_plan")}),
        (
            "Timings",
            {
                "fields": (
                    "submitted",
                    "started",
                    "finished",
                    "duration",
                    "attempts",
                    "lease_until",
                    "enqueued",
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
                    "part_links",
                    "manifest_path",
                    "first_rows",
                    "pretty_summary",
                )
            },
        ),
    )

    # Every field shown is read-only (the guid is the page's title): derived, so the two lists cannot drift.
    readonly_fields = ("guid", *(str(name) for _, options in fieldsets for name in options["fields"]))

    change_list_template = "admin/queries/change_list_live_link.html"

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        """One heading, "Query <guid>", instead of "View query request" over the guid as a subtitle."""
        query = (
            QueryRequest.objects.filter(pk=object_id).only("guid").first() if object_id.isdigit() else None
        )
        titles = {"title": f"Query {query.guid}", "subtitle": None} if query else {}
        return super().change_view(request, object_id, form_url, {**titles, **(extra_context or {})})

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # The dashboard links each customer's pending queries by key.
        return lookup == "customer__key" or super().lookup_allowed(lookup, value, request)

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
        """Pending and running queries, grouped by customer, with slot use against the limit. A reuse following
        another query's run is listed (it is Pending) but holds no slot (queries.queue_eta.slots_held)."""
        live = QueryRequest.objects.filter(status=QueryStatus.PENDING).select_related(
            "customer", "reused_from"
        )
        grouped: dict[int, dict[str, Any]] = {}
        for query in live.order_by("customer__key", "submitted_at"):
            row = grouped.setdefault(query.customer_id, {"customer": query.customer, "live": [], "held": 0})
            row["live"].append(query)
            row["held"] += query.reused_from_id is None
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

    @admin.display(description="status", ordering="status")
    def status_shown(self, obj: QueryRequest) -> str:
        return obj.status if obj.attempts < 2 else f"{obj.status} (attempt {obj.attempts})"

    @admin.display(description="description")
    def description_short(self, obj: QueryRequest) -> str:
        return obj.description if len(obj.description) <= 20 else obj.description[:19] + "…"

    @admin.display(description="rows", ordering="row_count")
    def rows(self, obj: QueryRequest) -> str:
        return "-" if obj.row_count is None else str(obj.row_count)

    @admin.display(description="submitted", ordering="submitted_at")
    def submitted(self, obj: QueryRequest) -> str:
        return _to_the_second(obj.submitted_at)

    @admin.display(description="started", ordering="started_at")
    def started(self, obj: QueryRequest) -> str:
        return _to_the_second(obj.started_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, obj: QueryRequest) -> str:
        return _to_the_second(obj.finished_at)

    @admin.display(description="lease until")
    def lease_until(self, obj: QueryRequest) -> str:
        return _to_the_second(obj.lease_expires_at)

    @admin.display(description="enqueued")
    def enqueued(self, obj: QueryRequest) -> str:
        return _to_the_second(obj.enqueued_at)

    @admin.display(description="output")
    def effective_output(self, obj: QueryRequest) -> str:
        """Every option the files were (or will be) written with, defaults included."""
        chosen = str(obj.output.get("format", DEFAULTS["format"]))
        options = APPLIES.get(chosen, ("format",))
        return ", ".join(
            f"{option} {obj.output.get(option, DEFAULTS.get(option, '-'))}" for option in options
        )

    @admin.display(description="destination")
    def destination_shown(self, obj: QueryRequest) -> str:
        """Where the files are; before they are published, where new results of this customer go."""
        if obj.destination is not None:
            return str(obj.destination)
        local = "this server's local storage"
        if obj.files or obj.status in (QueryStatus.COMPLETED, QueryStatus.EXPIRED):
            return local
        return f"not published; new results go to {destination_default(obj.customer) or local}"

    @admin.display(description="files")
    def part_links(self, obj: QueryRequest) -> str:
        """Each part with its download (through the admin: file_view), rows, size and checksum."""
        if not obj.files:
            return "-"
        rows = (
            (
                reverse("admin:queries_queryrequest_file", args=(obj.pk, n)),
                entry["path"].rsplit("/", 1)[-1],
                entry.get("rows", "-"),
                filesizeformat(entry.get("size", 0)),
                entry.get("sha256", ""),
                entry.get("sha256", "")[:12],
            )
            for n, entry in enumerate(obj.files)
        )
        return format_html(
            '<div class="table-box"><table class="parts"><thead><tr><th>part</th><th>rows</th><th>size</th>'
            "<th>sha256</th></tr></thead><tbody>{}</tbody></table></div>",
            format_html_join(
                "",
                '<tr><td class="name"><a href="{}" class="part-download">{}</a></td><td>{}</td><td>{}</td>'
                '<td><code title="{}">{}…</code></td></tr>',
                rows,
            ),
        )

    @admin.display(description=f"first {FIRST_ROWS} rows")
    def first_rows(self, obj: QueryRequest) -> str:
        """Read back from the first part, where the customer gets it (queries.result_rows)."""
        if obj.status != QueryStatus.COMPLETED:
            return "-"
        shown = result_first_rows(obj)
        if shown.note:
            return format_html('<p class="first-rows-note">{}</p>', shown.note)
        return format_html(
            '<div class="table-box"><table class="first-rows"><thead><tr>{}</tr>'
            "</thead><tbody>{}</tbody></table></div>",
            format_html_join("", "<th>{}</th>", ((column,) for column in shown.columns)),
            format_html_join(
                "",
                "<tr>{}</tr>",
                ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in shown.rows),
            ),
        )

    @admin.display(description="the export, as the API shows it")
    def pretty_export(self, obj: QueryRequest) -> str:
        """The export object of GET /dwh/exports/{guid}."""
        return format_html(
            "<pre>{}</pre>", json.dumps(ExportSerializer(obj).data, indent=2, ensure_ascii=False)
        )

    @admin.display(description="body")
    def pretty_body(self, obj: QueryRequest) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.body_json, indent=2, ensure_ascii=False))

    @admin.display(description="summary")
    def pretty_summary(self, obj: QueryRequest) -> str:
        """One figure a line: the hour and day histograms would otherwise take a line per number."""
        if not obj.summary:
            return "-"
        figures = json.loads(obj.summary)
        lines = (
            f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}" for key, value in figures.items()
        )
        return format_html("<pre>{{\n{}\n}}</pre>", ",\n".join(lines))

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

    @admin.display(description="reused from")
    def reused_from_link(self, obj: QueryRequest) -> str:
        """The query whose result this one shares (or whose run it follows): it ran nothing itself."""
        if obj.reused_from_id is None:
            return "-"
        original = QueryRequest.objects.only("guid", "status").get(pk=obj.reused_from_id)
        return format_html(
            '<a href="{}">{}</a> ({})',
            reverse("admin:queries_queryrequest_change", args=(original.pk,)),
            original.guid,
            original.status,
        )

    @admin.display(description="reused by")
    def reuses_shown(self, obj: QueryRequest) -> str:
        """The queries sharing this one's result (deleting it expires them too): the first REUSES_SHOWN."""
        reuses = QueryRequest.objects.filter(reused_from=obj)
        total = reuses.count()
        if not total:
            return "-"
        first = reuses.order_by("submitted_at").only("guid", "status")[:REUSES_SHOWN]
        links = format_html_join(
            ", ",
            '<a href="{}">{}</a> ({})',
            (
                (reverse("admin:queries_queryrequest_change", args=(reuse.pk,)), reuse.guid, reuse.status)
                for reuse in first
            ),
        )
        more = total - REUSES_SHOWN
        return format_html("{} and {} more", links, more) if more > 0 else links

    @admin.display(description="Idempotency-Key")
    def idempotency_keys_shown(self, obj: QueryRequest) -> str:
        """The key the customer sent with the POST that created it, and when (a repeat got this query back)."""
        keys = IdempotencyKey.objects.filter(query=obj).order_by("created_at")
        if not keys:
            return "-"
        return format_html_join(
            ", ", "<code>{}</code> ({})", ((key.key, _to_the_second(key.created_at)) for key in keys)
        )

    @admin.display(description="run time")
    def duration(self, obj: QueryRequest) -> str:
        if obj.reused_from_id is not None:
            return "reused"  # its times are its original's: it ran nothing
        if obj.started_at and obj.finished_at:
            return f"{(obj.finished_at - obj.started_at).total_seconds():.3f} s"
        return "-"

    @admin.action(description="Cancel selected pending queries", permissions=["operate"])
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

    @admin.action(
        description="Re-run selected queries (as new queries of the same customer)", permissions=["operate"]
    )
    def rerun_queries(self, request: HttpRequest, queryset: QuerySet[QueryRequest]) -> None:
        for query in queryset.select_related("customer"):
            try:
                created = query_create(
                    customer=query.customer,
                    body=query.body_json,
                    author=f"{request.user.get_username()} (admin re-run)",
                )
            except (ConcurrencyLimitReached, QueryValidationError) as error:
                self.message_user(
                    request, f"Query {query.guid}: not re-run: {error.message}", messages.WARNING
                )
            else:
                self.message_user(request, f"Query {query.guid}: re-run as {created.guid}.", messages.SUCCESS)

    @admin.action(
        description="Re-deliver selected results to the customer's default destination",
        permissions=["operate"],
    )
    def redeliver_queries(self, request: HttpRequest, queryset: QuerySet[QueryRequest]) -> None:
        for query in queryset.filter(status=QueryStatus.COMPLETED).select_related("customer", "destination"):
            destination = destination_default(query.customer)
            workdir = Path(settings.VAR_DIR) / "work" / f"redeliver-{query.guid}"
            try:
                result_redeliver(query=query, destination=destination, workdir=workdir)
            except StorageError as error:
                self.message_user(request, f"Query {query.guid}: not re-delivered: {error}", messages.ERROR)
            else:
                where = destination or "local storage"
                self.message_user(request, f"Query {query.guid}: re-delivered to {where}.", messages.SUCCESS)

    @admin.action(
        description="Delete selected results (their files too, as the customer's DELETE)",
        permissions=["remove"],
    )
    def delete_results(self, request: HttpRequest, queryset: QuerySet[QueryRequest]) -> None:
        """DELETE /dwh/exports/{guid} for each: Pending ones are canceled, ended ones become Deleted and their
        files go from their destination. The row stays (the customer's GET then answers 410, not 404)."""
        for query in queryset.select_related("customer", "destination"):
            try:
                done = export_delete(query=query)
            except (ResultUnavailable, QueryConflict) as error:
                self.message_user(
                    request, f"Query {query.guid}: not deleted: {error.message}", messages.ERROR
                )
            else:
                state = "cancel requested" if done.status == QueryStatus.PENDING else done.status
                self.message_user(request, f"Query {query.guid}: {state}.", messages.SUCCESS)

    def has_delete_permission(self, request: HttpRequest, obj: QueryRequest | None = None) -> bool:
        """Removing a row would leave its files behind forever (retention works from the rows) and turn the
        customer's 410 into a 404: results are deleted with the "Delete selected results" action instead."""
        return False


def _to_the_second(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else "-"
