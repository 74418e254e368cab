"""The webhook API (/_rest/v4/webhook): a customer's one endpoint for signed event POSTs. Thin views over
webhooks.services and webhooks.selectors; documented with the query API's shared responses (queries.api_schema),
so the 401 and 429 of every Bearer-protected operation are described once."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from insights.models import Customer
from queries import api_schema as doc
from webhooks.errors import WebhookNotFound
from webhooks.selectors import webhook_of
from webhooks.serializers import WebhookInputSerializer, WebhookSecretSerializer, WebhookSerializer
from webhooks.services import webhook_delete, webhook_put

NOT_SET = doc.error("No webhook is set for this account.")


class WebhookApi(APIView):
    """GET: the webhook. PUT: set it (a new secret each time). DELETE: remove it."""

    def customer(self, request: Request) -> Customer:
        assert isinstance(request.auth, Customer)
        return request.auth

    @extend_schema(
        operation_id="webhook_get",
        summary="The account's webhook",
        description="Its URL and event types; the signing secret is shown only by the PUT that generated it.",
        tags=["webhooks"],
        parameters=doc.secured_headers(),
        responses=doc.secured({200: WebhookSerializer, 404: NOT_SET}),
    )
    def get(self, request: Request) -> Response:
        webhook = webhook_of(customer_id=self.customer(request).pk)
        if webhook is None:
            raise WebhookNotFound()
        return Response(WebhookSerializer(webhook).data)

    @extend_schema(
        operation_id="webhook_put",
        summary="Set the account's webhook",
        description="One POST per state change of the account's exports (and schedules) goes to `url`, signed "
        'with `Insights-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. Every PUT generates '
        "a new secret (shown in this answer only): PUT the same body again to rotate it. 201 when the account "
        "had no webhook, 200 when this one replaced it.",
        tags=["webhooks"],
        request=WebhookInputSerializer,
        parameters=doc.secured_headers(),
        responses=doc.secured(
            {
                200: WebhookSecretSerializer,
                201: WebhookSecretSerializer,
                400: doc.error(
                    "The body is not JSON or not an object, or has a key other than url and events; the URL is "
                    "not http(s) (https in production), has no host, or resolves to a loopback, private, "
                    "link-local or metadata address; an event type is unknown or named twice. (A host that does "
                    "not resolve yet is taken: each delivery resolves it again.)"
                ),
                413: doc.error("The body is larger than the limit (API_MAX_BODY_BYTES)."),
                415: doc.error("The body is not application/json."),
            }
        ),
    )
    def put(self, request: Request) -> Response:
        given = WebhookInputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        done = webhook_put(customer=self.customer(request), **given.validated_data)
        body = {"url": done.webhook.url, "events": done.webhook.events, "secret": done.secret}
        code = status.HTTP_201_CREATED if done.created else status.HTTP_200_OK
        return Response(WebhookSecretSerializer(body).data, status=code)

    @extend_schema(
        operation_id="webhook_delete",
        summary="Remove the account's webhook",
        description="Events not delivered yet are dropped.",
        tags=["webhooks"],
        parameters=doc.secured_headers(),
        responses=doc.secured({204: None, 404: NOT_SET}),
    )
    def delete(self, request: Request) -> Response:
        webhook_delete(customer=self.customer(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
