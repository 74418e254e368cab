"""Randomness, column-wise: one random stream per quantity, drawn a whole batch at a time as Arrow arrays.

Every stream is a `random.Random` seeded by a string (hashed with SHA-512 by the standard library, so
independent of PYTHONHASHSEED), and each session takes exactly one value from each stream, so a session's
values do not depend on where a batch starts. Times are integers of microseconds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

# In microseconds, the unit of every time here.
MILLISECOND = 1_000
SECOND = 1_000_000


class Draws:
    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._streams: dict[str, random.Random] = {}

    def _stream(self, name: str) -> random.Random:
        if name not in self._streams:
            self._streams[name] = random.Random(f"insights-demo:{self._seed}:{name}")
        return self._streams[name]

    def uniform(self, name: str, count: int) -> pa.Array:
        """`count` values in [0, 1), with 32 bits of resolution."""
        words = pa.Array.from_buffers(
            pa.uint32(), count, [None, pa.py_buffer(self._stream(name).randbytes(4 * count))]
        )
        return pc.divide(words.cast(pa.float64()), float(2**32))

    def hex_ids(self, name: str, count: int, digits: int = 32) -> pa.Array:
        """`count` random lowercase hex strings of `digits` digits (digits even)."""
        text = self._stream(name).randbytes(count * digits // 2).hex().encode("ascii")
        offsets = pc.multiply(arange(count + 1), digits).cast(pa.int32())
        return pa.Array.from_buffers(pa.string(), count, [None, offsets.buffers()[1], pa.py_buffer(text)])


def arange(count: int, start: int = 0) -> pa.Array:
    """start, start+1, ... (count values) as int64, without a Python loop."""
    return pc.add(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), count)), start - 1)


def below(u: pa.Array, n: int | pa.Array) -> pa.Array:
    """floor(u * n): an index in [0, n) from a uniform draw."""
    return pc.floor(pc.multiply(u, pc.cast(n, pa.float64()) if isinstance(n, pa.Array) else float(n))).cast(
        pa.int64()
    )


def pick(u: pa.Array, weights: Sequence[int]) -> pa.Array:
    """The index of the weighted choice each uniform draw lands on."""
    total = sum(weights)
    index = pa.repeat(pa.scalar(0, pa.int64()), len(u))
    running = 0
    for weight in weights[:-1]:
        running += weight
        index = pc.add(index, pc.greater_equal(u, running / total).cast(pa.int64()))
    return index


def choose(
    u: pa.Array, choices: Sequence[tuple[Any, int]], arrow_type: pa.DataType | None = None
) -> pa.Array:
    return pc.take(pa.array([value for value, _ in choices], arrow_type), pick(u, [w for _, w in choices]))


def text_join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation (NULL if any part is NULL)."""
    return pc.binary_join_element_wise(*parts, "")


def ms_floor(micros: pa.Array) -> pa.Array:
    """Rounded down to the millisecond, as the platform records times."""
    return pc.multiply(pc.divide(micros, MILLISECOND), MILLISECOND)
