"""How a message names a JSON value's type: "a string", "an empty array" (never the value itself, which may be
huge or hostile). Shared by query validation and the NDJSON reader, so both say it the same way."""

from __future__ import annotations


def json_kind(value: object, *, empty: bool = False) -> str:
    """The JSON name of a value's type; `empty` tells an empty array or object apart."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an empty array" if empty and not value else "an array"
    if isinstance(value, dict):
        return "an empty object" if empty and not value else "an object"
    return type(value).__name__
