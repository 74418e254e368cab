"""SFTP upload throughput: SftpStorage.publish (temporary name, size check, posix-rename, manifest) vs the OpenSSH
`sftp` client's `put` of the same file to the same local sshd, three runs each (interleaved), medians.

Both sides pay for their own connection: a fresh SftpStorage per run, a fresh `sftp` process per run.
BENCH_UPLOAD_MB sets the file size (default 200). Each upload is deleted before the next.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.report import Report
from exports.storage.sftp import SftpStorage
from tests.sshd import SshdServer, sshd_server

RUNS = 3
MIB = 1024 * 1024


def _source_write(path: Path, megabytes: int) -> None:
    """Incompressible bytes, written in blocks so the generator never holds the whole file."""
    with path.open("wb") as stream:
        for _ in range(megabytes):
            stream.write(os.urandom(MIB))


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _ours(server: SshdServer, source: Path) -> None:
    storage = SftpStorage(**server.config())
    try:
        storage.publish([(source, "bench/ours.bin")], (b"{}", "bench/ours.manifest.json"))
    finally:
        storage.close()


def _theirs(server: SshdServer, source: Path, batch: Path) -> None:
    subprocess.run(server.sftp_command(batch), check=True, capture_output=True, timeout=600)


def run(report: Report) -> None:
    megabytes = int(os.environ.get("BENCH_UPLOAD_MB", "200"))
    with tempfile.TemporaryDirectory(prefix="bench-sftp-") as tmp, sshd_server() as server:
        source = Path(tmp) / "upload.bin"
        _source_write(source, megabytes)
        target = server.root_dir / "bench"
        target.mkdir()
        batch = Path(tmp) / "put.batch"
        batch.write_text(f"put {source} {target / 'theirs.bin'}\n")
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(RUNS):
            theirs.append(_timed(lambda: _theirs(server, source, batch)))
            (target / "theirs.bin").unlink()
            ours.append(_timed(lambda: _ours(server, source)))
            for name in ("ours.bin", "ours.manifest.json"):
                (target / name).unlink()
    ours_mbps = megabytes / statistics.median(ours)
    theirs_mbps = megabytes / statistics.median(theirs)
    report.add("sftp_upload", ours_mbps, "MB/s", ratio=ours_mbps / theirs_mbps, anchor="OpenSSH sftp client")
    report.add("sftp_upload_openssh_client", theirs_mbps, "MB/s")
