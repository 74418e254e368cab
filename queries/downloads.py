"""HTTP byte ranges (RFC 9110 §14) for result downloads: one range per request, else the whole file."""

from __future__ import annotations

import re

_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
# More digits than any file size has: such a position is past every end (and int() of thousands of digits
# is refused by Python itself), so it is compared as text.
_MAX_DIGITS = 18


class RangeNotSatisfiable(Exception):
    pass


def byte_range_parse(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a single satisfiable range; None to send the whole file.

    Several ranges, or a header we do not understand, are ignored (the whole file is sent), as RFC 9110 allows.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # suffix range: the last N bytes
        suffix = _position(last_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable()
        return max(size - suffix, 0), size - 1
    first = _position(first_text)
    if first >= size:
        raise RangeNotSatisfiable()
    last = _position(last_text) if last_text else size - 1
    if last < first:
        return None
    return first, min(last, size - 1)


def _position(digits: str) -> int:
    """A byte position; one too long to be any file's is clamped to a value past every end."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS
