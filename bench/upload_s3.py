"""S3 upload throughput: S3Storage.publish (all or nothing, SHA-256 per part) vs boto3's `upload_file` with
its defaults, the same file to the same moto_server, three runs each (interleaved) after a warm-up, medians.

BENCH_UPLOAD_MB sets the file size (default 200). moto_server keeps objects in memory, so each upload is
deleted right after it (the delete is timed with it, for both). On a small machine moto_server's CPU is the
bottleneck for both sides, so the ratio is what to read, not the MB/s.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.report import Report
from exports.storage.s3 import S3Storage
from exports.storage.s3.parts import MIB
from tests.moto import moto_server

RUNS = 3


def _source_write(path: Path, megabytes: int) -> None:
    """Incompressible bytes, written in blocks so the generator never holds the whole file."""
    with path.open("wb") as stream:
        for _ in range(megabytes):
            stream.write(os.urandom(MIB))


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run(report: Report) -> None:
    megabytes = int(os.environ.get("BENCH_UPLOAD_MB", "200"))
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp, moto_server() as server:
        source = Path(tmp) / "upload.bin"
        _source_write(source, megabytes)
        bucket = server.bucket_create("bench")
        storage = S3Storage(**server.storage_config(bucket))
        client = server.client()

        def ours() -> None:
            storage.publish([(source, "ours.bin")], (b"{}", "ours.manifest.json"))
            storage.delete(["ours.bin", "ours.manifest.json"])

        def theirs() -> None:
            client.upload_file(str(source), bucket, "theirs.bin")
            client.delete_object(Bucket=bucket, Key="theirs.bin")

        ours()  # warm up both: connections, moto's first-request set-up
        theirs()
        times: dict[Callable[[], None], list[float]] = {ours: [], theirs: []}
        for run in range(RUNS):
            # Alternate who goes first, so neither always meets the server after the other's clean-up.
            for action in (ours, theirs) if run % 2 == 0 else (theirs, ours):
                times[action].append(_timed(action))
        storage.close()
    ours_mbps = megabytes / statistics.median(times[ours])
    theirs_mbps = megabytes / statistics.median(times[theirs])
    report.add(
        "s3_upload", ours_mbps, "MB/s", ratio=ours_mbps / theirs_mbps, anchor="boto3 upload_file defaults"
    )
