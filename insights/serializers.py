"""The error envelope every API error is sent in (rendered by insights.errors; documented from here)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "object", "additionalProperties": True}]})
class MessageField(serializers.JSONField):
    """A string, or an object for the documented validation errors and a JSON body's field errors."""


class ErrorEnvelopeSerializer(serializers.Serializer):
    """Every error: `code` repeats the HTTP status; `message` is a string, or an object for the documented
    validation errors (`{"Date_Filters": ...}`, `{"Operators": ...}`) and for field errors of a JSON body."""

    code = serializers.IntegerField(min_value=400, max_value=599)
    message = MessageField()
