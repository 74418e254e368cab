"""Two ways of doing the same work timed against each other in one process: paired rounds, interleaved.

Why paired: on the shared 2-core machine one run's wall time swings by 2x with the neighbours' load, but
two runs back to back meet about the same load, so the ratio within a pair is much steadier than either
time; the median over the pairs steadier still. The order alternates from round to round, so neither side
always runs first (after the other's clean-up, or on a cooler cache).

Why CPU seconds too: when the machine is saturated, the kernel gives each session's processes a share of
the cores (autogroup), so a transfer's speed follows the CPU it and its server spend per byte. The seconds
themselves grow on a busier machine (caches, shared cores), but their ratio within a pair moves far less
than the wall-time ratio: it shows whether a change made the work cheaper even on a run whose wall times
are noise. `cpu` counts the client's process (and its reaped children) plus the server's.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.report import Report

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds
    cpu: float  # CPU seconds, client and server


@dataclass
class Comparison:
    """The samples of both sides, round by round (index i of each list is pair i)."""

    ours: list[Sample] = field(default_factory=list)
    theirs: list[Sample] = field(default_factory=list)

    def ratios(self) -> list[float]:
        """Per pair, their time over ours: above 1 when ours was faster."""
        return [t.wall / o.wall for o, t in zip(self.ours, self.theirs, strict=True)]

    def ratio(self) -> float:
        return statistics.median(self.ratios())

    def cpu_ratio(self) -> float:
        """Per pair, their CPU seconds over ours, the median: above 1 when ours spends less."""
        return statistics.median(t.cpu / o.cpu for o, t in zip(self.ours, self.theirs, strict=True))

    def cpu(self, side: str = "ours") -> float:
        """The side's median CPU seconds per run."""
        return statistics.median(s.cpu for s in self._side(side))

    def rate(self, amount: float, side: str = "ours") -> float:
        """`amount` per second of the side's median wall time."""
        return amount / statistics.median(s.wall for s in self._side(side))

    def _side(self, side: str) -> list[Sample]:
        return {"ours": self.ours, "theirs": self.theirs}[side]

    def spread(self) -> str:
        """How the pairs' ratios spread: their quartiles and extremes (at least two rounds)."""
        ratios = self.ratios()
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        return (
            f"median of {len(ratios)} paired rounds, quartiles {q1:.2f}-{q3:.2f}, "
            f"range {min(ratios):.2f}-{max(ratios):.2f}"
        )


def compare(
    ours: Callable[[], object], theirs: Callable[[], object], *, rounds: int, cpu: Callable[[], float]
) -> Comparison:
    """Run both `rounds` times, interleaved, the order alternating; `cpu()` is the CPU seconds spent so far
    by the client and the server (read before and after each run). Warm both up first."""
    result = Comparison()
    for number in range(rounds):
        pair = ((ours, result.ours), (theirs, result.theirs))
        for action, samples in pair if number % 2 == 0 else pair[::-1]:
            cpu_before, started = cpu(), time.perf_counter()
            action()
            wall = time.perf_counter() - started
            samples.append(Sample(wall=wall, cpu=cpu() - cpu_before))
    return result


def own_cpu() -> float:
    """CPU seconds of this process (every thread) and of its children that were waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def process_cpu(pid: int, *, children: bool = False) -> float:
    """CPU seconds of process `pid` (Linux /proc), with those of its children it has reaped if `children`."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / _TICKS


def comparison_report(
    report: Report, name: str, result: Comparison, *, megabytes: int, anchor: str, cpu_of: str
) -> None:
    """An upload comparison's two figures: `name` (our MB/s, the wall ratio with its spread) and `<name>_cpu`
    (CPU seconds per GB of `cpu_of`, the median of the pairs' CPU ratios)."""
    report.add(
        name, result.rate(megabytes), "MB/s", ratio=result.ratio(), anchor=f"{anchor} ({result.spread()})"
    )
    report.add(
        f"{name}_cpu",
        1024 * result.cpu() / megabytes,
        "cpu_s/GB",
        ratio=result.cpu_ratio(),
        anchor=f"{anchor}: CPU seconds of {cpu_of} per upload, theirs / ours per pair",
    )
