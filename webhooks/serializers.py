"""What the webhook API takes and answers, said once: the views send their `.data`, and the OpenAPI schema is
generated from the same classes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from webhooks.addresses import URL_MAX_LENGTH
from webhooks.events import instant_text
from webhooks.models import EventType


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "enum": EventType.values},
        "minItems": 1,
        "uniqueItems": True,
        "description": "The event types to send; every type when left out.",
    }
)
class EventTypesField(serializers.ListField):
    child = serializers.ChoiceField(choices=EventType.values)

    def to_internal_value(self, data: Any) -> list[str]:
        types = list(super().to_internal_value(data))
        if len(set(types)) != len(types):
            raise serializers.ValidationError("Name each event type once.")
        return types


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "enum": EventType.values},
        "description": "The event types it is sent.",
    }
)
class EventTypesShownField(serializers.ListField):
    child = serializers.CharField()


@extend_schema_field({"type": "string", "format": "date-time", "description": "UTC, to the millisecond."})
class InstantField(serializers.Field):
    def to_representation(self, value: datetime) -> str:
        return instant_text(value)


@extend_schema_serializer(component_name="WebhookSettings")
class WebhookInputSerializer(serializers.Serializer):
    url = serializers.CharField(
        max_length=URL_MAX_LENGTH,
        trim_whitespace=False,
        help_text="An https URL (http too, outside production) whose host resolves to public addresses only.",
    )
    events = EventTypesField(min_length=1, required=False)


@extend_schema_serializer(component_name="Webhook")
class WebhookSerializer(serializers.Serializer):
    """The webhook as it is set; its secret is never shown again."""

    url = serializers.CharField()
    events = EventTypesShownField()
    created_at = InstantField()
    secret_rotated_at = InstantField(help_text="When the current signing secret was generated.")


@extend_schema_serializer(component_name="WebhookWithSecret")
class WebhookSecretSerializer(serializers.Serializer):
    """The webhook just set, with its new signing secret: shown in this answer only."""

    url = serializers.CharField()
    events = EventTypesShownField()
    secret = serializers.CharField(
        help_text="The HMAC-SHA256 key of the Insights-Signature header (its UTF-8 bytes); `whsec_...`."
    )
