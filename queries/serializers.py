"""What the query API answers, said once: DRF output serializers. The views send their `.data`, and the OpenAPI
schema (drf-spectacular) is generated from the same classes (component names drop the `Serializer` suffix).

The bodies the seed document fixes byte for byte keep their spelling here: the location's `status` sentences,
the statuses' names, timestamps to the millisecond.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import prefetch_related_objects
from django.urls import get_script_prefix, reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from exports.schema import ColumnType
from queries.delivery import query_storage
from queries.models import QueryRequest, QueryStatus

GUID_PATTERN = "^[0-9a-f]{32}$"
PENDING_LOCATION = "Process has not finish yet, please verify the status of your request"
# A query's messages are shown once it has ended without a result.
ENDED_WITH_MESSAGES = (QueryStatus.FAILED, QueryStatus.CANCELED, QueryStatus.EXPIRED, QueryStatus.DELETED)
# Ended with a result whose files are gone: its location and downloads are a 410.
GONE = (QueryStatus.EXPIRED, QueryStatus.DELETED)


@extend_schema_field(
    {"type": "string", "pattern": GUID_PATTERN, "example": "4d1c3ff0a1f34d5c9e2b7a6f8c0d1e2f"}
)
class GuidField(serializers.CharField):
    pass


@extend_schema_field(
    {
        "type": "string",
        "format": "date-time",
        "description": "UTC, to the millisecond: YYYY-MM-DDTHH:MM:SS.mmmZ.",
    }
)
class InstantField(serializers.Field):
    """A timestamp as the API writes every one: UTC, truncated to the millisecond, with a Z."""

    def to_representation(self, value: datetime) -> str:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


_INSTANT = InstantField()


class EstimateSerializer(serializers.Serializer):
    """What the run is expected to produce and take."""

    rows = serializers.IntegerField(min_value=0, help_text="Rows of the result (see `method`).")
    bytes = serializers.IntegerField(
        min_value=0, help_text="Uncompressed CSV bytes, from the recorded bytes per row of such queries."
    )
    seconds = serializers.FloatField(
        min_value=0, help_text="Run time, from the recorded runs of this engine."
    )
    method = serializers.ChoiceField(
        choices=["exact-count", "sampled", "statistics"],
        help_text="How `rows` was had: counted within QUOTE_TIME_LIMIT_SECONDS, counted on a sample of the "
        "window and scaled, or the warehouse's own estimate.",
    )


class SlotsSerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=0, help_text="The customer's concurrent-query limit.")
    in_use = serializers.IntegerField(min_value=0, help_text="Its queries holding a slot now.")


class QueuePlaceSerializer(serializers.Serializer):
    position = serializers.IntegerField(
        min_value=0, help_text="Slots that must free before the query could be accepted (0: one is free)."
    )
    eta_seconds = serializers.FloatField(
        min_value=0, help_text="When that is expected (0 while one is free)."
    )


class QuoteSerializer(serializers.Serializer):
    """A dry run's answer: nothing was created, queued or counted against a slot."""

    valid = serializers.BooleanField(help_text="Always true: an invalid body is a 400, as for a real POST.")
    fingerprint = serializers.RegexField(r"^[0-9a-f]{64}$", help_text="The query's fingerprint.")
    columns = serializers.ListField(child=serializers.CharField(), help_text="The result's header, in order.")
    estimate = EstimateSerializer()
    over_cap = serializers.BooleanField(help_text="The bytes exceed the per-query cap: a run would fail.")
    slots = SlotsSerializer()
    queue = QueuePlaceSerializer()


class ProgressSerializer(serializers.Serializer):
    """Rows and uncompressed bytes written so far (the totals once Completed)."""

    rows = serializers.IntegerField(source="progress_rows", min_value=0)
    bytes = serializers.IntegerField(source="progress_bytes", min_value=0)


