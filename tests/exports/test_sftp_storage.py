"""SFTP storage against a real OpenSSH server: what only SFTP does (parallel connections, a reused and a
replaced session, windowed reads, a chrooted customer, a full disk, key and password authentication, the host
key pin). What every backend promises is in test_storage_contract.py."""

from __future__ import annotations

import hashlib
import os
import pwd
import random
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exports.storage import ObjectNotFound, StorageError, storage_for
from exports.storage.sftp import SftpStorage, pipelining, transfer
from exports.storage.sftp.keys import host_key_parse
from exports.storage.sftp.reading import READ_WINDOW_SIZE
from tests.servers import free_port
from tests.sshd import SshdServer, keypair, sshd_server

PREFIX = "reports/acme"
PART_KEYS = [f"{PREFIX}/guid_QueryExport_1579194142011__{i:012d}.csv.gz" for i in range(3)]
MANIFEST_KEY = f"{PREFIX}/guid_manifest.json"
MANIFEST = b'{"parts": 3}\n'


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshdServer]:
    with sshd_server() as server:
        yield server


@pytest.fixture
def base(sshd: SshdServer) -> Iterator[Path]:
    """A fresh, empty base directory on the server (which is local, so tests look at its files directly)."""
    path = sshd.root_dir / uuid.uuid4().hex
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def storage(sshd: SshdServer, base: Path) -> Iterator[SftpStorage]:
    backend = SftpStorage(**sshd.config(base_dir=str(base)))
    yield backend
    backend.close()


