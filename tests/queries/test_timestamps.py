"""ISO 8601 instants: one reading for a query's dates and a file's timestamps.

The case that split them: a `+hh` (or `+hhmm`) offset, which a file took and a query refused. Both take it now
(docs/DESIGN.md §3: "ISO 8601 with T and Z or an offset"; ISO 8601 writes an offset as +hh:mm, +hhmm or +hh).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from queries.ingest import LoadError, events_file_read
from queries.timestamps import instant_parse, instants_parse
from queries.validation import QueryValidationError, query_validate

CASES = [
    ("2019-11-25T00:00:00Z", datetime(2019, 11, 25)),
    ("2019-11-25T00:00:00+01:00", datetime(2019, 11, 24, 23)),
    ("2019-11-25T00:00:00+01", datetime(2019, 11, 24, 23)),
    ("2019-11-25T00:00:00+0100", datetime(2019, 11, 24, 23)),
    ("2019-11-25T00:00:00-05", datetime(2019, 11, 25, 5)),
    ("2019-11-25T00:00:00-0530", datetime(2019, 11, 25, 5, 30)),
    ("2019-11-25T00:00:00-00:00", datetime(2019, 11, 25)),
    ("2019-11-25T00:00:00+23:59", datetime(2019, 11, 24, 0, 1)),
    ("2019-11-25T00:00:00.5+01", datetime(2019, 11, 24, 23, 0, 0, 500000)),
    ("2020-02-29T23:59:59.999999Z", datetime(2020, 2, 29, 23, 59, 59, 999999)),
    # The written time may be in year 0 if the instant is not (an offset moves it into year 1).
    ("0000-12-31T23:00:00-01", datetime(1, 1, 1)),
    ("9999-12-31T23:59:59.999999Z", datetime.max),
    ("2019-11-25T00:00:00+24:00", None),
    ("2019-11-25T00:00:00+24", None),
    ("2019-11-25T00:00:00+01:60", None),
    ("2019-11-25T00:00:00+1:00", None),
    ("2019-11-25T00:00:00+01:0", None),
    ("2019-11-25T00:00:00+010", None),
    ("2019-11-25T00:00:00+01:00:00", None),
    ("2019-11-25T00:00:00", None),
    ("2019-11-25T00:00:00z", None),
    ("2019-11-25 00:00:00Z", None),
    ("2019-11-25T00:00Z", None),
    ("2019-11-25T24:00:00Z", None),
    ("2019-11-25T23:59:60Z", None),
    ("2019-02-29T00:00:00Z", None),
    ("0000-01-01T00:00:00Z", None),
    ("0001-01-01T00:00:00+01:00", None),
    ("9999-12-31T23:00:00-01", None),
    ("\uff12019-11-25T00:00:00Z", None),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_a_query_and_a_file_read_a_timestamp_the_same(tmp_path: Path, text: str, expected: datetime | None):
    instant = instant_parse(text)
    assert (instant.value if instant else None) == expected
    assert _query_reads(text) == expected
    assert _file_reads(tmp_path, text) == expected


def test_many_texts_read_as_each_alone():
    """A query's dates are read in one pass; the texts that name no instant are found among the others."""
    texts = [text for text, _ in CASES] * 2
    assert instants_parse(texts) == [instant_parse(text) for text in texts]
    assert instants_parse([]) == []


def test_digits_below_the_microsecond_are_dropped_and_flagged():
    instant = instant_parse("2019-11-25T00:00:00.1234567+01")
    assert instant is not None and not instant.exact
    assert instant.value == datetime(2019, 11, 24, 23, 0, 0, 123456)
    zeros = instant_parse("2019-11-25T00:00:00.1234560000Z")
    assert zeros is not None and zeros.exact


def _query_reads(text: str) -> datetime | None:
    body = {
        "timestamp": {"$gte": text, "$lte": "9999-12-31T23:59:59.999999Z"},
        "data": {"MsgEvent": {"fields": ["From"]}},
    }
    try:
        return query_validate(body, max_window=timedelta.max).window.start
    except QueryValidationError as error:
        assert isinstance(error.message, dict) and "Date_Filters" in error.message
        return None


def _file_reads(directory: Path, text: str) -> datetime | None:
    path = directory / "events.csv"
    path.write_text(f"EventName,TimeStamp,CustomerId\nMsgEvent,{text},acme\n", encoding="utf-8")
    try:
        return events_file_read(path).column("TimeStamp")[0].as_py()
    except LoadError as error:
        assert ":2: TimeStamp: " in str(error)
        return None


# -- against Python's own reader, where the two mean to agree ----------------------------------------------

_OFFSETS = st.sampled_from(["Z", "+00:00", "+01:00", "-05:30", "+23:59", "-23:59", "+01", "-12", "+0545"])
_FRACTIONS = st.sampled_from(["", ".5", ".000001", ".123456", ".1234567", ".999999999"])


@st.composite
def _written(draw: st.DrawFn) -> str:
    """Mostly real instants in every spelling; sometimes digits that name no date, time or offset."""
    moment = draw(st.datetimes(min_value=datetime(1, 1, 1)))
    text = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + draw(_FRACTIONS) + draw(_OFFSETS)
    if draw(st.integers(0, 3)) == 0:
        position = draw(st.sampled_from([5, 8, 11, 14, 17, len(text) - 2]))
        text = (
            text[:position]
            + draw(st.sampled_from(["00", "13", "24", "29", "30", "31", "60", "99"]))
            + text[position + 2 :]
        )
    return text


@settings(max_examples=400)
@given(_written())
def test_the_reading_is_pythons_for_what_both_accept(text: str):
    """`datetime.fromisoformat` is the reference, save where it is laxer: it takes an offset minute of 60 or
    more (as the next hour), and times without a zone (in the machine's)."""
    offset_minute = re.search(r"[+-][0-9]{2}:?([0-9]{2})$", text)
    assume(offset_minute is None or int(offset_minute[1]) < 60)
    try:
        written = datetime.fromisoformat(text)
        expected = written.astimezone(UTC).replace(tzinfo=None) if written.tzinfo else None
    except (ValueError, OverflowError):
        expected = None
    instant = instant_parse(text)
    assert (instant.value if instant else None) == expected
