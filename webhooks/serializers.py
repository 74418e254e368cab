"""What the webhook API takes and answers, said once: the views send their `.data`, and the OpenAPI schema is
generated from the same classes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
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

    def to_internal_value(self, data: Any) -> Any:
        # A key it does not know is refused rather than ignored: `"event": [...]` would take every type.
        if isinstance(data, dict):
            unknown = [key for key in data if key not in self.fields]
            if unknown:
                hint = f"This is not a webhook field; the fields are {', '.join(self.fields)}."
                raise serializers.ValidationError({str(key): [hint] for key in unknown})
        return super().to_internal_value(data)


class WebhookInputSchema(OpenApiSerializerExtension):
    """WebhookSettings as drf-spectacular maps it, closed: the service refuses a key it does not know."""

    target_class = WebhookInputSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_basic_serializer(self.target, direction)
        return {**schema, "additionalProperties": False}


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
