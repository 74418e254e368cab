"""A query's state changes as webhook events (webhooks.events): what its customer's webhook is sent, with the
export object as GET /dwh/exports/{guid} shows it at that moment.

The state machine calls `query_event_emit` / `query_end_emit` right after a change (queries.lifecycle,
queries.services, queries.maintenance, and queries.reuse for reused results). Each records its event only if
the query is in the state the event names, and at most once per query and type, so a call placed after a change
that may not have happened (an UPDATE that matched nothing) is harmless. Endings no call announces (the
reaper's: a dead run given up or canceled, an interrupted publication settled) are caught up by beat
(`webhook_events_catch_up`), which also announces `query.expiring`, 24 h before retention deletes a result.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from queries.models import QueryRequest, QueryStatus
from queries.serializers import ExportSerializer
from webhooks.events import event_emit
from webhooks.models import EventType, Webhook, WebhookEvent
from webhooks.selectors import webhook_takes

logger = logging.getLogger(__name__)

# The status each event announces (query.started: Pending, and started; query.expiring: Completed).
STATUS_OF_EVENT = {
    EventType.QUERY_SUBMITTED: QueryStatus.PENDING,
    EventType.QUERY_STARTED: QueryStatus.PENDING,
    EventType.QUERY_COMPLETED: QueryStatus.COMPLETED,
    EventType.QUERY_FAILED: QueryStatus.FAILED,
    EventType.QUERY_CANCELED: QueryStatus.CANCELED,
    EventType.QUERY_EXPIRING: QueryStatus.COMPLETED,
    EventType.QUERY_EXPIRED: QueryStatus.EXPIRED,
    EventType.QUERY_DELETED: QueryStatus.DELETED,
}
ENDINGS = {
    QueryStatus.COMPLETED: EventType.QUERY_COMPLETED,
    QueryStatus.FAILED: EventType.QUERY_FAILED,
    QueryStatus.CANCELED: EventType.QUERY_CANCELED,
}
EXPIRING_AHEAD = timedelta(hours=24)
# Endings older than this are not caught up (an event that late would tell the customer nothing useful).
CATCH_UP_WINDOW = timedelta(days=1)


def query_event_emit(*, query_id: int, type: str) -> None:
    """Record the query's event `type` if the query is in that state now and its customer's webhook takes it
    (once per query and type). Never raises: a run or a POST is never failed by its announcement."""
    try:
        state = (
            QueryRequest.objects.filter(pk=query_id)
            .values_list("customer_id", "status", "started_at")
            .first()
        )
        if state is None or not _in_state(type, status=state[1], started=state[2] is not None):
            return
        if webhook_takes(customer_id=state[0], type=type):
            query = QueryRequest.objects.select_related("customer").get(pk=query_id)
            data = dict(ExportSerializer(query).data)
            event_emit(customer_id=query.customer_id, type=type, data=data, subject=query.guid, once=True)
    except Exception:
        logger.exception("the %s event of query %s could not be recorded", type, query_id)


def query_end_emit(*, query_id: int) -> None:
    """Record the event of the ending the query has now (Completed, Failed or Canceled), if it has one. Never
    raises."""
    try:
        status = QueryRequest.objects.filter(pk=query_id).values_list("status", flat=True).first()
    except Exception:
        logger.exception("the ending of query %s could not be read for its webhook event", query_id)
        return
    if status in ENDINGS:
        query_event_emit(query_id=query_id, type=ENDINGS[QueryStatus(status)])


def _in_state(type: str, *, status: str, started: bool) -> bool:
    """Whether a query in `status` is in the state event `type` announces (query.started: a run began)."""
    if type == EventType.QUERY_STARTED and not started:
        return False
    return status == STATUS_OF_EVENT[EventType(type)]


def webhook_events_catch_up(*, now: datetime | None = None) -> int:
    """Beat's part (every WEBHOOK_SWEEP_SECONDS): `query.expiring` for Completed results that retention deletes
    within 24 h, and the event of every ending of the last day that has none yet (endings the reaper made, or a
    process that died between a change and its event). Returns how many were recorded."""
    now = now or timezone.now()
    recorded = 0
    for webhook in Webhook.objects.select_related("customer"):
        customer = webhook.customer
        if EventType.QUERY_EXPIRING in webhook.events:
            deleted_after = now - timedelta(days=customer.retention_days) + EXPIRING_AHEAD
            expiring = customer.queries.filter(status=QueryStatus.COMPLETED, finished_at__lt=deleted_after)
            recorded += _emit_missing(expiring, webhook, EventType.QUERY_EXPIRING)
        since = max(now - CATCH_UP_WINDOW, webhook.created_at)
        for status, type in ENDINGS.items():
            if type in webhook.events:
                ended = customer.queries.filter(status=status, finished_at__gte=since)
                recorded += _emit_missing(ended, webhook, type)
    return recorded


def _emit_missing(queries: QuerySet[QueryRequest], webhook: Webhook, type: EventType) -> int:
    announced = WebhookEvent.objects.filter(customer_id=webhook.customer_id, type=type).values("subject")
    missing = list(queries.exclude(guid__in=announced).values_list("pk", flat=True))
    for query_id in missing:
        query_event_emit(query_id=query_id, type=type)
    return len(missing)
