"""SFTP storage when the connection fails mid-transfer: a killed or frozen server session makes publish fail
with a retryable error, nothing ever appears under a final name half-written, and a retry publishes it all."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exports.storage import StorageError
from exports.storage.sftp import READ_WINDOW_SIZE, SftpStorage
from tests.sshd import SshdServer, sshd_server

BIG_SIZE = 128 * 1024 * 1024  # long enough that the fault lands mid-upload on a fast machine
SMALL_SIZE = 100_000
PREFIX = "reports/acme"
BIG_KEY = f"{PREFIX}/guid_QueryExport_1579194142011__000000000000.csv.gz"
SMALL_KEY = f"{PREFIX}/guid_QueryExport_1579194142011__000000000001.csv.gz"
MANIFEST_KEY = f"{PREFIX}/guid_manifest.json"
MANIFEST = b'{"parts": 2}\n'
UNDER_WAY = 4 * 1024 * 1024  # the fault is injected once a temporary file holds this much


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshdServer]:
    with sshd_server() as server:
        yield server


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("sftp-faults")
    files = {BIG_KEY: directory / "big", SMALL_KEY: directory / "small"}
    with files[BIG_KEY].open("wb") as big:
        for _ in range(BIG_SIZE // (8 * 1024 * 1024)):
            big.write(os.urandom(8 * 1024 * 1024))
    files[SMALL_KEY].write_bytes(os.urandom(SMALL_SIZE))
    return files


@pytest.fixture
def base(sshd: SshdServer) -> Iterator[Path]:
    path = sshd.root_dir / uuid.uuid4().hex
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Watcher(threading.Thread):
    """Polls the server's export directory on its file system for as long as it runs, recording every final
    name it sees with the size it had, and the largest temporary file."""

    def __init__(self, directory: Path, expected: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.directory = directory
        self.expected = expected
        self.finals_seen: dict[str, set[int]] = {}
        self.partial_bytes = 0
        self.polls = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._poll()
            time.sleep(0.001)  # a half-written final file would stay for the whole upload: no need to spin

    def _poll(self) -> None:
        self.polls += 1
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                size = entry.stat().st_size
            except FileNotFoundError:  # renamed or removed between listing and looking
                continue
            if entry.name.endswith(".partial"):
                self.partial_bytes = max(self.partial_bytes, size)
            else:
                self.finals_seen.setdefault(entry.name, set()).add(size)

    def finish(self) -> None:
        self._stop_event.set()
        self.join(timeout=60)
        self._poll()  # one last look after the publish returned

    def incomplete(self) -> dict[str, set[int]]:
        """Final names seen with any size but their full one (or names that should not exist at all)."""
        return {
            name: sizes
            for name, sizes in self.finals_seen.items()
            if sizes != {self.expected.get(f"{PREFIX}/{name}", -1)}
        }


def expected_sizes(sources: dict[str, Path]) -> dict[str, int]:
    return {**{key: path.stat().st_size for key, path in sources.items()}, MANIFEST_KEY: len(MANIFEST)}


def publish_with_fault(
    storage: SftpStorage, base: Path, sources: dict[str, Path], fault: Callable[[], object]
) -> tuple[Exception | None, Watcher]:
    """Publish in a thread while a watcher polls the server's directory, and inject `fault` once a temporary
    file holds UNDER_WAY bytes. Returns what publish raised (None when it succeeded) and the watcher."""
    watcher = Watcher(base / PREFIX, expected_sizes(sources))
    outcome: list[Exception | None] = []

    def publish() -> None:
        try:
            storage.publish([(path, key) for key, path in sources.items()], (MANIFEST, MANIFEST_KEY))
        except Exception as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    watcher.start()
    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    injected = False
    try:
        deadline = time.monotonic() + 300
        while thread.is_alive() and not injected and time.monotonic() < deadline:
            if watcher.partial_bytes >= UNDER_WAY:
                fault()
                injected = True
            time.sleep(0.001)
        thread.join(timeout=600)
    finally:
        watcher.finish()
    assert not thread.is_alive(), "publish did not return"
    assert injected, "the upload ended before the fault could be injected"
    return outcome[0], watcher


def assert_published(storage: SftpStorage, base: Path, sources: dict[str, Path]) -> None:
    watcher = Watcher(base / PREFIX, expected_sizes(sources))
    watcher.start()
    try:
        storage.publish([(path, key) for key, path in sources.items()], (MANIFEST, MANIFEST_KEY))
    finally:
        watcher.finish()
    assert watcher.incomplete() == {}
    assert sorted(os.listdir(base / PREFIX)) == sorted(
        name.split("/")[-1] for name in expected_sizes(sources)
    )
    for key, path in sources.items():
        assert _digest(base / key) == _digest(path)


def _digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1024 * 1024):
            digest.update(block)
    return digest.digest()


def test_a_killed_connection_publishes_nothing_and_a_retry_publishes_everything(sshd, base, sources):
    storage = SftpStorage(**sshd.config(base_dir=str(base)))
    killed: list[int] = []
    error, watcher = publish_with_fault(storage, base, sources, lambda: killed.append(sshd.kill_sessions()))
    assert killed and killed[0] > 0
    assert isinstance(error, StorageError), error
    assert error.retryable
    assert watcher.polls > 1
    assert watcher.finals_seen == {}  # never anything under a final name, complete or not
    assert os.listdir(base / PREFIX) == []  # the temporary files were removed over a new connection
    assert_published(storage, base, sources)
    storage.close()


def test_a_frozen_server_times_out_retryably(sshd, base, sources):
    storage = SftpStorage(**sshd.config(base_dir=str(base), io_timeout=3))
    frozen: list[int] = []
    try:
        error, watcher = publish_with_fault(
            storage, base, sources, lambda: frozen.append(sshd.signal_sessions(signal.SIGSTOP))
        )
    finally:
        sshd.kill_sessions()  # a stopped process still dies on SIGKILL
    assert frozen and frozen[0] > 0
    assert isinstance(error, StorageError), error
    assert error.retryable
    assert watcher.incomplete() == {} and watcher.finals_seen == {}
    assert_published(storage, base, sources)
    storage.close()


def test_a_killed_connection_fails_a_download_retryably(sshd, base, sources):
    storage = SftpStorage(**sshd.config(base_dir=str(base)))
    storage.publish([(sources[BIG_KEY], BIG_KEY)], (MANIFEST, MANIFEST_KEY))
    with storage.open(BIG_KEY) as stream:
        assert len(stream.read(READ_WINDOW_SIZE + 1)) == READ_WINDOW_SIZE + 1
        sshd.kill_sessions()
        with pytest.raises(StorageError) as caught:
            while stream.read(READ_WINDOW_SIZE):
                pass
    assert caught.value.retryable
    with storage.open(BIG_KEY, 5, 10) as stream:  # the next call connects again
        assert stream.read() == sources[BIG_KEY].read_bytes()[5:10]
    storage.close()


def test_a_server_that_never_starts_the_sftp_session_times_out(sshd):
    # The login succeeds, then the server swallows the SFTP greeting: paramiko alone would wait forever.
    storage = SftpStorage(**sshd.config(port=sshd.mute_port, connect_timeout=3))
    with pytest.raises(StorageError) as caught:
        storage.test_connection()
    assert caught.value.retryable
    assert "timed out" in str(caught.value)