class QueryStateSerializer(serializers.Serializer):
    """`messages` is present once the query Failed, was Canceled, Expired or was Deleted."""

    status = serializers.ChoiceField(choices=QueryStatus.values)
    guid = GuidField()
    messages = serializers.ListField(child=serializers.CharField(), required=False)
    progress = ProgressSerializer(source="*")
    submitted_at = InstantField()
    started_at = InstantField(allow_null=True)
    finished_at = InstantField(allow_null=True)

    def to_representation(self, instance: QueryRequest) -> dict[str, Any]:
        """What the fields above write (tests/queries/test_apis.py holds the two equal), written directly:
        status polling is the hottest path, and binding DRF's fields costs more than the rest of the answer."""
        instant = _INSTANT.to_representation
        body: dict[str, Any] = {"status": instance.status, "guid": instance.guid}
        if instance.status in ENDED_WITH_MESSAGES:
            body["messages"] = list(instance.messages)
        body["progress"] = {"rows": instance.progress_rows, "bytes": instance.progress_bytes}
        body["submitted_at"] = instant(instance.submitted_at)
        body["started_at"] = instant(instance.started_at) if instance.started_at else None
        body["finished_at"] = instant(instance.finished_at) if instance.finished_at else None
        return body

    def fields_representation(self, instance: QueryRequest) -> dict[str, Any]:
        """The same body through the declared fields (the generic path), for the test that compares them."""
        body = dict(super().to_representation(instance))
        if instance.status not in ENDED_WITH_MESSAGES:
            del body["messages"]
        return body


class QueryAcceptedSerializer(serializers.Serializer):
    """The query's guid; with `?wait=N`, also its status once it ended or N seconds passed."""

    id = GuidField(source="guid")
    status = QueryStateSerializer(
        source="*", required=False, help_text="With ?wait=N only: the status document, as GET .../status."
    )

    def to_representation(self, instance: QueryRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"id": instance.guid}
        if self.context.get("waited"):
            body["status"] = QueryStateSerializer(instance).data
        return body


class ResultFileSerializer(serializers.Serializer):
    path = serializers.CharField(
        help_text="reports/<customer>/<guid>_QueryExport_<epoch ms>__<12-digit part>.csv.gz"
    )
    size = serializers.IntegerField(min_value=0, help_text="Bytes of the gzipped part.")
    rows = serializers.IntegerField(min_value=0)
    sha256 = serializers.RegexField(r"^[0-9a-f]{64}$")
    url = serializers.URLField(
        required=False, help_text="A presigned download URL, where the result is on S3."
    )


class QueryLocationSerializer(serializers.Serializer):
    """Pending: `status` is 'Process has not finish yet, please verify the status of your request'. Completed:
    `status` is "Process finished. Download: ['reports/...csv.gz']" and `files` lists the parts. Failed or
    Canceled: `status` says so and `messages` says why."""

    status = serializers.CharField()
    guid = GuidField()
    files = ResultFileSerializer(many=True, required=False)
    messages = serializers.ListField(child=serializers.CharField(), required=False)

    def to_representation(self, instance: QueryRequest) -> dict[str, Any]:
        if instance.status == QueryStatus.PENDING:
            return {"status": PENDING_LOCATION, "guid": instance.guid}
        if instance.status == QueryStatus.COMPLETED:
            paths = ", ".join(f"'{f['path']}'" for f in instance.files)
            return {
                "status": f"Process finished. Download: [{paths}]",
                "guid": instance.guid,
                "files": ResultFileSerializer(_file_entries(instance), many=True).data,
            }
        return {
            "status": f"Process ended with status {instance.status}: " + "; ".join(instance.messages),
            "guid": instance.guid,
            "messages": list(instance.messages),
        }


def _file_entries(query: QueryRequest) -> list[dict[str, Any]]:
    """path, size, rows, sha256 of each part; plus a presigned `url` where the result is on S3."""
    entries = [{k: f[k] for k in ("path", "size", "rows", "sha256")} for f in query.files]
    if query.destination_id is None:
        return entries
    with query_storage(query) as storage:
        for entry in entries:
            url = storage.presigned_url(entry["path"], settings.PRESIGNED_URL_SECONDS)
            if url:
                entry["url"] = url
    return entries


class QueryCancelSerializer(serializers.Serializer):
    """Canceled at once when no worker holds the query; Pending while its worker stops it."""

    status = serializers.ChoiceField(choices=[QueryStatus.PENDING.value, QueryStatus.CANCELED.value])
    guid = GuidField()


class CatalogFieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=[kind.value for kind in ColumnType])
    display_name = serializers.CharField()
    description = serializers.CharField()
    common = serializers.BooleanField(help_text="Selectable in every event.")


# --- the exports resource (GET /dwh/exports, /dwh/exports/{guid}) -------------------------------------------


def _millis(canonical: str) -> str:
    """A plan's instant (microseconds) written as the API writes every instant (milliseconds)."""
    return canonical[:23] + "Z"


class ExportListSerializer(serializers.ListSerializer):
    """Exports of a page: their schedules' runs are read in one query for the whole page, not one per export."""

    def to_representation(self, data: Any) -> list[Any]:
        exports = list(data.all() if hasattr(data, "all") else data)
        prefetch_related_objects(exports, "schedule_run")
        return super().to_representation(exports)


