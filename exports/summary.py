"""The summary figures of an export's rows (giosg's "sidedata"), computed in the export's own pass.

`SummaryCollector` is fed every record batch as it streams to the writer and reads the hidden columns named in
`SUMMARY_COLUMNS` (the compiler appends them when asked); `summary_object` gives the JSON object, and is shared
with the warehouse's own computation of the same figures (queries.summary_sql), so the two cannot drift apart
in shape or rounding.

Memory is bounded whatever the number of rows: counters and min/max are scalars; the hour and weekday counts
are 31 integers; each distinct count keeps 64-bit hashes of at most `exact_limit` values (8 MB at the default
1,000,000, plus a buffer of as many waiting to be merged), then a 16 KiB HyperLogLog sketch instead; the
per-event and per-disconnect-reason counts keep at most `reasons_limit` values (events are few: the
catalog's). With the defaults the state peaks near 20 MB and the merges' temporaries near 60 MB (measured over
3M distinct sessions and reasons), the same at 3M rows as at 3 billion. Everything is Arrow kernels and numpy
per batch: no Python code runs per row.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from exports.engines.base import Statement, WarehouseEngine
from exports.schema import Column, ColumnType

# The hidden columns, appended after an export's output columns (name, type); what each holds is the
# compiler's business (queries.compiler), this module only reads them by name.
SUMMARY_COLUMNS: tuple[tuple[str, ColumnType], ...] = (
    ("_summary_event", ColumnType.STRING),  # EventName
    ("_summary_session", ColumnType.STRING),  # SessionId, may be NULL
    ("_summary_originator", ColumnType.STRING),  # OriginatorId, may be NULL
    ("_summary_timestamp", ColumnType.TIMESTAMP),  # TimeStamp, naive UTC
    ("_summary_duration", ColumnType.FLOAT),  # a CallEvent's Duration; NULL in other events' rows
    ("_summary_disconnect", ColumnType.STRING),  # a CallEvent's DisconnectReason; NULL in other events' rows
)
EVENT, SESSION, ORIGINATOR, TIMESTAMP, DURATION, DISCONNECT = (name for name, _ in SUMMARY_COLUMNS)
SUMMARY_NAMES = frozenset(name for name, _ in SUMMARY_COLUMNS)

EXACT_DISTINCT_LIMIT = 1_000_000  # distinct counts are exact up to this many values, then a sketch's estimate
REASONS_LIMIT = 100_000  # distinct reasons counted exactly; past it only the most frequent are kept
TOP_REASONS = 20
HLL_PRECISION = 14  # 2**14 one-byte registers: a standard error of 1.04 / sqrt(2**14), about 0.8%

Hashes = npt.NDArray[np.uint64]


@dataclass(frozen=True, slots=True)
class SummaryFigures:
    """The aggregates a summary is made of, however they were computed (a batch stream or the warehouse)."""

    rows: int
    rows_per_event: dict[str, int]
    unique_sessions: int
    unique_originators: int
    approximate: bool
    first: datetime | None
    last: datetime | None
    hours: Sequence[int]  # 24 counts, hour 0 first (UTC)
    days: Sequence[int]  # 7 counts, Monday first (ISO)
    duration_count: int
    duration_sum: float
    duration_min: float | None
    duration_max: float | None
    reasons: Iterable[tuple[str, int]]  # (reason, count), any order; at least the top TOP_REASONS


def summary_object(figures: SummaryFigures) -> dict[str, Any]:
    """The summary as a JSON-able object, keys in the documented order (see docs/DESIGN.md §8).

    `mean` is `sum / count` on both paths, so it agrees with `sum` exactly; `sum` itself may differ between
    two computations in its last bits, as floating-point addition depends on the order rows are added in.
    """
    count = figures.duration_count
    top = sorted(figures.reasons, key=lambda item: (-item[1], item[0]))[:TOP_REASONS]
    return {
        "rows": int(figures.rows),
        "rows_per_event": {event: int(n) for event, n in sorted(figures.rows_per_event.items())},
        "unique_sessions_count": int(figures.unique_sessions),
        "unique_originators_count": int(figures.unique_originators),
        "approximate": bool(figures.approximate),
        "first_timestamp": summary_timestamp(figures.first),
        "last_timestamp": summary_timestamp(figures.last),
        "timeframe_stat": {
            "hour_in_day": [[int(n), hour] for hour, n in enumerate(figures.hours)],
            "day_in_week": [[int(n), day] for day, n in enumerate(figures.days, start=1)],
        },
        "call_duration": {
            "count": int(count),
            "sum": _finite(figures.duration_sum) if count else 0.0,
            "min": _finite(figures.duration_min) if count else None,
            "max": _finite(figures.duration_max) if count else None,
            "mean": _finite(figures.duration_sum / count) if count else None,
        },
        "disconnect_reason": [{"value": value, "count": int(n)} for value, n in top],
    }


def _finite(value: float | None) -> float | None:
    """A float JSON can carry: NaN and the infinities (a warehouse may hold them) are null."""
    return None if value is None or not math.isfinite(value) else float(value)


def summary_timestamp(value: datetime | None) -> str | None:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ`, floored to the millisecond as the CSV writer floors (naive UTC in)."""
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


