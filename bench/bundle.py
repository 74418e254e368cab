"""The zip bundle of a multi-part result (GET /dwh/exports/{guid}?redirect=true): `exports.bundle.zip_stream`
from local storage against reading the same part files from local disk (goal: at least 0.8x its speed).

Both read warm files (written just before, so from the page cache): the figure is the bundle's own cost (zip
framing, CRC-32, chunking), not the disk's. Best of three runs each.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.report import Report

PARTS = int(os.environ.get("BENCH_BUNDLE_PARTS", "8"))
PART_MB = int(os.environ.get("BENCH_BUNDLE_PART_MB", "64"))
CHUNK = 1 << 20


def run(report: Report) -> None:
    from exports.bundle import zip_stream
    from exports.storage.local import LocalStorage

    with tempfile.TemporaryDirectory(prefix="insights-bench-bundle-") as tmp:
        root = Path(tmp)
        keys = [f"reports/bench/part-{n:03d}.csv.gz" for n in range(PARTS)]
        block = os.urandom(CHUNK)  # incompressible, like a gzipped part
        for key in keys:
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as out:
                for _ in range(PART_MB):
                    out.write(block)
        total = PARTS * PART_MB * CHUNK
        storage = LocalStorage(root)
        entries = [(key, key.rsplit("/", 1)[-1]) for key in keys]

        def read_files() -> int:
            read = 0
            for key in keys:
                with (root / key).open("rb") as source:
                    while chunk := source.read(CHUNK):
                        read += len(chunk)
            return read

        def stream_zip() -> int:
            return sum(len(chunk) for chunk in zip_stream(storage, entries))

        disk = _best(read_files)
        bundle = _best(stream_zip)
    megabytes = total / 1e6
    report.add("bundle_read_parts", megabytes / disk, "MB/s")
    report.add(
        "bundle_zip_stream",
        megabytes / bundle,
        "MB/s",
        ratio=disk / bundle,
        anchor=f"reading the {PARTS} parts from disk (goal >= 0.8)",
    )


def _best(step: Callable[[], int]) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return min(times)
