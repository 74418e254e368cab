"""A real OpenSSH server for SFTP tests and benchmarks, on a free port, with throwaway keys.

`sshd_server()` starts `/usr/sbin/sshd -D -e` with a generated ed25519 host key and accepts:

- `root` with the generated client key (or password-less keys added later), its SFTP files landing wherever the
  client asks (tests use `server.root_dir`, a temporary directory);
- the system user `insights-sftp` (created once if missing, no home, no shell) with the same client key or
  a password, chrooted to `server.chroot_dir` (a root-owned directory under /srv, since OpenSSH refuses a
  chroot whose path has a component writable by others, like /tmp) and forced into `internal-sftp`.

The password is random, drawn once per boot into a root-only file under /run, so that servers started at
the same time (two test sessions, a benchmark) agree on the one account's password.

It needs root (it creates that user and chroot). A missing `sshd` fails naming `make install-servers`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port, require_binary, wait_for_port

CHROOT_USER = "insights-sftp"
CHROOT_PARENT = Path("/srv")
PASSWORD_FILE = Path("/run/insights-sftp-test/password")


@dataclass
class SshdServer:
    """A running sshd; `config()` gives SftpStorage's keyword arguments for one of its users."""

    port: int
    process: subprocess.Popen[bytes]
    base: Path  # configuration, keys and the log
    host_key: str  # the server's public key line, "ssh-ed25519 AAAA... comment"
    client_key_path: Path  # an OpenSSH-format ed25519 private key authorised for both users
    root_dir: Path  # a scratch directory root's uploads go under
    chroot_dir: Path  # the chroot of CHROOT_USER; it may write only under chroot_dir / "reports"
    chroot_password: str
    mute_port: int  # root logs in here, then the session never answers (for timeout tests)
    host: str = "127.0.0.1"
    chroot_user: str = CHROOT_USER

    @property
    def client_key(self) -> str:
        return self.client_key_path.read_text()

    @property
    def known_hosts(self) -> Path:
        """A known_hosts file pinning this server's key, for the OpenSSH command-line clients."""
        return self.base / "known_hosts"

    @property
    def log(self) -> str:
        return (self.base / "sshd.log").read_text(errors="replace")

    def config(self, user: str = "root", **overrides: Any) -> dict[str, Any]:
        """SftpStorage keyword arguments: key auth as `user`, base dir `root_dir` (root) or `/` (chrooted)."""
        settings: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": user,
            "private_key": self.client_key,
            "host_key": self.host_key,
            "base_dir": str(self.root_dir) if user == "root" else "/",
        }
        settings.update(overrides)
        return settings

    def authorize(self, public_key: str, user: str = "root") -> None:
        """Accept one more public key (an OpenSSH `.pub` line) for `user`."""
        with (self.base / f"authorized_keys_{user}").open("a") as keys:
            keys.write(public_key.strip() + "\n")

    def sftp_command(self, batch: Path, user: str = "root") -> list[str]:
        """An OpenSSH `sftp` command running `batch` as `user` with the client key and the pinned host key."""
        return [
            require_binary("sftp", "install-servers"),
            "-F",
            "/dev/null",  # no user or system ssh_config can change what is measured or trusted
            "-b",
            str(batch),
            "-i",
            str(self.client_key_path),
            "-P",
            str(self.port),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            f"{user}@{self.host}",
        ]

    def session_pids(self) -> list[int]:
        """Every process serving a connection: all descendants of the listening sshd."""
        return _descendants(self.process.pid)

    def signal_sessions(self, signum: int) -> int:
        """Send `signum` to every connection's processes (never the listener); returns how many got it."""
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        return len(pids)

    def kill_sessions(self) -> int:
        """Cut every connection as a crash or a network failure would: SIGKILL its server processes."""
        return self.signal_sessions(signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    parents = [pid]
    while parents:
        listed = subprocess.run(
            ["pgrep", "-P", str(parents.pop())], capture_output=True, text=True, check=False
        )
        children = [int(line) for line in listed.stdout.split()]
        found.extend(children)
        parents.extend(children)
    return found


def _keygen(path: Path, kind: str = "ed25519", *extra: str) -> str:
    """Generate an unencrypted key pair at `path`; returns the public key line."""
    keygen = require_binary("ssh-keygen", "install-servers")
    subprocess.run(
        [keygen, "-q", "-t", kind, "-N", "", "-C", path.name, *extra, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def keypair(directory: Path, name: str, kind: str = "ed25519", *extra: str) -> tuple[str, str]:
    """A fresh client key pair in `directory`: (private key text, public key line)."""
    public = _keygen(directory / name, kind, *extra)
    return (directory / name).read_text(), public


def _chroot_password() -> str:
    """This boot's password for the chroot test account (made by whichever server needs it first)."""
    PASSWORD_FILE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not PASSWORD_FILE.exists():
        draft = PASSWORD_FILE.with_name(f"draft-{os.getpid()}-{secrets.token_hex(4)}")
        draft.write_text(secrets.token_urlsafe(18) + "\n")
        draft.chmod(0o600)
        with contextlib.suppress(FileExistsError):  # another server won the race: use its password
            os.link(draft, PASSWORD_FILE)  # appears complete or not at all
        draft.unlink()
    return PASSWORD_FILE.read_text().strip()


def _chroot_user_ensure(password: str) -> None:
    """Create the chroot test account once (no home, no shell) and set the password on it."""
    try:
        pwd.getpwnam(CHROOT_USER)
    except KeyError:
        created = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", CHROOT_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode not in (0, 9):  # 9: another server created it in the meantime
            raise RuntimeError(f"useradd {CHROOT_USER} failed: {created.stderr.strip()}") from None
    # Setting a password also unlocks the account: without PAM, sshd refuses locked accounts even for keys.
    subprocess.run(
        ["chpasswd"], input=f"{CHROOT_USER}:{password}\n".encode(), check=True, capture_output=True
    )


def _chroot_make() -> Path:
    """A root-owned chroot with one directory the chrooted user may write to: `reports/`."""
    account = pwd.getpwnam(CHROOT_USER)
    CHROOT_PARENT.mkdir(exist_ok=True)
    chroot = CHROOT_PARENT / f"insights-sftp-test-{secrets.token_hex(6)}"
    chroot.mkdir(mode=0o755)
    os.chown(chroot, 0, 0)
    reports = chroot / "reports"
    reports.mkdir(mode=0o755)
    os.chown(reports, account.pw_uid, account.pw_gid)
    return chroot


def _sshd_config(base: Path, port: int, mute_port: int, chroot: Path) -> str:
    return f"""\
Port {port}
Port {mute_port}
ListenAddress 127.0.0.1
HostKey {base}/ssh_host_ed25519_key
PidFile {base}/sshd.pid
AuthorizedKeysFile {base}/authorized_keys_%u
StrictModes no
UsePAM no
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
X11Forwarding no
AllowTcpForwarding no
MaxStartups 100
MaxSessions 50
LogLevel VERBOSE
Subsystem sftp internal-sftp

Match User {CHROOT_USER}
    ChrootDirectory {chroot}
    ForceCommand internal-sftp

# Accepts the session, swallows what the client sends and never answers; ends when the client hangs up.
Match LocalPort {mute_port}
    ForceCommand cat > /dev/null
"""


@contextlib.contextmanager
def sshd_server() -> Iterator[SshdServer]:
    """Start sshd on a free port; stop it and remove its keys, scratch directory and chroot afterwards."""
    sshd = require_binary("sshd", "install-servers", [Path("/usr/sbin")])
    if os.geteuid() != 0:
        pytest.fail("the sshd fixture needs root: it creates a chroot and a test account", pytrace=False)
    password = _chroot_password()
    _chroot_user_ensure(password)
    base = Path(tempfile.mkdtemp(prefix="insights-sshd-"))
    base.chmod(0o755)  # sshd reads the chrooted user's authorized_keys as that user
    chroot = _chroot_make()
    process: subprocess.Popen[bytes] | None = None
    try:
        host_key = _keygen(base / "ssh_host_ed25519_key")
        client_public = _keygen(base / "client_ed25519")
        for user in ("root", CHROOT_USER):
            (base / f"authorized_keys_{user}").write_text(client_public + "\n")
        root_dir = base / "data"
        root_dir.mkdir()
        port, mute_port = free_port(), free_port()
        (base / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
        config = base / "sshd_config"
        config.write_text(_sshd_config(base, port, mute_port, chroot))
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # the privilege separation directory
        with (base / "sshd.log").open("wb") as log:
            process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        wait_for_port(port, process=process)
        wait_for_port(mute_port, process=process)
        yield SshdServer(
            port=port,
            process=process,
            base=base,
            host_key=host_key,
            client_key_path=base / "client_ed25519",
            root_dir=root_dir,
            chroot_dir=chroot,
            chroot_password=password,
            mute_port=mute_port,
        )
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(chroot, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the listener and any session it left behind (SIGTERM to the listener does not end sessions)."""
    leftovers = _descendants(process.pid)
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