def output_columns(columns: Sequence[Column]) -> tuple[Column, ...]:
    """A statement's columns without the hidden summary columns: what the files hold."""
    return tuple(column for column in columns if column.name not in SUMMARY_NAMES)


def summarised(
    batches: Iterable[pa.RecordBatch], collector: SummaryCollector, *, width: int
) -> Iterator[pa.RecordBatch]:
    """Each batch handed on with only its first `width` (output) columns, and counted by `collector` on a thread
    of its own meanwhile (Arrow's and numpy's kernels release the GIL): one batch at a time, in order; an error
    of the count surfaces here, at the next batch at the latest."""
    keep = list(range(width))
    with ThreadPoolExecutor(1, thread_name_prefix="summary") as counter:
        counting: Future[None] | None = None
        for batch in batches:
            if counting is not None:
                counting.result()
            counting = counter.submit(collector.add, batch)
            yield batch.select(keep)
        if counting is not None:
            counting.result()


class ExportSummary:
    """A statement's output columns, and the summary counted from its hidden columns as the export writes them
    (a statement compiled without them, as plans from before summaries were, has no summary)."""

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self.columns = output_columns(statement.columns)
        self.collector = SummaryCollector() if len(self.columns) < len(statement.columns) else None

    def batches(self, engine: WarehouseEngine) -> Iterable[pa.RecordBatch]:
        """The statement's batches, counted, with only the output columns."""
        batches = engine.execute(self.statement)
        if self.collector is None:
            return batches
        return summarised(batches, self.collector, width=len(self.columns))

    @functools.cached_property
    def figures(self) -> dict[str, Any] | None:
        """The summary (once every batch was read), or None."""
        return None if self.collector is None else self.collector.result()

    def text(self) -> str:
        """The summary as compact JSON text ("" when there is none)."""
        return "" if self.figures is None else json.dumps(self.figures, separators=(",", ":"))


