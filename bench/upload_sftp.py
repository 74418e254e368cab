"""SFTP upload throughput: SftpStorage.publish (temporary name, size check, posix-rename, manifest) vs the OpenSSH
`sftp` client's `put` of the same file to the same local sshd, in paired rounds (see paired.py).

Both sides pay for their own connection: a fresh SftpStorage per run, a fresh `sftp` process per run.
BENCH_UPLOAD_MB sets the file size (default 512), BENCH_UPLOAD_ROUNDS the pairs (default 9). Each upload
is deleted before the next. Besides the wall-time ratio, `sftp_upload_cpu` compares the CPU seconds each
side spends per upload: the client (this process, or `sftp` and its `ssh`) plus the server's sessions.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench.paired import compare, comparison_report, own_cpu, process_cpu
from bench.report import Report
from exports.storage.sftp import SftpStorage
from tests.sshd import SshdServer, sshd_server

MIB = 1024 * 1024
ANCHOR = "OpenSSH sftp client"


def _source_write(path: Path, megabytes: int) -> None:
    """Incompressible bytes, written in blocks so the generator never holds the whole file."""
    with path.open("wb") as stream:
        for _ in range(megabytes):
            stream.write(os.urandom(MIB))


def _ours(server: SshdServer, source: Path) -> None:
    storage = SftpStorage(**server.config())
    try:
        storage.publish([(source, "bench/ours.bin")], (b"{}", "bench/ours.manifest.json"))
    finally:
        storage.close()


def _theirs(server: SshdServer, batch: Path) -> None:
    subprocess.run(server.sftp_command(batch), check=True, capture_output=True, timeout=600)


def _server_cpu(server: SshdServer) -> float:
    """CPU seconds of the sshd listener's reaped sessions, once the last run's have ended (up to 5 s): a
    session still running would count for the next run. Its children are read from /proc, not with
    `pgrep`, whose processes would count as this process's CPU."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    deadline = time.monotonic() + 5
    while children.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.005)
    return process_cpu(server.process.pid, children=True)


def run(report: Report) -> None:
    megabytes = int(os.environ.get("BENCH_UPLOAD_MB", "512"))
    rounds = int(os.environ.get("BENCH_UPLOAD_ROUNDS", "9"))
    if rounds < 2:
        raise ValueError("BENCH_UPLOAD_ROUNDS must be at least 2")
    with tempfile.TemporaryDirectory(prefix="bench-sftp-") as tmp, sshd_server() as server:
        source = Path(tmp) / "upload.bin"
        _source_write(source, megabytes)
        target = server.root_dir / "bench"
        target.mkdir()
        batch = Path(tmp) / "put.batch"
        batch.write_text(f"put {source} {target / 'theirs.bin'}\n")

        def ours() -> None:
            _ours(server, source)
            for name in ("ours.bin", "ours.manifest.json"):
                (target / name).unlink()

        def theirs() -> None:
            _theirs(server, batch)
            (target / "theirs.bin").unlink()

        ours()  # warm up both: the page cache, sshd's first connections
        theirs()
        result = compare(
            ours,
            theirs,
            rounds=rounds,
            cpu=lambda: _server_cpu(server) + own_cpu(),
        )
    sessions = "the client and the server's sessions"
    comparison_report(report, "sftp_upload", result, megabytes=megabytes, anchor=ANCHOR, cpu_of=sessions)
    report.add("sftp_upload_openssh_client", result.rate(megabytes, "theirs"), "MB/s")
