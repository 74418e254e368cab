"""S3 upload throughput: S3Storage.publish (all or nothing, SHA-256 per part, the manifest last) vs boto3's
`upload_file` with its defaults, the same file to the same moto_server, in paired rounds (see paired.py).

BENCH_UPLOAD_MB sets the file size (default 256), BENCH_UPLOAD_ROUNDS the pairs (default 9). moto_server
keeps objects in memory, so each upload is deleted right after it (the delete is timed with it, for both).
On this machine moto_server's CPU is most of the work for both sides (client and server share the 2
cores), so the ratios are what to read, not the MB/s: the wall-time ratio, and the ratio of the CPU
seconds both processes spend per upload (`s3_upload_cpu`), which moves far less with the neighbours' load.

boto3's defaults send a CRC32 per part (botocore's `when_supported`), ours a SHA-256 (what the manifest's
integrity and a resumed commit's "is this object ours" check rest on). moto_server recomputes the composite
checksum when the upload completes, on one thread, so SHA-256 costs the server ~0.1 s more per 256 MB than CRC32.
A second anchor, boto3 `upload_file` asked for the same check (`ChecksumAlgorithm="SHA256"`), compares the upload
paths at equal integrity (`s3_upload_same_checksum`, `s3_upload_same_checksum_cpu`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.paired import compare, comparison_report, own_cpu, process_cpu
from bench.report import Report
from exports.storage.s3 import S3Storage
from exports.storage.s3.parts import MIB
from tests.moto import moto_server

ANCHOR = "boto3 upload_file defaults"
SAME_ANCHOR = "boto3 upload_file with the same SHA-256 checksum"


def _source_write(path: Path, megabytes: int) -> None:
    """Incompressible bytes, written in blocks so the generator never holds the whole file."""
    with path.open("wb") as stream:
        for _ in range(megabytes):
            stream.write(os.urandom(MIB))


def run(report: Report) -> None:
    megabytes = int(os.environ.get("BENCH_UPLOAD_MB", "256"))
    rounds = int(os.environ.get("BENCH_UPLOAD_ROUNDS", "9"))
    if rounds < 2:
        raise ValueError("BENCH_UPLOAD_ROUNDS must be at least 2")
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp, moto_server() as server:
        source = Path(tmp) / "upload.bin"
        _source_write(source, megabytes)
        bucket = server.bucket_create("bench")
        storage = S3Storage(**server.storage_config(bucket))
        client = server.client()

        def ours() -> None:
            storage.publish([(source, "ours.bin")], (b"{}", "ours.manifest.json"))
            storage.delete(["ours.bin", "ours.manifest.json"])

        def theirs(**extra: str) -> None:
            client.upload_file(str(source), bucket, "theirs.bin", ExtraArgs=extra or None)
            client.delete_object(Bucket=bucket, Key="theirs.bin")

        def theirs_sha256() -> None:
            theirs(ChecksumAlgorithm="SHA256")

        ours()  # warm up both: connections, moto's first-request set-up
        theirs()

        def cpu() -> float:
            return own_cpu() + process_cpu(server.process.pid)

        result = compare(ours, theirs, rounds=rounds, cpu=cpu)
        same = compare(ours, theirs_sha256, rounds=rounds, cpu=cpu)
        storage.close()
    moto = "the client and moto_server"
    comparison_report(report, "s3_upload", result, megabytes=megabytes, anchor=ANCHOR, cpu_of=moto)
    report.add("s3_upload_boto3", result.rate(megabytes, "theirs"), "MB/s")
    comparison_report(
        report, "s3_upload_same_checksum", same, megabytes=megabytes, anchor=SAME_ANCHOR, cpu_of=moto
    )