class SummaryCollector:
    """The summary of a stream of record batches holding the `SUMMARY_COLUMNS` (other columns are ignored).

    Use: `add(batch)` for every batch, then `result()`. Memory stays bounded whatever the number of rows (see
    the module docstring); `nbytes` says how much state is held. `exact_limit` and `reasons_limit` exist for
    tests; past either, the summary says `"approximate": true`.
    """

    def __init__(
        self, *, exact_limit: int = EXACT_DISTINCT_LIMIT, reasons_limit: int = REASONS_LIMIT
    ) -> None:
        self._rows = 0
        self._events = ValueCounts(limit=reasons_limit)
        self._sessions = DistinctCount(exact_limit=exact_limit)
        self._originators = DistinctCount(exact_limit=exact_limit)
        self._first: datetime | None = None
        self._last: datetime | None = None
        self._hours = np.zeros(24, np.int64)
        self._days = np.zeros(8, np.int64)  # index 0 unused: ISO weekdays are 1..7
        self._duration_count = 0
        self._duration_sum = 0.0
        self._duration_min: float | None = None
        self._duration_max: float | None = None
        self._reasons = ValueCounts(limit=reasons_limit)

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self._rows += batch.num_rows
        self._events.add(batch.column(EVENT))
        self._sessions.add(batch.column(SESSION))
        self._originators.add(batch.column(ORIGINATOR))
        self._add_times(batch.column(TIMESTAMP))
        self._add_durations(batch.column(DURATION))
        self._reasons.add(batch.column(DISCONNECT))

    def _add_times(self, times: pa.Array) -> None:
        bounds = pc.min_max(times)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is None:
            return
        self._first = low if self._first is None else min(self._first, low)
        self._last = high if self._last is None else max(self._last, high)
        times = times.drop_null()
        self._hours += np.bincount(pc.hour(times).to_numpy(), minlength=24)
        weekdays = pc.day_of_week(times, count_from_zero=False, week_start=1)
        self._days += np.bincount(weekdays.to_numpy(), minlength=8)

    def _add_durations(self, durations: pa.Array) -> None:
        count = pc.count(durations).as_py()
        if not count:
            return
        bounds = pc.min_max(durations)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        self._duration_count += count
        self._duration_sum += pc.sum(durations).as_py()  # Arrow sums a batch pairwise: little rounding
        self._duration_min = low if self._duration_min is None else min(self._duration_min, low)
        self._duration_max = high if self._duration_max is None else max(self._duration_max, high)

    def merge(self, other: SummaryCollector) -> None:
        """Add what `other` counted (the summary of another slice of the same export: queries.slice_runs), as
        if its batches had been added here. The duration sum adds the other's sum: merging in slice order
        gives the same figures whoever counted the slices."""
        self._rows += other._rows
        self._events.merge(other._events)
        self._sessions.merge(other._sessions)
        self._originators.merge(other._originators)
        self._first = _least(self._first, other._first)
        self._last = _greatest(self._last, other._last)
        self._hours += other._hours
        self._days += other._days
        self._duration_count += other._duration_count
        self._duration_sum += other._duration_sum
        self._duration_min = _least(self._duration_min, other._duration_min)
        self._duration_max = _greatest(self._duration_max, other._duration_max)
        self._reasons.merge(other._reasons)

    @property
    def nbytes(self) -> int:
        """Bytes of state held (the large parts: hashes, sketches, value counts)."""
        return self._sessions.nbytes + self._originators.nbytes + self._events.nbytes + self._reasons.nbytes

    def result(self) -> dict[str, Any]:
        return summary_object(
            SummaryFigures(
                rows=self._rows,
                rows_per_event=dict(self._events.items()),
                unique_sessions=self._sessions.count(),
                unique_originators=self._originators.count(),
                approximate=any(
                    part.approximate
                    for part in (self._sessions, self._originators, self._events, self._reasons)
                ),
                first=self._first,
                last=self._last,
                hours=self._hours.tolist(),
                days=self._days[1:].tolist(),
                duration_count=self._duration_count,
                duration_sum=self._duration_sum,
                duration_min=self._duration_min,
                duration_max=self._duration_max,
                reasons=self._reasons.top(TOP_REASONS),
            )
        )


