"""The seed document's own example bodies (docs/seeds/003_0b8d0e32c2ab91e8.txt, Requests 1 and 2), verbatim."""

from __future__ import annotations

from typing import Any

REQUEST_1 = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"ApplicationExitEvent": {"fields": ["FlowId"]}},
}
REQUEST_2: dict[str, Any] = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {
        "ApplicationExitEvent": {
            "fields": [
                "EventName",
                "EventVersion",
                "EventSku",
                "TimeStamp",
                "HostId",
                "CustomerId",
                "CustomerName",
                "Originator",
                "OriginatorId",
                "FlowId",
                "FlowName",
                "ActionId",
                "ActionName",
                "IsTriggerAction",
                "SessionId",
                "TransactionId",
                "ApplicationRegion",
                "PassthroughVersion",
                "Passthrough",
                "StartTime",
                "EndTime",
                "Path",
                "ExitReason",
            ]
        }
    },
    "filters": {"ApplicationExitEvent": {"FlowId": {"$eq": "5dcf48b453e0ab04386da7d1"}}},
}
