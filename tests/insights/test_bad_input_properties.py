"""Bad input never leaves the API edge as a 500 or an uncaught exception. Proven by property-based tests:

1. `LimitedJSONParser.parse`, given any bytes (random bytes; JSON texts of generated values; nesting thousands
   of levels deep; huge arrays; long strings; lone-surrogate, NUL, RTL and combining-character escapes;
   numbers such as 1e999999, -0, 2**70 or thousands of digits; a BOM; other encodings), returns a value or
   raises `ParseError` or the 413 `BodyTooLarge`, nothing else. A JSON text within the limit, in UTF-8 and with
   finite numbers only, parses back to the value it encodes.
2. `query_validate`, given any JSON value (arbitrary ones, and query-shaped ones with catalog and random
   event, field and operator names, values of every JSON type, windows from year 1 to year 9999), returns a
   `Query` or raises `QueryValidationError` whose message is a str or dict and whose body JSON-encodes to
   UTF-8 (no lone surrogate, no NUL). A `Query` compiles for DuckDB and PostgreSQL, its plan reads back as an
   equal `Statement` (years 1 to 9999), and its body is stored as ASCII JSON that loads back to an equal value.
3. POST /_rest/v4/dwh/Q with any raw body and content type answers 201, 400, 413 or 415 with a JSON body:
   `{"id": ...}` for 201, the envelope `{"code": <status>, "message": ...}` otherwise.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import hypothesis
import pytest
from django.conf import settings as django_settings
from django.test import Client
from hypothesis import HealthCheck, Phase, example, find, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError

from exports.engines.duckdb import DUCKDB
from exports.engines.postgres import POSTGRES
from exports.schema import ColumnType
from insights.errors import BodyTooLarge
from insights.parsers import LimitedJSONParser
from insights.services import api_key_create
from queries.catalog import catalog
from queries.compiler import query_compile
from queries.models import QueryRequest
from queries.plan import plan_build, plan_statement
from queries.services import body_text
from queries.spec import Op, Query
from queries.validation import INT64_MAX, INT64_MIN, QueryValidationError, query_validate

MAX_WINDOW = timedelta(days=31)
MICROSECOND = timedelta(microseconds=1)
VALID_BODY = {
    "timestamp": {"$gte": "2019-11-25T00:00:00Z", "$lte": "2019-11-26T00:00:00Z"},
    "data": {"CallEvent": {"fields": ["Ani", "Duration"], "filters": {"Duration": {"$gt": 1.5}}}},
    "scope": {"scope": "SessionId", "filters": {"DtmfEvent": {"DtmfInput": {"$in": ["1", "2"]}}}},
}


def _mostly(usual: st.SearchStrategy[Any], unusual: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` 19 times in 20, else `unusual`: a random body has many parts, and must still often get past
    the first checks to reach the later ones (and the compiler)."""
    return st.integers(0, 19).flatmap(lambda n: unusual if n == 19 else usual)


def _rarely(draw: st.DrawFn) -> bool:
    """True one time in 20, as `_mostly` picks its unusual branch."""
    return draw(st.integers(0, 19)) == 19


# --- JSON values and texts --------------------------------------------------------------------------------

# Strings of any code point, lone surrogates included (hypothesis leaves them out unless asked), and the usual
# suspects: NUL, RTL marks, combining characters, a BOM, quotes, SQL.
_TRICKY = st.sampled_from(
    [
        "\ud800",
        "\udfff",
        "\udc00\ud800",
        "\x00",
        "a\x00b",
        "\u202e",
        "\u200f",
        "e\u0301",
        "\u0301",
        "\ufeff",
        "\uffff",
        "\U0001f600",
        "\u2028",
        "\\",
        '"',
        "'; DROP TABLE events; --",
        "",
    ]
)
_TEXT = st.text(st.characters(exclude_categories=()), max_size=12) | _TRICKY
_SCALARS = st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats() | _TEXT
_JSON = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=30,
)