@pytest.fixture
def chroot_reports(sshd: SshdServer) -> Iterator[Path]:
    """The chrooted user's `reports/`, emptied after each test."""
    reports = sshd.chroot_dir / "reports"
    yield reports
    for child in reports.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    """Three export files: one spanning several write requests, one smaller than one, one empty."""
    sizes = [3 * pipelining.WRITE_REQUEST_SIZE + 12345, 1000, 0]
    paths = []
    for index, size in enumerate(sizes):
        path = tmp_path / f".part{index}.tmp"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def files_under(root: Path) -> list[str]:
    """Every file under root, hidden ones included, as sorted relative paths."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def accepted_logins(sshd: SshdServer) -> int:
    return sshd.log.count("Accepted publickey") + sshd.log.count("Accepted password")


def test_a_large_publish_spreads_over_parallel_connections(sshd, storage, base, tmp_path, monkeypatch):
    # Small thresholds so a few MiB take the parallel path: several ranges of one file written at their
    # offsets over different connections, plus a second file.
    monkeypatch.setattr(transfer, "PARALLEL_MIN_BYTES", 1024 * 1024)
    monkeypatch.setattr(transfer, "SEGMENT_MIN_BYTES", 512 * 1024)
    big, small = tmp_path / "big", tmp_path / "small"
    big.write_bytes(os.urandom(6 * 1024 * 1024 + 17))
    small.write_bytes(os.urandom(700_000))
    logins = accepted_logins(sshd)
    storage.publish([(big, PART_KEYS[0]), (small, PART_KEYS[1])], (MANIFEST, MANIFEST_KEY))
    assert accepted_logins(sshd) - logins == storage.connections == 3
    assert (
        hashlib.sha256((base / PART_KEYS[0]).read_bytes()).digest()
        == hashlib.sha256(big.read_bytes()).digest()
    )
    assert (base / PART_KEYS[1]).read_bytes() == small.read_bytes()
    assert files_under(base) == sorted([PART_KEYS[0], PART_KEYS[1], MANIFEST_KEY])


def test_the_connection_is_reused_between_calls(sshd, storage, sources):
    logins = accepted_logins(sshd)
    storage.publish([(sources[1], PART_KEYS[1])], (MANIFEST, MANIFEST_KEY))
    assert storage.exists(PART_KEYS[1])
    storage.delete([PART_KEYS[1]])
    assert accepted_logins(sshd) - logins == 1


def test_a_dropped_idle_connection_is_replaced(sshd, storage, sources):
    storage.publish([(sources[1], PART_KEYS[1])], (MANIFEST, MANIFEST_KEY))
    sshd.kill_sessions()  # the server side of the cached connection goes away while idle
    storage.publish([(sources[0], PART_KEYS[0])], (MANIFEST, MANIFEST_KEY))
    assert storage.exists(PART_KEYS[0])


class TestReading:
    SIZE = 2 * READ_WINDOW_SIZE + 4321  # reads cross read-ahead windows

    @pytest.fixture(scope="class")
    def published(self, sshd: SshdServer, tmp_path_factory) -> Iterator[tuple[SftpStorage, bytes]]:
        base = sshd.root_dir / f"reading-{uuid.uuid4().hex}"
        base.mkdir()
        source = tmp_path_factory.mktemp("reading") / "part"
        source.write_bytes(os.urandom(self.SIZE))
        backend = SftpStorage(**sshd.config(base_dir=str(base)))
        backend.publish([(source, PART_KEYS[0])], (MANIFEST, MANIFEST_KEY))
        yield backend, source.read_bytes()
        backend.close()
        shutil.rmtree(base)

    @settings(max_examples=40)
    @given(start=st.integers(0, SIZE + 10), length=st.integers(0, SIZE + 10))
    def test_open_returns_the_range_end_exclusive(self, published, start, length):
        storage, content = published
        with storage.open(PART_KEYS[0], start, start + length) as stream:
            assert stream.read() == content[start : start + length]

    def test_open_without_a_range_or_an_end_reads_to_the_end(self, published):
        storage, content = published
        with storage.open(PART_KEYS[0]) as stream:
            assert stream.read() == content
        with storage.open(PART_KEYS[0], start=self.SIZE - 5) as stream:
            assert stream.read() == content[-5:]

    def test_small_reads_follow_each_other(self, published):
        storage, content = published
        with storage.open(PART_KEYS[0], 10) as stream:
            assert stream.read(3) + stream.read(70_000) + stream.read(1) == content[10 : 10 + 70_004]

    def test_short_answers_are_completed(self, published, monkeypatch):
        # OpenSSH answers at most 255 KiB per read: asking for more exercises the path for servers that
        # answer with less than was asked.
        monkeypatch.setattr(pipelining, "READ_REQUEST_SIZE", 300 * 1024)
        storage, content = published
        with storage.open(PART_KEYS[0], 7, 7 + 3 * 300 * 1024 + 5) as stream:
            assert stream.read() == content[7 : 7 + 3 * 300 * 1024 + 5]

    def test_the_openssh_client_downloads_what_was_published(self, sshd, published, tmp_path):
        storage, content = published
        target = tmp_path / "downloaded"
        batch = tmp_path / "batch"
        batch.write_text(f"get {storage.base_dir}/{PART_KEYS[0]} {target}\n")
        subprocess.run(sshd.sftp_command(batch), check=True, capture_output=True, timeout=120)
        assert target.read_bytes() == content


# -- all or nothing ---------------------------------------------------------------------------------------


def test_a_missing_source_is_named_as_the_export_file(storage, sources):
    with pytest.raises(StorageError, match="export file"):
        storage.publish([(sources[1].with_name("gone"), PART_KEYS[1])], (MANIFEST, MANIFEST_KEY))


def test_a_refused_second_upload_removes_the_first(sshd, chroot_reports, sources):
    # The chrooted user may write under reports/ but not into a root-owned directory there: the second
    # file fails after the first is uploaded.
    locked = chroot_reports / "locked"
    locked.mkdir(mode=0o755)
    storage = SftpStorage(**sshd.config(sshd.chroot_user))
    files = [(sources[0], PART_KEYS[0]), (sources[1], "reports/locked/part.csv.gz")]
    with pytest.raises(StorageError) as caught:
        storage.publish(files, (MANIFEST, MANIFEST_KEY))
    storage.close()
    assert not caught.value.retryable
    assert "permission denied" in str(caught.value)
    assert files_under(chroot_reports) == []


@pytest.fixture
def small_disk(sshd: SshdServer) -> Iterator[Path]:
    """A 4 MiB file system on the server, to fill up."""
    path = sshd.root_dir / f"small-{uuid.uuid4().hex}"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        path.rmdir()
        pytest.fail(
            f"cannot mount a small tmpfs ({mounted.stderr.strip()}): the SFTP tests run as root",
            pytrace=False,
        )
    yield path
    subprocess.run(["umount", str(path)], check=True)
    path.rmdir()


def test_a_full_disk_fails_retryably_and_leaves_nothing(sshd, small_disk, tmp_path):
    # The server refuses writes past 4 MiB: each acknowledgement is checked, so the upload stops there.
    source = tmp_path / "big"
    source.write_bytes(os.urandom(6 * 1024 * 1024))
    storage = SftpStorage(**sshd.config(base_dir=str(small_disk)))
    with pytest.raises(StorageError) as caught:
        storage.publish([(source, PART_KEYS[0])], (MANIFEST, MANIFEST_KEY))
    storage.close()
    assert caught.value.retryable  # space may be freed
    assert "full disk" in str(caught.value)
    assert files_under(small_disk) == []


def test_a_missing_base_dir_says_what_to_fix(sshd, base, sources):
    storage = SftpStorage(**sshd.config(base_dir=str(base / "absent")))
    with pytest.raises(StorageError) as caught:
        storage.publish([(sources[1], PART_KEYS[1])], (MANIFEST, MANIFEST_KEY))
    storage.close()
    assert not caught.value.retryable
    assert "base dir" in str(caught.value)
    assert not (base / "absent").exists()


def test_a_file_in_the_way_of_a_directory_fails_cleanly(storage, base, sources):
    (base / "reports").write_text("not a directory")
    with pytest.raises(StorageError) as caught:
        storage.publish([(sources[1], PART_KEYS[1])], (MANIFEST, MANIFEST_KEY))
    assert not caught.value.retryable
    assert files_under(base) == ["reports"]


# -- the chrooted customer --------------------------------------------------------------------------------


def test_a_chrooted_customer_publishes_into_its_own_tree(sshd, chroot_reports, sources):
    storage = SftpStorage(**sshd.config(sshd.chroot_user))
    storage.publish([(sources[0], PART_KEYS[0])], (MANIFEST, MANIFEST_KEY))
    assert (sshd.chroot_dir / PART_KEYS[0]).read_bytes() == sources[0].read_bytes()
    assert (sshd.chroot_dir / MANIFEST_KEY).read_bytes() == MANIFEST
    assert pwd.getpwuid((sshd.chroot_dir / PART_KEYS[0]).stat().st_uid).pw_name == sshd.chroot_user
    storage.close()


def test_a_chrooted_customer_sees_nothing_outside_its_tree(sshd, chroot_reports, base):
    secret = base / "reports" / "other" / "secret.csv"
    secret.parent.mkdir(parents=True)
    secret.write_text("another customer's data")
    storage = SftpStorage(**sshd.config(sshd.chroot_user))
    for key in ("etc/passwd", str(secret.relative_to("/"))):
        with pytest.raises(ObjectNotFound):
            storage.open(key)
    storage.close()
    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[{sshd.host}]:{sshd.port}", "ssh-ed25519", host_key_parse(sshd.host_key))
    client.connect(
        sshd.host,
        sshd.port,
        sshd.chroot_user,
        key_filename=str(sshd.client_key_path),
        look_for_keys=False,
        allow_agent=False,
    )
    try:
        sftp = client.open_sftp()
        assert sftp.listdir("/") == ["reports"]
        assert sftp.listdir("/../..") == ["reports"]
        with pytest.raises(FileNotFoundError):
            sftp.stat(str(secret))
    finally:
        client.close()


def test_password_authentication(sshd, chroot_reports, sources):
    config = sshd.config(sshd.chroot_user, private_key=None, password=sshd.chroot_password)
    storage = SftpStorage(**config)
    storage.publish([(sources[1], PART_KEYS[1])], (MANIFEST, MANIFEST_KEY))
    with storage.open(PART_KEYS[1]) as stream:
        assert stream.read() == sources[1].read_bytes()
    storage.close()


def test_a_chrooted_probe_goes_where_the_exports_go(sshd, chroot_reports):
    # A chroot's root belongs to root: the probe goes where the exports go.
    chrooted = SftpStorage(**sshd.config(sshd.chroot_user))
    with pytest.raises(StorageError) as caught:
        chrooted.test_connection()
    assert not caught.value.retryable
    chrooted.test_connection(prefix=PREFIX)
    chrooted.close()
    assert files_under(chroot_reports) == []


# -- authentication and the host key pin ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("rsa", ("-b", "2048", "-m", "PEM")),
        ("rsa", ("-b", "2048")),
        ("ecdsa", ("-m", "PEM")),
        ("ed25519", ()),
    ],
)
def test_private_key_formats(sshd, base, sources, tmp_path, kind, options):
    private, public = keypair(tmp_path, f"client_{kind}", kind, *options)
    sshd.authorize(public)
    storage = SftpStorage(**sshd.config(base_dir=str(base), private_key=private))
    storage.publish([(sources[1], PART_KEYS[1])], (MANIFEST, MANIFEST_KEY))
    storage.close()
    assert (base / PART_KEYS[1]).exists()


def test_host_key_formats(sshd, base):
    kind, blob = sshd.host_key.split()[:2]
    for pinned in (f"[{sshd.host}]:{sshd.port} {kind} {blob}", blob, f"{kind} {blob}"):
        storage = SftpStorage(**sshd.config(base_dir=str(base), host_key=pinned))
        storage.test_connection()
        storage.close()


@pytest.mark.parametrize(
    "pinned", ["", "ssh-ed25519", "ssh-ed25519 not-base64!", "ssh-rsa AAAAC3NzaC1lZDI1NTE5"]
)
def test_unreadable_host_keys_are_refused_up_front(sshd, pinned):
    with pytest.raises(StorageError) as caught:
        SftpStorage(**sshd.config(host_key=pinned))
    assert "host key" in str(caught.value)


def test_unreadable_private_keys_are_refused_without_quoting_them(sshd):
    garbage = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END OPENSSH PRIVATE KEY-----\n"
    with pytest.raises(StorageError) as caught:
        SftpStorage(**sshd.config(private_key=garbage))
    assert "c2VjcmV0" not in str(caught.value)


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_a_wrong_host_key_is_refused_before_any_upload(sshd, base, sources, tmp_path, kind):
    _, impostor = keypair(tmp_path, "impostor", kind)
    logins = accepted_logins(sshd)
    storage = SftpStorage(**sshd.config(base_dir=str(base), host_key=impostor))
    with pytest.raises(StorageError) as caught:
        storage.publish([(sources[1], PART_KEYS[1])], (MANIFEST, MANIFEST_KEY))
    assert not caught.value.retryable
    assert "host key" in str(caught.value)
    assert accepted_logins(sshd) == logins  # never authenticated, so never sent a credential
    assert files_under(base) == []


def test_a_wrong_password_is_not_retryable_tried_once_and_not_quoted(sshd, sources, monkeypatch):
    monkeypatch.setattr(transfer, "PARALLEL_MIN_BYTES", 1)  # a publish that would use every connection
    wrong = "wrong-" + uuid.uuid4().hex
    failures = sshd.log.count("Failed password")
    storage = SftpStorage(**sshd.config(sshd.chroot_user, private_key=None, password=wrong))
    with pytest.raises(StorageError) as caught:
        storage.publish([(sources[0], PART_KEYS[0])], (MANIFEST, MANIFEST_KEY))
    assert not caught.value.retryable
    assert "authentication" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in repr(storage)
    assert sshd.log.count("Failed password") - failures == 1  # no lockout for trying on every connection


def test_a_key_the_server_does_not_know_is_not_retryable(sshd, tmp_path):
    private, _ = keypair(tmp_path, "stranger")
    storage = SftpStorage(**sshd.config(private_key=private))
    with pytest.raises(StorageError) as caught:
        storage.test_connection()
    assert not caught.value.retryable


def test_nothing_listening_is_retryable(sshd):
    storage = SftpStorage(**sshd.config(port=free_port(), connect_timeout=5))
    with pytest.raises(StorageError) as caught:
        storage.test_connection()
    assert caught.value.retryable
    assert "refused" in str(caught.value)


def test_the_registry_builds_sftp_storage(sshd, base):
    storage = storage_for("sftp", **sshd.config(base_dir=str(base)))
    assert isinstance(storage, SftpStorage)
    storage.test_connection()
    storage.close()
    with pytest.raises(StorageError):
        storage_for("sftp", **sshd.config(), bucket="not an sftp setting")
    with pytest.raises(StorageError):
        storage_for("sftp", **sshd.config(private_key=None))


# -- the publication: one file at a time ------------------------------------------------------------------


def partials(root: Path) -> list[str]:
    return [name for name in files_under(root) if name.endswith(".partial")]


def upload_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("sftp-upload-")]


def test_the_extra_connections_serve_every_large_file_of_a_publication(
    sshd, storage, base, tmp_path, monkeypatch
):
    monkeypatch.setattr(transfer, "PARALLEL_MIN_BYTES", 1024 * 1024)
    monkeypatch.setattr(transfer, "SEGMENT_MIN_BYTES", 512 * 1024)
    bigs = [tmp_path / "big0", tmp_path / "big1"]
    for big in bigs:
        big.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    logins = accepted_logins(sshd)
    with storage.publication() as publication:
        publication.stage(bigs[0], PART_KEYS[0])
        publication.stage(bigs[1], PART_KEYS[1])
        assert len(upload_threads()) == storage.connections - 1
        publication.commit((MANIFEST, MANIFEST_KEY))
        assert upload_threads() == []  # dismissed at commit
    assert accepted_logins(sshd) - logins == storage.connections == 3  # hired once, not once per file
    for big, key in zip(bigs, PART_KEYS, strict=False):
        assert (base / key).read_bytes() == big.read_bytes()


def test_abort_dismisses_the_extra_connections_and_ends_the_publication(
    sshd, storage, base, sources, tmp_path, monkeypatch
):
    monkeypatch.setattr(transfer, "PARALLEL_MIN_BYTES", 1024 * 1024)
    monkeypatch.setattr(transfer, "SEGMENT_MIN_BYTES", 512 * 1024)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(4 * 1024 * 1024 + 3))
    logins = accepted_logins(sshd)
    publication = storage.publication()
    publication.stage(big, PART_KEYS[0])
    publication.stage(sources[1], PART_KEYS[1])
    assert len(upload_threads()) == storage.connections - 1  # kept for later large files
    assert len(partials(base)) == 2
    publication.abort()
    assert files_under(base) == []
    assert upload_threads() == []
    assert accepted_logins(sshd) - logins == storage.connections == 3
    with pytest.raises(StorageError):
        publication.stage(sources[0], PART_KEYS[2])  # over: nothing more is taken
    assert files_under(base) == []


# -- write requests, framed by pipelining.py --------------------------------------------------------------


@pytest.fixture
def session(sshd: SshdServer, base: Path) -> Iterator[paramiko.SFTPClient]:
    storage = SftpStorage(**sshd.config(base_dir=str(base)))
    client, sftp = storage._connector.connect()
    yield sftp
    client.close()


def test_write_requests_land_byte_for_byte_across_ssh_packet_boundaries(session, base):
    # A request's header rides in its first SSH packet with the start of its data: sizes that fill that
    # packet exactly, spill one byte over it, fill several, and a full request, written back to back.
    remote_path = str(base / "framed.bin")
    with session.open(remote_path, "wb", bufsize=0) as remote:
        payload = session.sock.out_max_packet_size - 64
        header = 4 + 1 + 4 + 4 + len(remote.handle) + 8 + 4
        sizes = [
            1,
            payload - header,
            payload - header + 1,
            2 * payload - header,
            pipelining.WRITE_REQUEST_SIZE,
            3,
        ]
        rng = random.Random(3)
        chunks = [rng.randbytes(size) for size in sizes]
        pipelining.write_pipelined(session, remote, 0, chunks, threading.Event())
    assert (base / "framed.bin").read_bytes() == b"".join(chunks)
    assert session.stat(remote_path).st_size == sum(sizes)  # the session is still in step


def test_a_refused_write_request_fails_and_leaves_the_session_usable(session, base):
    (base / "read-only.bin").write_bytes(b"unchanged")
    remote_path = str(base / "read-only.bin")
    with session.open(remote_path, "rb") as remote:  # a handle the server will not write through
        chunks = [b"x" * pipelining.WRITE_REQUEST_SIZE] * 3
        with pytest.raises(OSError):
            pipelining.write_pipelined(session, remote, 0, chunks, threading.Event())
    assert (base / "read-only.bin").read_bytes() == b"unchanged"
    assert session.stat(remote_path).st_size == len(b"unchanged")
