"""Summary figures (giosg's "sidedata"): a Completed query's, counted in its export's own pass
(GET /dwh/Q/{guid}/summary), or any window's, computed by the warehouse at once (POST /dwh/summary).

Both answer the same object (exports.summary.summary_object): rows, rows per event, distinct sessions and
originators, the first and last timestamps, rows per hour of day and per ISO weekday (UTC), and for CallEvent
rows the duration's figures and the top disconnect reasons. POST /dwh/summary takes a query body; without
`data` it covers every event of the customer in the window. It is bounded like a preview (queries.preview):
PREVIEW_TIME_LIMIT_SECONDS for its three statements together, PREVIEW_PER_MINUTE per customer, shared with
previews.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from insights.models import Customer
from queries.catalog import catalog
from queries.errors import QueryConflict
from queries.models import QueryRequest, QueryStatus
from queries.preview import previews_throttle, statement_rows, warehouse_call
from queries.summary_sql import summary_from_results, summary_statements
from queries.validation import query_validate

# The field a body without `data` selects in every event: any would do, as a summary reads no output column.
EVERY_EVENT_FIELD = "TimeStamp"


def query_summary(query: QueryRequest) -> dict[str, Any]:
    """The summary of a Completed query's result; QueryConflict (409) before it is Completed, or when it
    completed before summaries were kept."""
    if query.status != QueryStatus.COMPLETED:
        raise QueryConflict(
            f"Query {query.guid} is {query.status}: a summary exists once it is Completed. "
            "POST /_rest/v4/dwh/summary with its body computes one now."
        )
    if not query.summary:
        raise QueryConflict(
            f"Query {query.guid} completed before summaries were kept. "
            "POST /_rest/v4/dwh/summary with its body computes one now."
        )
    summary: dict[str, Any] = json.loads(query.summary)
    return summary


def window_summary(*, customer: Customer, body: Any) -> dict[str, Any]:
    """The summary of the rows the body selects (every event, when it has no `data`), by the warehouse;
    QueryValidationError (400), PreviewsThrottled (429), PreviewTooSlow (422), WarehouseUnavailable (503)."""
    query_spec = query_validate(_every_event(body), max_window=timedelta(days=customer.max_window_days))
    previews_throttle(customer)
    with warehouse_call("summary") as engine:
        statements = summary_statements(query_spec, customer_id=customer.key, dialect=engine.dialect)
        results = [statement_rows(engine, statement, limit=None) for statement in statements]
    return summary_from_results(results)


def _every_event(body: Any) -> Any:
    """The body, with `data` naming every event of the catalog when it has none (validation judges the rest)."""
    if not isinstance(body, dict) or "data" in body:
        return body
    return {**body, "data": {event: {"fields": [EVERY_EVENT_FIELD]} for event in catalog().events}}