# Raw JSON texts, built by string concatenation: shapes no value strategy reaches cheaply.
_NUMBER_LITERALS = st.sampled_from(
    [
        "1e999999",
        "-1e999999",
        "1e-999999",
        "-0",
        "-0.0",
        "0e0",
        str(2**70),
        str(INT64_MIN - 1),
        "1" * 4300,
        "1" * 4301,
        "9" * 20_000,
        "NaN",
        "Infinity",
        "-Infinity",
        "01",
        "1.",
        ".5",
        "+1",
        "0x10",
    ]
) | st.from_regex(r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,9})?", fullmatch=True)
_ESCAPES = st.sampled_from(
    [
        "\\ud800",
        "\\udfff",
        "\\udc00\\ud800",
        "\\ud83d\\ude00",
        "\\u0000",
        "\\u202e",
        "\\u200f",
        "\\u0301",
        "\\ufeff",
        "\\uffff",
        "\\n",
        "\\\\",
        '\\"',
        "\\/",
        "\\u12",
        "\\uZZZZ",
        "\\x41",
        "\\",
        # raw, not escaped: control characters are refused
        "\u202eabc",
        "e\u0301",
        "\x00",
        "\n",
        "\U0001f600",
    ]
)
_STRING_LITERALS = st.lists(_ESCAPES | _TEXT, max_size=8).map(lambda parts: '"' + "".join(parts) + '"')
_SHORT_ITEMS = st.sampled_from(
    ["0", "-0", "1e999999", "null", "true", "{}", "[]", '"a"', '"\\ud800"', "[[[]]]"]
)
_LONG_STRINGS = st.builds(lambda part, n: '"' + part * n + '"', _ESCAPES, st.integers(1000, 12_000))
_HUGE_ARRAYS = st.builds(
    lambda item, n: "[" + ",".join([item] * n) + "]", _SHORT_ITEMS, st.integers(0, 40_000)
)
_NESTINGS = st.sampled_from(
    [("[", "]"), ('{"a":', "}"), ('[{"":', "}]"), ('{"\\ud800":[', "]}"), ('{"\\u0000":', "}")]
)


@st.composite
def _deep_texts(draw: st.DrawFn) -> str:
    """Nesting up to thousands of levels around a scalar, balanced or not (the closers may be one off)."""
    depth = draw(st.integers(1, 5000) | st.sampled_from([900, 990, 1000, 1010, 3000, 5000]))
    opener, closer = draw(_NESTINGS)
    closing = depth + draw(st.sampled_from([0, 0, 0, -1, 1]))
    return opener * depth + draw(_SHORT_ITEMS | _NUMBER_LITERALS) + closer * closing


_RAW_TEXTS = st.one_of(
    _NUMBER_LITERALS,
    _STRING_LITERALS,
    _LONG_STRINGS,
    _HUGE_ARRAYS,
    _deep_texts(),
    st.lists(_NUMBER_LITERALS | _STRING_LITERALS, max_size=5).map(lambda items: "[" + ",".join(items) + "]"),
)


def _encode(text: str, encoding: str) -> bytes:
    # "surrogatepass" writes a lone surrogate as the 3 bytes UTF-8 forbids, which the parser must refuse.
    return text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")


_ENCODINGS = _mostly(st.just("utf-8"), st.sampled_from(["utf-8-sig", "utf-16", "utf-32", "latin-1"]))


# --- 1. the JSON parser -----------------------------------------------------------------------------------


def _parse(raw: bytes) -> tuple[bool, Any]:
    """(True, value) or (False, the ParseError or 413 BodyTooLarge raised); any other exception fails the test."""
    limit = django_settings.API_MAX_BODY_BYTES
    try:
        value = LimitedJSONParser().parse(io.BytesIO(raw))
    except ParseError as error:
        hypothesis.event("ParseError")
        assert len(raw) <= limit  # a body over the limit is a 413 before it is parsed
        str(error.detail).encode("utf-8")  # the 400's message is sent as UTF-8
        return False, error
    except BodyTooLarge as error:
        hypothesis.event("413")
        assert error.status_code == 413 and len(raw) > limit
        return False, error
    hypothesis.event("parsed")
    return True, value


