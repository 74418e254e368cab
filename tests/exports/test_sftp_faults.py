"""SFTP storage when the connection fails mid-transfer: a killed or frozen server session makes publish (or one
stage of a publication) fail with a retryable error, nothing ever appears under a final name half-written,
a retry publishes it all, and a commit cut off half-way carries on when called again."""

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

import paramiko
import pytest

from exports.storage import StorageError
from exports.storage.sftp import SftpStorage, transfer
from exports.storage.sftp.reading import READ_WINDOW_SIZE
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
    return with_fault(
        lambda: storage.publish([(path, key) for key, path in sources.items()], (MANIFEST, MANIFEST_KEY)),
        base,
        sources,
        fault,
    )


def with_fault(
    action: Callable[[], object], base: Path, sources: dict[str, Path], fault: Callable[[], object]
) -> tuple[Exception | None, Watcher]:
    """Run `action` in a thread while a watcher polls the server's directory, and inject `fault` once a
    temporary file holds UNDER_WAY bytes. Returns what `action` raised (None when it succeeded) and the
    watcher."""
    watcher = Watcher(base / PREFIX, expected_sizes(sources))
    outcome: list[Exception | None] = []

    def run() -> None:
        try:
            action()
        except Exception as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    watcher.start()
    thread = threading.Thread(target=run, daemon=True)
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
    assert not thread.is_alive(), "the upload did not return"
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


# -- the publication: one file at a time ------------------------------------------------------------------


def test_a_stage_cut_off_by_a_killed_connection_keeps_the_earlier_one_and_can_be_retried(sshd, base, sources):
    storage = SftpStorage(**sshd.config(base_dir=str(base)))
    with storage.publication() as publication:
        publication.stage(sources[SMALL_KEY], SMALL_KEY)
        [staged] = os.listdir(base / PREFIX)
        killed: list[int] = []
        error, watcher = with_fault(
            lambda: publication.stage(sources[BIG_KEY], BIG_KEY),
            base,
            sources,
            lambda: killed.append(sshd.kill_sessions()),
        )
        assert killed and killed[0] > 0
        assert isinstance(error, StorageError), error
        assert error.retryable
        assert watcher.finals_seen == {}
        # The big file's temporary is gone, the small one's still holds every byte.
        assert os.listdir(base / PREFIX) == [staged]
        assert _digest(base / PREFIX / staged) == _digest(sources[SMALL_KEY])
        publication.stage(sources[BIG_KEY], BIG_KEY)
        publication.commit((MANIFEST, MANIFEST_KEY))
    storage.close()
    assert sorted(os.listdir(base / PREFIX)) == sorted(key.split("/")[-1] for key in expected_sizes(sources))
    for key, path in sources.items():
        assert _digest(base / key) == _digest(path)
    assert (base / MANIFEST_KEY).read_bytes() == MANIFEST


def test_extra_connections_lost_between_stages_leave_their_work_to_the_others(
    sshd, base, tmp_path, monkeypatch
):
    # A server or a NAT may drop the kept connections while the next part is produced.
    monkeypatch.setattr(transfer, "PARALLEL_MIN_BYTES", 1024 * 1024)
    monkeypatch.setattr(transfer, "SEGMENT_MIN_BYTES", 512 * 1024)
    parts = {key: tmp_path / f"part{index}" for index, key in enumerate((BIG_KEY, SMALL_KEY))}
    for path in parts.values():
        path.write_bytes(os.urandom(4 * 1024 * 1024 + 7))
    storage = SftpStorage(**sshd.config(base_dir=str(base)))
    with storage.publication() as publication:
        publication.stage(parts[BIG_KEY], BIG_KEY)
        assert sshd.kill_sessions() > 0  # every connection, the main one too
        publication.stage(parts[SMALL_KEY], SMALL_KEY)
        publication.commit((MANIFEST, MANIFEST_KEY))
    storage.close()
    for key, path in parts.items():
        assert _digest(base / key) == _digest(path)
    assert not [name for name in os.listdir(base / PREFIX) if name.endswith(".partial")]


def test_a_commit_cut_off_by_a_killed_connection_can_be_called_again(sshd, base, tmp_path, monkeypatch):
    keys = [f"{PREFIX}/part{index}.csv.gz" for index in range(3)]
    parts = {key: tmp_path / f"part{index}" for index, key in enumerate(keys)}
    for path in parts.values():
        path.write_bytes(os.urandom(SMALL_SIZE))
    # The second rename is carried out by the server, then every session is killed before the client hears
    # back from it (a request on the dead connection raises what a lost answer raises), and the one retry
    # on a new connection dies too: commit fails with a rename done that it could not see.
    real_rename = paramiko.SFTPClient.posix_rename
    renamed: list[str] = []

    def rename_with_faults(sftp: paramiko.SFTPClient, oldpath: str, newpath: str) -> None:
        renamed.append(newpath)
        if len(renamed) == 3:
            sshd.kill_sessions()
        real_rename(sftp, oldpath, newpath)
        if len(renamed) == 2:
            sshd.kill_sessions()
            sftp.stat(newpath)

    monkeypatch.setattr(paramiko.SFTPClient, "posix_rename", rename_with_faults)
    storage = SftpStorage(**sshd.config(base_dir=str(base)))
    with storage.publication() as publication:
        for key, path in parts.items():
            publication.stage(path, key)
        with pytest.raises(StorageError) as caught:
            publication.commit((MANIFEST, MANIFEST_KEY))
        assert caught.value.retryable
        assert len(renamed) == 3
        listed = os.listdir(base / PREFIX)
        published = sorted(name for name in listed if not name.endswith(".partial"))
        assert published == sorted(key.split("/")[-1] for key in keys[:2])  # no manifest yet
        assert len(listed) == 4  # the third part and the manifest wait under their temporary names
        publication.commit((MANIFEST, MANIFEST_KEY))
    storage.close()
    assert sorted(os.listdir(base / PREFIX)) == sorted(key.split("/")[-1] for key in [*keys, MANIFEST_KEY])
    for key, path in parts.items():
        assert (base / key).read_bytes() == path.read_bytes()
    assert (base / MANIFEST_KEY).read_bytes() == MANIFEST
    assert renamed.count(str(base / keys[1])) == 3  # sent, retried, and found done by the second commit
