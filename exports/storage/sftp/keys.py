"""The two keys of an SFTP destination: the server's host key, pinned (the only key ever accepted: none is
learnt), and the client's private key."""

from __future__ import annotations

import base64
import io

import paramiko

from exports.errors import StorageError

# The host key algorithms a pinned key of each type can be verified with.
HOST_KEY_ALGORITHMS = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}

_PRIVATE_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (
    paramiko.Ed25519Key,
    paramiko.ECDSAKey,
    paramiko.RSAKey,
)


class HostKeyRejected(paramiko.SSHException):
    """The server presented a key that is not the pinned one."""


class PinnedHostKeyPolicy(paramiko.RejectPolicy):
    """Refuse any host key but the pinned one (never learn a new key)."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyRejected(f"{key.get_name()} {key.get_base64()}")


def host_key_parse(text: str) -> paramiko.PKey:
    """The pinned server key from a known_hosts or `.pub` line, or from its bare base64 blob."""
    tokens = (text or "").split()
    declared: str | None = None
    blob_text: str | None = None
    for index, token in enumerate(tokens[:-1]):
        if token in HOST_KEY_ALGORITHMS:
            declared, blob_text = token, tokens[index + 1]
            break
    if blob_text is None and len(tokens) == 1:
        blob_text = tokens[0]
    if blob_text is None:
        raise StorageError(
            "the host key must be the server's public key, like `ssh-ed25519 AAAA...` (see ssh-keyscan), "
            f"of one of the types {', '.join(HOST_KEY_ALGORITHMS)}"
        )
    try:
        raw = base64.b64decode(blob_text, validate=True)
        kind = paramiko.Message(raw).get_text()
        if declared is not None and kind != declared:
            raise ValueError(f"key says {kind}, line says {declared}")
        if kind not in HOST_KEY_ALGORITHMS:
            raise ValueError(f"unsupported key type {kind}")
        return paramiko.PKey.from_type_string(kind, raw)
    except Exception as exc:
        raise StorageError(
            f"the host key could not be read ({exc}): paste the server's public key line"
        ) from None


def private_key_load(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """A private key from its text (OpenSSH or PEM format; ed25519, ECDSA or RSA)."""
    for key_class in _PRIVATE_KEY_CLASSES:
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise StorageError("the private key is encrypted: give its passphrase") from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    # Deliberately no detail from the parser: it could quote the key.
    raise StorageError(
        "the private key could not be read: give an OpenSSH or PEM private key (ed25519, ECDSA or RSA), "
        "and its passphrase if it has one"
    )
