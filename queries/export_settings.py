"""The export's own settings, beside the query in a POST body: `output`, `description`, `filename`.

    {"output": {"format": "csv" | "xlsx" | "parquet" | "ndjson", "compression": "gzip" | "none",
                "dialect": "rfc4180" | "excel" | "no_newline", "header": "names" | "display"},
     "description": "...", "filename": "march-calls"}

Every key is optional; the defaults (csv, gzip, rfc4180, names) write exactly the original service's files.
`compression` applies to csv and ndjson (xlsx and parquet compress inside), `dialect` to csv only: naming
either for another format is a 400, like any value outside its list. Pure: no ORM, no HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from queries.json_kinds import json_kind
from queries.validation import QueryValidationError

# `max_age` is not the export's but the submission's (queries.reuse reads it): it is set apart all the same, so
# that the body is stored as sent while validation sees the query alone.
KEYS = ("output", "description", "filename", "max_age")
FORMATS = ("csv", "xlsx", "parquet", "ndjson")
CHOICES: dict[str, tuple[str, ...]] = {
    "format": FORMATS,
    "compression": ("gzip", "none"),
    "dialect": ("rfc4180", "excel", "no_newline"),
    "header": ("names", "display"),
}
DEFAULTS = {"format": "csv", "compression": "gzip", "dialect": "rfc4180", "header": "names"}
# Which options each format takes.
APPLIES = {
    "csv": ("format", "compression", "dialect", "header"),
    "ndjson": ("format", "compression", "header"),
    "xlsx": ("format", "header"),
    "parquet": ("format", "header"),
}
MAX_DESCRIPTION = 500
FILENAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


@dataclass(frozen=True)
class ExportSettings:
    output: dict[str, str] = field(default_factory=lambda: dict(DEFAULTS))  # the effective options, all keys
    description: str = ""
    filename: str = ""


def export_settings_split(body: Any) -> tuple[ExportSettings, Any]:
    """The export's settings, and the body without them (the query, for queries.validation). A body that is
    not an object is returned as is: validation says what is wrong with it."""
    if not isinstance(body, dict) or not any(key in body for key in KEYS):
        return ExportSettings(), body
    query = {key: value for key, value in body.items() if key not in KEYS}
    options = ExportSettings(
        output=_output(body.get("output", {})),
        description=_description(body.get("description", "")),
        filename=_filename(body.get("filename", "")),
    )
    return options, query


def _output(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise QueryValidationError(
            f'"output" must be an object such as {{"format": "csv"}}, got {json_kind(value)}.'
        )
    for key, choice in value.items():
        if key not in CHOICES:
            raise QueryValidationError(
                f"output.{key} is not an output option; the options are {', '.join(CHOICES)}."
            )
        if choice not in CHOICES[key]:
            shown = f'"{choice}"' if isinstance(choice, str) else json_kind(choice)
            raise QueryValidationError(f"output.{key} must be one of {', '.join(CHOICES[key])}, not {shown}.")
    chosen = value.get("format", DEFAULTS["format"])
    for key in value:
        if key not in APPLIES[chosen]:
            raise QueryValidationError(f"output.{key} does not apply to the {chosen} format.")
    return {key: value.get(key, DEFAULTS[key]) for key in APPLIES[chosen]}


def _description(value: object) -> str:
    if not isinstance(value, str):
        raise QueryValidationError(f'"description" must be a string, got {json_kind(value)}.')
    if len(value) > MAX_DESCRIPTION or "\x00" in value:
        raise QueryValidationError(
            f'"description" must be at most {MAX_DESCRIPTION} characters, with no NUL character.'
        )
    return value


def _filename(value: object) -> str:
    if not isinstance(value, str) or (value and not FILENAME.fullmatch(value)):
        raise QueryValidationError(
            '"filename" must be 1 to 100 letters, digits, ".", "_" or "-" (it names the downloads).'
        )
    return value
