"""ISO 8601 instants, read the one same way in a query (validation) and in an events file (ingest).

Spelling: `YYYY-MM-DDTHH:MM:SS`, a fraction of any length if wanted, then a zone: `Z` or an offset written
`+HH:MM`, `+HH` or `+HHMM` (or with `-`). ASCII digits only; `T` and the zone are required, in capitals.
Reading: Arrow's ISO 8601 cast decides which dates, times and offsets exist (not 2019-02-30, 24:00, a 60th
second or an offset of 24 hours) and moves the time to UTC; the instant must then lie within the years 1 to
9999, which Python (and so every reader after us) can hold. Digits below the microsecond are dropped here;
a query refuses them when they are not zeros (`Instant.exact`), a file loses them.

A query's dates (`instants_parse`) and a file's column of timestamps (`instants_spelled`, `instants_cast`,
`instants_outside_calendar`) go through the same spelling and the same cast, so the two cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

# The spelling, unanchored: Python's `$` also matches before a final newline, RE2's (Arrow's) does not, so each
# side anchors it its own way. [0-9], not \d, which would also take other scripts' digits.
ISO_INSTANT = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.(?P<fraction>[0-9]+))?"
    r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)"
)
_SPELLED = re.compile(ISO_INSTANT)
_SPELLED_COLUMN = f"^{ISO_INSTANT}$"
_UTC_MICROSECONDS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True, slots=True)
class Instant:
    value: datetime  # naive UTC, to the microsecond
    exact: bool  # False when the text has non-zero digits below the microsecond


def instant_parse(text: str) -> Instant | None:
    """One instant as naive UTC, or None when `text` is not one (see the module's docstring)."""
    return instants_parse([text])[0]


def instants_parse(texts: Sequence[str]) -> list[Instant | None]:
    """Each text as an instant in naive UTC, or None where it is not one; in one pass when all are."""
    spellings = [_SPELLED.fullmatch(text) for text in texts]
    spelled = [text if spelling else None for text, spelling in zip(texts, spellings, strict=True)]
    values = _naive(_zoned_each(_microseconds_kept(pa.chunked_array([spelled], pa.string()))))
    outside = pc.fill_null(instants_outside_calendar(values), False)
    kept = pc.if_else(outside, pa.scalar(None, values.type), values)  # Python cannot hold the others
    below_microsecond = [(spelling["fraction"] or "")[6:] if spelling else "" for spelling in spellings]
    return [
        None if value is None else Instant(value=value, exact=not digits.strip("0"))
        for value, digits in zip(kept.to_pylist(), below_microsecond, strict=True)
    ]


def instants_spelled(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """Whether each text is spelled as an instant (NULL for NULL)."""
    return pc.match_substring_regex(text, _SPELLED_COLUMN)


def instants_cast(spelled: pa.ChunkedArray) -> pa.ChunkedArray:
    """Texts spelled as instants (or NULL) as naive UTC microseconds, digits below the microsecond dropped.

    Raises pa.ArrowInvalid when a text names no instant (2019-02-30, 24:00, an offset of 24 hours): a file's
    reader locates it. The times may lie outside the years 1 to 9999: see `instants_outside_calendar`.
    """
    return _naive(_microseconds_kept(spelled).cast(_UTC_MICROSECONDS))


def instants_outside_calendar(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Whether each naive UTC time (of any unit) lies outside the years 1 to 9999 (NULL for NULL)."""
    unit = values.type.unit
    earliest = pa.scalar(datetime.min, pa.timestamp(unit))
    latest = pa.scalar(datetime.max, pa.timestamp(unit))
    return pc.or_(pc.less(values, earliest), pc.greater(values, latest))


def _microseconds_kept(spelled: pa.ChunkedArray) -> pa.ChunkedArray:
    if pc.any(pc.match_substring_regex(spelled, r"\.[0-9]{7}")).as_py():
        # Microseconds are what the warehouse keeps: further digits are dropped, not rounded.
        return pc.replace_substring_regex(spelled, r"(\.[0-9]{6})[0-9]+", r"\1")
    return spelled


def _zoned_each(spelled: pa.ChunkedArray) -> pa.ChunkedArray:
    """The cast, with NULL for each text that names no instant.

    Arrow's cast is all or nothing, so halves are cast again until each text it refuses is alone: a few casts
    for a few bad dates, two per text at worst (about 40 µs each: a body of thousands of bad dates costs 0.1 s).
    """
    try:
        return spelled.cast(_UTC_MICROSECONDS)
    except pa.ArrowInvalid:
        if len(spelled) == 1:
            return pa.chunked_array([pa.nulls(1, _UTC_MICROSECONDS)])
        half = len(spelled) // 2
        halves = (_zoned_each(spelled.slice(0, half)), _zoned_each(spelled.slice(half)))
        return pa.chunked_array([chunk for part in halves for chunk in part.chunks], _UTC_MICROSECONDS)


def _naive(zoned: pa.ChunkedArray) -> pa.ChunkedArray:
    # Dropping the zone keeps the stored number, which is UTC: the zone only says how to show it.
    return zoned.cast(pa.timestamp("us"))
