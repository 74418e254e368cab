"""The JSON parser of the API, with a body-size limit (413 in the error envelope)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers

from insights.errors import BodyTooLarge


class LimitedJSONParser(parsers.JSONParser):
    """Reads at most API_MAX_BODY_BYTES (+1 to detect more), whatever Content-Length claims."""

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        limit = int(settings.API_MAX_BODY_BYTES)
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise BodyTooLarge()
        try:
            return json.loads(
                raw.decode("utf-8"), parse_constant=_refuse_constant, object_pairs_hook=_unique_keys
            )
        except (ValueError, UnicodeDecodeError) as error:
            raise exceptions.ParseError(f"JSON parse error - {error}") from None
        except RecursionError:  # e.g. thousands of nested brackets: no query is shaped like that
            raise exceptions.ParseError("JSON parse error - the body is nested too deeply") from None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are distinct: `{"$gte": a, "$gte": b}` is ambiguous, and JSON parsers disagree on
    which one wins, so it is refused rather than read as the last."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"the key {key!r} appears twice in one object")
        obj[key] = value
    return obj
