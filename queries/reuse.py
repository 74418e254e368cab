"""Result reuse: `"max_age": seconds` in a POST body (or `?max_age=`) lets the customer take a result it already
has instead of running the query again.

What can be reused, for a new query of a customer:
- only that customer's queries (never another's), with the same fingerprint (queries.spec: reordered
  conditions, both filter layouts and equivalent bounds are one query) and the same output options, and never
  a reuse itself (a reuse names the query that ran);
- a Completed one, finished at most `max_age` seconds ago, whose files are all still at its destination: the
  new query is Completed at once, pointing at the same files (no warehouse run, no slot), with a manifest of
  its own that records `reused_from`;
- else one still Pending (and not being canceled): the new query follows it. It is Pending, holds no slot
  and is never run; when the query it follows ends, it ends the same way (Completed with the same files,
  Failed or Canceled with the same messages): `follower_settle`, called by the run's end (queries.lifecycle:
  `followers_of_settle`), when the follower is read, and by a beat task for the ends no hook sees (the
  reaper's); whichever changes it first also records its webhook event, so it is recorded once;
- else nothing: the query runs as any other.

Webhook events (queries.webhook_events), as for any query and with the same state checks: a reuse Completed at
once records `query.completed` only (it was never Pending, so no `query.submitted`); a joined one records
`query.submitted` when it is created and its ending when it is settled. Neither records `query.started`: no run
of its own begins (the `started_at` it shows is its original's). A reuse made Expired by its original's delete
records `query.expired`.

Expiry (the reuse expires with its original): a reuse carries its original's start and finish times, so the
result looks the same (Last-Modified, `expires_at`) and retention, which goes by the finish time, expires both in
the same pass. Deleting the original (DELETE /dwh/exports/{guid}) deletes the reuses' manifests and makes them
Expired; deleting a reuse removes its own manifest only.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from exports.errors import ObjectNotFound, StorageError
from exports.writers import manifest_bytes
from insights.models import Customer
from queries.compiler import query_compile
from queries.delivery import query_storage
from queries.export_settings import ExportSettings
from queries.models import TERMINAL_STATUSES, QueryRequest, QueryStatus
from queries.plan import plan_build
from queries.spec import Query
from queries.validation import QueryValidationError
from queries.warehouse import warehouse_dialect
from queries.webhook_events import query_end_emit, query_event_emit

logger = logging.getLogger(__name__)

MAX_AGE_KEY = "max_age"
MAX_AGE_LIMIT = 366 * 24 * 3600
CANDIDATES = 5  # newest matches looked at, of each kind
# What a reuse copies from a Completed original: its result, and the times it was made.
RESULT_FIELDS = (
    "files",
    "manifest_path",
    "destination_id",
    "row_count",
    "progress_rows",
    "progress_bytes",
    "summary",
    "started_at",
    "finished_at",
)


def max_age_read(body: Any, param: str | None) -> int | None:
    """`max_age` from the body, else from the URL (`?max_age=`); None when neither has it. Whole seconds from 0
    to a year, else QueryValidationError (400): both are checked when both are given (the body's wins)."""
    from_url = None if param is None else _max_age_check(_whole_number(param))
    if isinstance(body, dict) and MAX_AGE_KEY in body:
        return _max_age_check(body[MAX_AGE_KEY])
    return from_url


def _whole_number(text: str) -> Any:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else text


def _max_age_check(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AGE_LIMIT:
        raise QueryValidationError(f"max_age must be a whole number of seconds from 0 to {MAX_AGE_LIMIT}.")
    return value


def reuse_candidate(
    *,
    customer: Customer,
    query_spec: Query,
    export: ExportSettings,
    max_age: int,
    now: datetime | None = None,
) -> QueryRequest | None:
    """The customer's query whose result a new query of `query_spec` may take (see the module docstring), or
    None. Reads the storage (are the files still there?), so call it before taking any lock."""
    now = now or timezone.now()
    same = QueryRequest.objects.filter(
        customer_id=customer.pk, fingerprint=query_spec.fingerprint, reused_from__isnull=True
    ).select_related("destination")
    fresh = same.filter(status=QueryStatus.COMPLETED, finished_at__gte=now - timedelta(seconds=max_age))
    for query in fresh.order_by("-finished_at")[:CANDIDATES]:
        if query.output == export.output and _files_present(query):
            return query
    running = same.filter(status=QueryStatus.PENDING, cancel_requested=False)
    for query in running.order_by("-submitted_at")[:CANDIDATES]:
        if query.output == export.output:
            return query
    return None


def reuse_create(
    *,
    customer: Customer,
    original: QueryRequest,
    body: str,
    query_spec: Query,
    export: ExportSettings,
    author: str = "",
) -> QueryRequest | None:
    """A new query of `customer` taking `original`'s result: Completed with its files, or following it while it
    is Pending. None when the original has since ended otherwise (the caller runs the query instead). Call it
    in the transaction holding the customer's row lock; the manifest is written after (`reuse_manifest_write`).
    `body` is the body as stored (JSON text)."""
    current = (
        QueryRequest.objects.filter(pk=original.pk)
        .values("status", "cancel_requested", *RESULT_FIELDS)
        .first()
    )
    if current is None:
        return None
    if current["status"] == QueryStatus.COMPLETED:
        result = {name: current[name] for name in RESULT_FIELDS}
    elif current["status"] == QueryStatus.PENDING and not current["cancel_requested"]:
        result = {}
    else:
        return None
    created = QueryRequest.objects.create(
        customer=customer,
        body=body,
        fingerprint=query_spec.fingerprint,
        plan=_plan(query_spec, customer, export),
        output=export.output,
        description=export.description,
        filename=export.filename,
        author=author[:150],
        reused_from=original,
        status=current["status"],
        **result,
    )
    # In this transaction, as query_create does: state-checked, so one of the two records an event.
    query_event_emit(query_id=created.pk, type="query.submitted")  # joined: Pending
    query_end_emit(query_id=created.pk)  # Completed at once
    return created


def follower_settle(query: QueryRequest) -> bool:
    """A Pending reuse whose original has ended takes the same end; True when it changed. Its manifest is
    written when it completes. The caller whose UPDATE changed it records its webhook event (once: a concurrent
    settle changes nothing)."""
    if query.reused_from_id is None:
        return False
    original = QueryRequest.objects.filter(pk=query.reused_from_id).first()
    if original is None or original.status == QueryStatus.PENDING:
        return False
    pending = QueryRequest.objects.filter(pk=query.pk, status=QueryStatus.PENDING)
    if original.status == QueryStatus.COMPLETED:
        changed = pending.update(
            status=QueryStatus.COMPLETED,
            messages=[],
            **{name: getattr(original, name) for name in RESULT_FIELDS},
        )
        if changed:
            reuse_manifest_write(QueryRequest.objects.get(pk=query.pk))
    elif original.status in (QueryStatus.FAILED, QueryStatus.CANCELED):
        changed = pending.update(
            status=original.status,
            messages=original.messages,
            finished_at=original.finished_at or timezone.now(),
        )
    else:  # it completed and its result is already gone
        changed = pending.update(
            status=QueryStatus.EXPIRED,
            messages=[_gone_message(original)],
            finished_at=original.finished_at or timezone.now(),
        )
    if changed and original.status in (QueryStatus.EXPIRED, QueryStatus.DELETED):
        query_event_emit(query_id=query.pk, type="query.expired")
    elif changed:
        query_end_emit(query_id=query.pk)  # the same ending as its original's
    return bool(changed)


def followers_of_settle(*, original_id: int) -> int:
    """The Pending reuses following query `original_id`, which has just ended, take its end now (their webhook
    events leave with the original's, not at the next read or beat tick); returns how many. Never raises: the
    end of the run that calls it matters more (beat settles whatever this missed)."""
    try:
        followers = QueryRequest.objects.filter(reused_from_id=original_id, status=QueryStatus.PENDING)
        return sum(follower_settle(query) for query in followers.only("pk", "reused_from_id"))
    except Exception:
        logger.exception("the reuses following query %s could not be settled", original_id)
        return 0


def followers_settle(*, customer: Customer | None = None) -> int:
    """Settle every Pending reuse (of `customer`, or of all) whose original has ended; returns how many."""
    followers = QueryRequest.objects.filter(
        status=QueryStatus.PENDING, reused_from__isnull=False, reused_from__status__in=TERMINAL_STATUSES
    )
    if customer is not None:
        followers = followers.filter(customer_id=customer.pk)
    return sum(follower_settle(query) for query in followers.only("pk", "reused_from_id"))


def reuse_manifest_write(query: QueryRequest) -> None:
    """Write the reuse's own manifest beside its original's: the same parts, schema and summary, with its own
    guid, body and creation time, and `reused_from`. Never raises: until it is written the reuse points at its
    original's manifest."""
    original = query.reused_from
    if original is None or not original.manifest_path:
        return
    key = _own_manifest_key(query, original)
    try:
        with query_storage(original) as storage:
            with storage.open(original.manifest_path) as stream:
                manifest = json.loads(stream.read())
            storage.publish([], (manifest_bytes(_manifest_for(manifest, query, original)), key))
    except (StorageError, ValueError, TypeError, AttributeError):
        logger.warning(
            "query %s: the manifest of its reused result could not be written", query.guid, exc_info=True
        )
        return
    QueryRequest.objects.filter(pk=query.pk).update(manifest_path=key)


def result_keys(query: QueryRequest) -> tuple[list[str], str]:
    """What deleting `query`'s result removes: the keys to delete first, and the manifest to delete last ("" for
    none). A reuse owns its manifest only (the parts are its original's); an original takes its reuses'
    manifests with it."""
    if query.reused_from_id is not None:
        own = query.manifest_path.endswith(f"/{query.guid}_manifest.json")
        return [], query.manifest_path if own else ""
    reuses = QueryRequest.objects.filter(reused_from=query).exclude(manifest_path=query.manifest_path)
    keys = [path for path in reuses.values_list("manifest_path", flat=True) if path]
    return keys + [entry["path"] for entry in query.files], query.manifest_path


def reuses_expire(*, original: QueryRequest) -> int:
    """The Completed reuses of a result that was just deleted end Expired (their files went with it), each
    announced as `query.expired`."""
    completed = QueryRequest.objects.filter(reused_from=original, status=QueryStatus.COMPLETED)
    reuse_ids = list(completed.values_list("pk", flat=True))
    expired = QueryRequest.objects.filter(pk__in=reuse_ids, status=QueryStatus.COMPLETED).update(
        status=QueryStatus.EXPIRED, messages=[_gone_message(original)]
    )
    for reuse_id in reuse_ids:
        query_event_emit(query_id=reuse_id, type="query.expired")  # if it did expire (state-checked)
    return expired


def _gone_message(original: QueryRequest) -> str:
    return f"The result it shared with query {original.guid} was deleted."


def _files_present(query: QueryRequest) -> bool:
    """Every part is at the query's destination with its recorded size (a storage that cannot tell: no)."""
    try:
        with query_storage(query) as storage:
            return all(storage.stat(entry["path"]).size == entry["size"] for entry in query.files)
    except (ObjectNotFound, StorageError):
        return False


def _plan(query_spec: Query, customer: Customer, export: ExportSettings) -> str:
    """The plan a run of this query would have (never run: it says what the reuse stands for, e.g. its window)."""
    statement = query_compile(query_spec, customer_id=customer.key, dialect=warehouse_dialect(), summary=True)
    display = export.output.get("header") == "display"
    titles = [field.display_name if display else field.name for field in query_spec.columns]
    return plan_build(query_spec, statement, output=export.output, titles=titles)


def _own_manifest_key(query: QueryRequest, original: QueryRequest) -> str:
    folder = original.manifest_path.rsplit("/", 1)[0]
    return f"{folder}/{query.guid}_manifest.json"


def _manifest_for(manifest: dict[str, Any], query: QueryRequest, original: QueryRequest) -> dict[str, Any]:
    """The original's manifest as the reuse's: its guid, `reused_from` right after it, its body and time."""
    rewritten: dict[str, Any] = {}
    for name, value in manifest.items():
        if name == "guid":
            rewritten["guid"] = query.guid
            rewritten["reused_from"] = original.guid
        elif name == "created_at":
            rewritten[name] = timezone.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        elif name == "query":
            rewritten[name] = query.body_json
        else:
            rewritten[name] = value
    return rewritten