def _finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a JSON value (json.dumps writes them as NaN/Infinity, not JSON)."""
    if isinstance(value, float):
        return value - value == 0
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    return True


@settings(max_examples=300)
@given(st.binary(max_size=2048))
@example(b"\xff\xfe{}")
@example(b"\xed\xa0\x80")  # a UTF-8-encoded surrogate
@example(b"\xef\xbb\xbf{}")  # a BOM
def test_arbitrary_bytes_are_parsed_or_refused(raw: bytes) -> None:
    _parse(raw)


@settings(max_examples=300)
@given(value=_JSON, ensure_ascii=st.booleans(), indent=st.none() | st.just(2))
def test_json_texts_parse_to_their_value_or_are_refused(
    value: Any, ensure_ascii: bool, indent: int | None
) -> None:
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)
    raw = _encode(text, "utf-8")
    parsed, result = _parse(raw)
    try:
        text.encode("utf-8")
        utf8 = True
    except UnicodeEncodeError:  # a lone surrogate written raw (ensure_ascii=False): not UTF-8
        utf8 = False
    if _finite(value) and utf8 and len(raw) <= django_settings.API_MAX_BODY_BYTES:
        assert parsed and result == value
    else:
        assert not parsed


@settings(max_examples=400)
@given(text=_RAW_TEXTS, encoding=_ENCODINGS)
@example(text="[" * 5000 + "]" * 5000, encoding="utf-8")
@example(text='{"a":' * 5000 + "1" + "}" * 5000, encoding="utf-8")
@example(text="[" + ",".join(["1e999999"] * 7000) + "]", encoding="utf-8")  # over the limit
@example(text="1" * 5000, encoding="utf-8")  # past Python's int-from-string digit limit
@example(text='["\\ud800", "\\u0000", "\\u202e", "e\\u0301", -0, 1e999999]', encoding="utf-8")
def test_raw_json_texts_are_parsed_or_refused(text: str, encoding: str) -> None:
    _parse(_encode(text, encoding))


# --- 2. the validator, and what is done with a Query ------------------------------------------------------

_CATALOG = catalog()
_EVENTS = sorted(_CATALOG.events)
_ALL_FIELDS = sorted({name for event in _CATALOG.events.values() for name in event.fields})
_OPERATORS = [op.value for op in Op]
_LIST_OPERATORS = {op.value for op in Op if op.takes_list}
_EVENT_NAMES = _mostly(st.sampled_from(_EVENTS), _TEXT)
_OPERATOR_NAMES = _mostly(st.sampled_from(_OPERATORS), _TEXT)

# Instants in UTC; the ends of the calendar are where a microsecond more or less overflows.
_INSTANTS = st.datetimes() | st.sampled_from(
    [datetime.min, datetime.max, datetime(999, 12, 31), datetime(2019, 11, 25)]
)
_OFFSETS = st.sampled_from(
    [timedelta(0), timedelta(hours=1), -timedelta(hours=5, minutes=30), timedelta(hours=23, minutes=59)]
)
_NEAR_ISO = st.from_regex(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
    fullmatch=True,
)


@st.composite
def _iso_texts(draw: st.DrawFn, instant: datetime | None = None) -> str:
    """`instant` (UTC) spelled as the API accepts it: Z or an offset, 0 to 9 fractional digits (some of those
    finer than a microsecond, which is refused)."""
    if instant is None:
        instant = draw(_INSTANTS)
    local, zone = instant, "Z"
    offset = draw(st.none() | _OFFSETS)
    if offset is not None and datetime.min + abs(offset) <= instant <= datetime.max - abs(offset):
        local = instant + offset
        minutes = abs(offset) // timedelta(minutes=1)
        zone = f"{'-' if offset < timedelta(0) else '+'}{minutes // 60:02d}:{minutes % 60:02d}"
    digits = f"{local.microsecond:06d}"
    fraction = draw(
        _mostly(
            st.sampled_from(["." + digits, "." + (digits.rstrip("0") or "0"), "." + digits + "000"]),
            st.sampled_from(["." + digits + "1", ""]),  # too precise; or no fraction (a wrong instant)
        )
    )
    if local.microsecond == 0 and draw(st.booleans()):
        fraction = ""
    day = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
    return f"{day}T{local.hour:02d}:{local.minute:02d}:{local.second:02d}{fraction}{zone}"


_SPANS = st.timedeltas(timedelta(0), timedelta(days=35)) | st.sampled_from(
    [timedelta(0), MICROSECOND, 2 * MICROSECOND, MAX_WINDOW, MAX_WINDOW + MICROSECOND]
)


@st.composite
def _windows(draw: st.DrawFn) -> dict[str, Any]:
    """A timestamp object: mostly a lower and an upper bound at most 35 days apart, sometimes reversed or with
    one more operator."""
    start = draw(_INSTANTS)
    span = draw(_SPANS)
    end = start + span if datetime.max - start >= span else datetime.max
    if _rarely(draw):
        start, end = end, start
    lower, upper = draw(st.sampled_from(["$gte", "$gt"])), draw(st.sampled_from(["$lte", "$lt"]))
    window: dict[str, Any] = {lower: draw(_iso_texts(start)), upper: draw(_iso_texts(end))}
    if _rarely(draw):
        window[draw(_OPERATOR_NAMES)] = draw(_iso_texts() | _NEAR_ISO | _JSON)
    return dict(draw(st.permutations(list(window.items()))))


# Values a field of each type takes, and values it refuses (with NaN and infinities, lone surrogates, NUL,
# over-long strings, integers past 64 bits, floats past float64).
_VALID_STRINGS = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
_VALID_VALUES = {
    ColumnType.STRING: _VALID_STRINGS
    | st.sampled_from(["x" * 1024, "\u00e9" * 1024, "\u202ee\u0301", "'; --"]),
    ColumnType.INTEGER: st.integers(INT64_MIN, INT64_MAX),
    ColumnType.FLOAT: st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70),
    ColumnType.BOOLEAN: st.booleans(),
    ColumnType.TIMESTAMP: _iso_texts(),
}
_BAD_VALUES = (
    _SCALARS
    | st.sampled_from(
        ["x" * 1025, "\u00e9" * 1025, "a\x00b", "\ud800", INT64_MIN - 1, INT64_MAX + 1, 10**400, float("nan")]
    )
    | _NEAR_ISO
)


@st.composite
def _operands(draw: st.DrawFn, op: str, kind: ColumnType | None) -> Any:
    """The value of `op` on a field of type `kind` (None: an unknown field): mostly of the right type and
    shape (a list for $in/$nin), sometimes not, sometimes any JSON at all."""
    scalars = _mostly(_VALID_VALUES[kind], _BAD_VALUES) if kind is not None else _SCALARS
    wants_list = op in _LIST_OPERATORS
    surprise = draw(st.integers(0, 39))
    if surprise == 39:
        return draw(_JSON)
    if surprise == 38:
        wants_list = not wants_list
    if not wants_list:
        return draw(scalars)
    if surprise == 37:
        return [draw(scalars)] * 1001  # one over the $in limit
    return draw(st.lists(scalars, min_size=surprise % 2, max_size=4))  # sometimes empty


def _field_names(event: str) -> st.SearchStrategy[str]:
    own = sorted(_CATALOG.events[event].fields) if event in _CATALOG.events else _ALL_FIELDS
    return _mostly(st.sampled_from(own), st.sampled_from(_ALL_FIELDS) | _TEXT)


@st.composite
def _groups(draw: st.DrawFn, event: str) -> Any:
    """field -> {operator: value} for one event."""
    if _rarely(draw):
        return draw(_JSON)
    fields = _CATALOG.events[event].fields if event in _CATALOG.events else {}
    group: dict[str, Any] = {}
    for name in draw(st.lists(_field_names(event), max_size=3, unique=True)):
        kind = fields[name].type if name in fields else None
        ops = draw(_mostly(st.lists(_OPERATOR_NAMES, min_size=1, max_size=3, unique=True), st.just([])))
        group[name] = {op: draw(_operands(op, kind)) for op in ops}
    return group


@st.composite
def _data(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for event in draw(st.lists(_EVENT_NAMES, min_size=1, max_size=3, unique=True)):
        if _rarely(draw):
            data[event] = draw(_JSON)
            continue
        names = _field_names(event)
        spec: dict[str, Any] = {
            "fields": draw(
                _mostly(st.lists(names, min_size=1, max_size=4, unique=True), st.lists(names) | _JSON)
            )
        }
        if draw(st.booleans()):
            spec["filters"] = draw(_groups(event))
        if _rarely(draw):
            spec[draw(_TEXT)] = draw(_JSON)
        data[event] = spec
    return data


@st.composite
def _query_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A body shaped like a query: timestamp and data, maybe filters and scope, each part sometimes wrong."""
    data = draw(_mostly(_data(), _JSON))
    body: dict[str, Any] = {"timestamp": draw(_mostly(_windows(), _JSON)), "data": data}
    # filters names requested events (others are refused); scope may name any event.
    requested = (
        _mostly(st.sampled_from(list(data)), _EVENT_NAMES)
        if isinstance(data, dict) and data
        else _EVENT_NAMES
    )
    if draw(st.booleans()):
        events = draw(st.lists(requested, max_size=2, unique=True))
        body["filters"] = draw(_JSON) if _rarely(draw) else {event: draw(_groups(event)) for event in events}
    if draw(st.booleans()):
        events = draw(st.lists(_EVENT_NAMES, max_size=2, unique=True))
        filters = {event: draw(_groups(event)) for event in events}
        scope = {"scope": draw(_mostly(st.just("SessionId"), _JSON)), "filters": filters}
        body["scope"] = draw(_JSON) if _rarely(draw) else scope
    if _rarely(draw):
        del body[draw(st.sampled_from(sorted(body)))]
    if _rarely(draw):
        body[draw(_TEXT)] = draw(_JSON)
    return dict(draw(st.permutations(list(body.items()))))


