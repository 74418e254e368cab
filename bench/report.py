"""One line per figure, `BENCH <name> <value> <unit> [ratio=<x> vs <anchor>]`, and the same in results.json."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("results.json")


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    ratio: float | None = None
    anchor: str | None = None

    def line(self) -> str:
        text = f"BENCH {self.name} {self.value:.6g} {self.unit}"
        if self.ratio is not None:
            text += f" ratio={self.ratio:.3f} vs {self.anchor}"
        return text


class Report:
    def __init__(self) -> None:
        self.figures: list[Figure] = []

    def add(
        self, name: str, value: float, unit: str, *, ratio: float | None = None, anchor: str | None = None
    ) -> None:
        figure = Figure(name, value, unit, ratio, anchor)
        self.figures.append(figure)
        print(figure.line(), flush=True)

    def save(self) -> None:
        RESULTS.write_text(
            json.dumps(
                {
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": {"python": platform.python_version(), "cpus": _cpus()},
                    "figures": [asdict(f) for f in self.figures],
                },
                indent=2,
            )
            + "\n"
        )


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