class ExportSerializer(serializers.Serializer):
    """One export: a query with its settings, its window and its result. `download_link` follows to the
    result itself (one part: a redirect to its download; several: a zip of every part and the manifest)."""

    id = GuidField(source="guid")
    status = serializers.ChoiceField(choices=QueryStatus.values)
    author = serializers.CharField()
    description = serializers.CharField()
    filename = serializers.CharField()
    output = serializers.DictField(child=serializers.CharField(), help_text="The effective output options.")
    events = serializers.SerializerMethodField()
    submitted_at = InstantField()
    started_at = InstantField(allow_null=True)
    finished_at = InstantField(allow_null=True)
    rows = serializers.IntegerField(source="row_count", allow_null=True)
    size = serializers.SerializerMethodField()
    parts = serializers.SerializerMethodField()
    expires_at = serializers.SerializerMethodField()
    download_link = serializers.SerializerMethodField()
    downloadable = serializers.SerializerMethodField()
    schedule_id = serializers.SerializerMethodField()

    class Meta:
        list_serializer_class = ExportListSerializer

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # `from` and `to` are Python keywords: they cannot be declared as class attributes.
        fields["from"] = serializers.SerializerMethodField(method_name="get_window_from")
        fields["to"] = serializers.SerializerMethodField(method_name="get_window_to")
        return fields

    @extend_schema_field({"type": "array", "items": {"type": "string"}, "description": "In request order."})
    def get_events(self, query: QueryRequest) -> list[str]:
        data = query.body_json.get("data", {})
        return list(data) if isinstance(data, dict) else []

    @extend_schema_field({"type": "integer", "minimum": 0, "description": "Bytes of every part, as stored."})
    def get_size(self, query: QueryRequest) -> int:
        return sum(int(f["size"]) for f in query.files)

    @extend_schema_field({"type": "integer", "minimum": 0})
    def get_parts(self, query: QueryRequest) -> int:
        return len(query.files)

    @extend_schema_field(InstantField)
    def get_window_from(self, query: QueryRequest) -> str | None:
        return self._bound(query, ("$gte", "$gt"))

    @extend_schema_field(InstantField)
    def get_window_to(self, query: QueryRequest) -> str | None:
        return self._bound(query, ("$lte", "$lt"))

    @extend_schema_field({"type": "string", "format": "date-time", "nullable": True})
    def get_expires_at(self, query: QueryRequest) -> str | None:
        if query.status != QueryStatus.COMPLETED or query.finished_at is None:
            return None
        expiry = query.finished_at + timedelta(days=query.customer.retention_days)
        return InstantField().to_representation(expiry)

    @extend_schema_field({"type": "string", "format": "uri"})
    def get_download_link(self, query: QueryRequest) -> str:
        path = reverse("export-detail", kwargs={"guid": query.guid}) + "?redirect=true"
        request = self.context.get("request")
        if request is not None:
            return request.build_absolute_uri(path)
        if not settings.PUBLIC_URL:
            return path
        # A webhook event's, the admin's: under the public address, which holds any prefix the service is mounted
        # at (the path holds it too when the admin's request set one).
        return f"{settings.PUBLIC_URL}/{path.removeprefix(get_script_prefix())}"

    @extend_schema_field(
        {"type": "boolean", "description": "Completed, and its files are there to download."}
    )
    def get_downloadable(self, query: QueryRequest) -> bool:
        return query.status == QueryStatus.COMPLETED and bool(query.files)

    @extend_schema_field(
        {
            "type": "integer",
            "nullable": True,
            "description": "The schedule that ran it; null for an ad-hoc query.",
        }
    )
    def get_schedule_id(self, query: QueryRequest) -> int | None:
        # The schedules app's ScheduleRun points at the query (related_name "schedule_run"); read by that name
        # rather than imported, as queries sits below schedules.
        run = getattr(query, "schedule_run", None)
        return run.schedule_id if run is not None else None

    @staticmethod
    def _bound(query: QueryRequest, ops: tuple[str, str]) -> str | None:
        try:
            window = json.loads(query.plan)["query"]["timestamp"]
        except (ValueError, KeyError, TypeError):
            return None  # a plan from before plans held the window
        return next((_millis(window[op]) for op in ops if op in window), None)


class ExportPageSerializer(serializers.Serializer):
    """A page of the customer's exports, newest first; `next` is the URL of the next page (null: the last)."""

    exports = ExportSerializer(many=True)
    next = serializers.URLField(allow_null=True)