def _strict_loads(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _validated(body: Any) -> Query | None:
    """The Query, after checking what the API does with it; None, after checking the error is deliverable."""
    try:
        query = query_validate(body, max_window=MAX_WINDOW)
    except QueryValidationError as error:
        hypothesis.event("refused")
        assert isinstance(error.message, str | dict)
        json.dumps(error.body)
        # The API sends non-ASCII as is, in UTF-8: a lone surrogate would make the 400 a 500.
        text = json.dumps(error.body, ensure_ascii=False)
        text.encode("utf-8")
        assert "\x00" not in text  # nor would a NUL survive a PostgreSQL text column (logs, admin)
        return None
    hypothesis.event("valid")
    assert isinstance(query, Query)
    assert len(query.fingerprint) == 64  # stored with every accepted query
    for dialect in (DUCKDB, POSTGRES):
        statement = query_compile(query, customer_id="acme", dialect=dialect)
        assert statement.dialect == dialect.name
        assert plan_statement(plan_build(query, statement)) == statement
    stored = body_text(body)
    assert stored.isascii()
    assert _strict_loads(stored) == body
    return query


@settings(max_examples=300)
@given(_JSON)
def test_arbitrary_json_is_validated_or_refused(body: Any) -> None:
    _validated(body)


@settings(max_examples=1000)
@given(_query_bodies())
@example(VALID_BODY)
# Windows at the ends of the calendar, where an exclusive bound moved by a microsecond overflows.
@example(
    {"timestamp": {"$gt": "0001-01-01T00:00:00Z", "$lt": "0001-01-01T00:00:00Z"}, "data": VALID_BODY["data"]}
)
@example(
    {"timestamp": {"$gte": "0001-01-01T00:00:00Z", "$lt": "0001-01-01T00:00:00Z"}, "data": VALID_BODY["data"]}
)
@example(
    {
        "timestamp": {"$gt": "9999-12-31T23:59:59.999999Z", "$lte": "9999-12-31T23:59:59.999999Z"},
        "data": VALID_BODY["data"],
    }
)
def test_query_shaped_json_is_validated_or_refused(body: dict[str, Any]) -> None:
    _validated(body)


def _valid_and(condition: Callable[[Query], bool]) -> Callable[[Any], bool]:
    def holds(body: Any) -> bool:
        query = _validated(body)
        return query is not None and condition(query)

    return holds


def test_the_query_shapes_reach_every_outcome() -> None:
    """The property above is not vacuous: its bodies can be valid, with scope, filters and several events."""
    quick = settings(max_examples=2000, phases=[Phase.generate], database=None)  # found: no need to shrink
    find(_query_bodies(), _valid_and(lambda query: query.scope is not None), settings=quick)
    find(_query_bodies(), _valid_and(lambda query: len(query.events) > 1), settings=quick)
    find(_query_bodies(), _valid_and(lambda query: query.events[0].conditions != ()), settings=quick)


def test_windows_at_the_ends_of_the_calendar_are_validated() -> None:
    def window(lower: tuple[str, str], upper: tuple[str, str]) -> dict[str, Any]:
        return {"timestamp": dict([lower, upper]), "data": VALID_BODY["data"]}

    first, last = "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"
    assert query_validate(window(("$gte", first), ("$lte", first))).window.start == datetime.min
    assert query_validate(window(("$gte", last), ("$lte", last))).window.end == datetime.max
    assert (
        query_validate(window(("$gt", first), ("$lt", "0001-01-01T00:00:00.000002Z"))).window.start
        == datetime.min
    )
    for empty in (window(("$gt", first), ("$lt", first)), window(("$gt", last), ("$lte", last))):
        with pytest.raises(QueryValidationError, match="is empty: no instant lies in it"):
            query_validate(empty)


def test_plans_before_year_1000_read_back() -> None:
    """strftime's %Y does not pad years before 1000 (glibc): a plan written with it could not be read back, so
    such a query was accepted (201) and could never run."""
    body = {
        "timestamp": {"$gte": "0999-12-01T00:00:00Z", "$lt": "0999-12-02T00:00:00Z"},
        "data": VALID_BODY["data"],
    }
    query = query_validate(body)
    statement = query_compile(query, customer_id="acme", dialect=DUCKDB)
    assert plan_statement(plan_build(query, statement)) == statement


# --- 3. over HTTP -----------------------------------------------------------------------------------------

# JSON mostly, so most bodies reach validation (and some a 201); the rest must be a 415 whatever they hold.
_CONTENT_TYPES = st.one_of(
    st.just("application/json"),
    st.just("application/json"),
    st.just("application/json; charset=utf-8"),
    st.sampled_from(
        [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/xml",
            "",
        ]
    ),
)
_QUERY_TEXTS = _query_bodies().map(lambda body: json.dumps(body).encode("ascii"))
_HTTP_BODIES = st.one_of(
    _QUERY_TEXTS,
    _QUERY_TEXTS,
    _QUERY_TEXTS,
    st.builds(
        lambda body, encoding: _encode(json.dumps(body, ensure_ascii=False), encoding),
        _query_bodies(),
        _ENCODINGS,
    ),
    st.binary(max_size=512),
    st.builds(_encode, _RAW_TEXTS, _ENCODINGS),
)
# Not 429: the concurrency limit is out of reach (see `authorization`), and no other throttle applies to a
# customer that authenticates.
ANSWERS = {201, 400, 413, 415}


@pytest.fixture()
def authorization(customer_factory: Any) -> dict[str, str]:
    # Many slots: each 201 keeps one, and a 429 would hide what the body itself gets.
    customer = customer_factory("acme", max_concurrent_queries=32767, max_window_days=31)
    _, key = api_key_create(customer=customer, name="properties")
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.django_db
# The client, customer and key are made once per test and shared by its examples, as wanted here: the rows
# earlier examples create only take slots, and there are plenty.
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=_HTTP_BODIES, content_type=_CONTENT_TYPES)
@example(raw=json.dumps(VALID_BODY).encode(), content_type="application/json")
@example(raw=b"[" * 5000 + b"]" * 5000, content_type="application/json")
@example(raw=b'{"\\ud800": "\\u0000"}', content_type="application/json")
@example(raw=b"[" + b"0," * 40_000 + b"0]", content_type="application/json")
@example(
    raw=json.dumps(VALID_BODY).replace("1.5", "1e999999").encode(),  # parsed to inf: a FLOAT value it refuses
    content_type="application/json",
)
def test_any_post_body_is_answered_in_json(
    client: Client,
    authorization: dict[str, str],
    sent_tasks: list[tuple[str, tuple[Any, ...], float | None]],
    django_capture_on_commit_callbacks: Any,
    raw: bytes,
    content_type: str,
) -> None:
    # The run is enqueued on commit: run the hook, into the recording broker (sent_tasks), as a request would.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/_rest/v4/dwh/Q", data=raw, content_type=content_type, headers=authorization)
    hypothesis.event(f"HTTP {response.status_code}")
    assert response.status_code in ANSWERS, response.content
    assert response["Content-Type"] == "application/json"
    answer = response.json()
    if response.status_code == 201:
        assert set(answer) == {"id"}
        stored = QueryRequest.objects.get(guid=answer["id"])
        assert json.loads(stored.body) == json.loads(raw)
        assert sent_tasks[-1] == ("queries.run", (stored.pk,), None)
        return
    assert set(answer) == {"code", "message"} and answer["code"] == response.status_code
    assert isinstance(answer["message"], str | dict)
    if response.status_code == 413:
        assert len(raw) > django_settings.API_MAX_BODY_BYTES