def _least(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


class ValueCounts:
    """Rows per distinct non-NULL string value. Each batch's counts (Arrow's hash kernel) wait in a buffer
    merged by one group-by once it holds `limit` entries or `MERGE_EVERY` batches: a group-by per batch would
    cost more than the counting.

    Past `limit` distinct values only the `limit // 2` most frequent are kept (their counts from then on are
    lower bounds) and `approximate` turns true: memory stays bounded however many values there are.
    """

    MERGE_EVERY = 256

    def __init__(self, *, limit: int) -> None:
        self._limit = max(2, limit)
        self._table = pa.table({"value": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._approximate = False

    def add(self, values: pa.Array) -> None:
        counts = pc.value_counts(values)
        known = pc.is_valid(counts.field("values"))
        batch = pa.table({"value": counts.field("values"), "count": counts.field("counts")}).filter(known)
        if batch.num_rows == 0:
            return
        self._pending.append(batch.cast(self._table.schema))
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self._limit or len(self._pending) >= self.MERGE_EVERY:
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        merged = pa.concat_tables([self._table, *self._pending])
        self._pending, self._pending_rows = [], 0
        grouped = merged.group_by("value").aggregate([("count", "sum")])
        table = pa.table({"value": grouped["value"], "count": grouped["count_sum"]})
        if table.num_rows > self._limit:
            table = self._ranked(table).slice(0, self._limit // 2)
            self._approximate = True
        self._table = table

    @property
    def approximate(self) -> bool:
        self._merge()
        return self._approximate

    def merge(self, other: ValueCounts) -> None:
        """Add another's counts (approximate if either was)."""
        other._merge()
        self._approximate = self._approximate or other._approximate
        self._pending.append(other._table)
        self._pending_rows += other._table.num_rows
        self._merge()

    @staticmethod
    def _ranked(table: pa.Table) -> pa.Table:
        # Count descending, then value ascending by code point (Arrow compares UTF-8 bytes): the summary's order.
        return table.take(pc.sort_indices(table, [("count", "descending"), ("value", "ascending")]))

    def items(self) -> list[tuple[str, int]]:
        self._merge()
        return list(zip(self._table["value"].to_pylist(), self._table["count"].to_pylist(), strict=True))

    def top(self, n: int) -> list[tuple[str, int]]:
        self._merge()
        ranked = self._ranked(self._table).slice(0, n)
        return list(zip(ranked["value"].to_pylist(), ranked["count"].to_pylist(), strict=True))

    @property
    def nbytes(self) -> int:
        return int(self._table.nbytes) + sum(int(part.nbytes) for part in self._pending)


class DistinctCount:
    """The number of distinct non-NULL strings seen: exact up to `exact_limit` values, then estimated.

    Exact mode keeps the sorted distinct 64-bit hashes of the values (so two different values count as one only
    on a hash collision: a chance below 3e-8 at a million values); new hashes wait in a buffer merged once it
    holds `exact_limit` of them, so the sort is paid once per that many values, not per batch. Past the limit
    the hashes go into a HyperLogLog sketch and the exact set is dropped.
    """

    def __init__(self, *, exact_limit: int) -> None:
        self._limit = max(1, exact_limit)
        self._seen: Hashes = np.empty(0, np.uint64)
        self._pending: list[Hashes] = []
        self._pending_size = 0
        self._sketch: HyperLogLog | None = None

    @property
    def approximate(self) -> bool:
        self._merge()
        return self._sketch is not None

    def add(self, values: pa.Array) -> None:
        hashes = string_hashes(pc.unique(values).drop_null())  # unique first: Arrow's hash table is cheaper
        if self._sketch is not None:
            self._sketch.add(hashes)
            return
        self._pending.append(hashes)
        self._pending_size += len(hashes)
        if self._pending_size >= self._limit:
            self._merge()

    def merge(self, other: DistinctCount) -> None:
        """Add the values another counted: the union of the two sets, or of the two sketches (if either has one)."""
        other._merge()
        if other._sketch is not None:
            self._merge()
            if self._sketch is None:
                self._sketch = HyperLogLog()
                self._sketch.add(self._seen)
                self._seen = np.empty(0, np.uint64)
            self._sketch.merge(other._sketch)
            return
        if self._sketch is not None:
            self._sketch.add(other._seen)
            return
        self._pending.append(other._seen)
        self._pending_size += len(other._seen)
        self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        merged = _sorted_unique(np.concatenate([self._seen, *self._pending]))
        self._pending, self._pending_size = [], 0
        if len(merged) <= self._limit:
            self._seen = merged
            return
        self._sketch = HyperLogLog()
        self._sketch.add(merged)
        self._seen = np.empty(0, np.uint64)

    def count(self) -> int:
        self._merge()
        return len(self._seen) if self._sketch is None else self._sketch.estimate()

    @property
    def nbytes(self) -> int:
        pending = sum(part.nbytes for part in self._pending)
        return int(self._seen.nbytes + pending + (0 if self._sketch is None else self._sketch.nbytes))


def _sorted_unique(hashes: Hashes) -> Hashes:
    """The distinct values, sorted: a sort and a neighbour comparison (numpy's own `unique` hashes, and is some
    25x slower on a few million 64-bit values)."""
    ordered = np.sort(hashes)
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


class HyperLogLog:
    """Flajolet et al.'s HyperLogLog over 64-bit hashes, with linear counting for small cardinalities (no
    large-range correction is needed with 64-bit hashes). Registers are one byte each."""

    def __init__(self, precision: int = HLL_PRECISION) -> None:
        self._precision = precision
        self._registers = np.zeros(1 << precision, np.uint8)

    def add(self, hashes: Hashes) -> None:
        if len(hashes) == 0:
            return
        width = 64 - self._precision
        index = (hashes >> np.uint64(width)).astype(np.intp)
        rest = hashes & np.uint64((1 << width) - 1)
        # The bit length of `rest` from frexp's exponent: exact, as a value below 2**53 is exact in a float64.
        _, bits = np.frexp(rest.astype(np.float64))
        rank = (width + 1 - bits).astype(np.uint8)  # leading zeros in `width` bits, plus one
        np.maximum.at(self._registers, index, rank)

    def merge(self, other: HyperLogLog) -> None:
        """The sketch of both sets: each register's maximum."""
        np.maximum(self._registers, other._registers, out=self._registers)

    def estimate(self) -> int:
        m = len(self._registers)
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.ldexp(1.0, -self._registers.astype(np.int32))))
        zeros = int(np.count_nonzero(self._registers == 0))
        if zeros and raw <= 2.5 * m:
            return round(m * math.log(m / zeros))
        return round(raw)

    @property
    def nbytes(self) -> int:
        return int(self._registers.nbytes)


_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / phi: spreads word positions and lengths over all 64 bits


def _mix64(x: Hashes) -> Hashes:
    """splitmix64's finaliser: a bijection of uint64 whose every output bit depends on every input bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def string_hashes(values: pa.Array) -> Hashes:
    """A 64-bit hash of each value of a string array without NULLs, vectorised over 8-byte words.

    Each value is cut into little-endian 8-byte words (the last one zero-padded); each word is mixed with its
    position, the mixed words of a value are added up modulo 2**64 and the sum is mixed with the value's
    length. Not a cryptographic hash: it only has to spread distinct values evenly.
    """
    if pa.types.is_large_string(values.type):
        offset_type: type[np.signedinteger[Any]] = np.int64
    elif pa.types.is_string(values.type):
        offset_type = np.int32
    else:
        raise TypeError(f"expected strings, got {values.type}")
    if values.null_count:
        raise ValueError("string_hashes takes no NULLs")
    count = len(values)
    _, offset_buffer, data_buffer = values.buffers()
    if count == 0 or offset_buffer is None:
        return np.empty(0, np.uint64)
    offsets = np.frombuffer(offset_buffer, offset_type)[values.offset : values.offset + count + 1]
    offsets = offsets.astype(np.int64)
    lengths = np.diff(offsets)
    data = np.zeros(
        int(offsets[-1] - offsets[0]) + 8, np.uint8
    )  # 8 spare bytes: every word read is in bounds
    if data_buffer is not None and len(data) > 8:
        data[:-8] = np.frombuffer(data_buffer, np.uint8)[offsets[0] : offsets[-1]]
    # Every byte offset of `data` viewed as the start of an unaligned 8-byte word (a view: nothing is copied).
    words_at = np.ndarray((len(data) - 7,), "<u8", buffer=data, strides=(1,))
    word_counts = (lengths + 7) // 8
    first_word = np.cumsum(word_counts) - word_counts
    position = np.arange(int(word_counts.sum())) - np.repeat(first_word, word_counts)  # in its value
    start = np.repeat(offsets[:-1] - offsets[0], word_counts) + 8 * position  # in `data`
    tail = np.repeat(offsets[1:] - offsets[0], word_counts) - start  # bytes left; below 8 in a last word
    keep = np.uint64(2**64 - 1) >> (8 * (8 - np.minimum(tail, 8))).astype(np.uint64)  # drop the next value
    keys = _mix64(np.arange(1, int(position.max(initial=0)) + 2, dtype=np.uint64) * np.uint64(_GOLDEN))
    keyed = _mix64((words_at[start] & keep) ^ keys[position])
    sums = np.zeros(count, np.uint64)
    filled = word_counts > 0
    if filled.any():
        sums[filled] = np.add.reduceat(keyed, first_word[filled])  # wraps modulo 2**64, as intended
    # Length + 1: "a" and "a\0" have the same words, and the empty string must not hash to 0 (a fixed point).
    return _mix64(sums ^ ((lengths + 1).astype(np.uint64) * np.uint64(_GOLDEN)))
