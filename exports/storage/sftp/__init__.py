"""An SFTP server as storage: a customer's own server, reached with a pinned host key.

The package, file by file:

- `storage.py`: SftpStorage: its configuration, the cached session, reads and deletes.
- `keys.py`: the server's pinned host key and the client's private key.
- `connection.py`: connecting (to the pinned key only, within a deadline, fast ciphers first).
- `errors.py`: paramiko's and the server's failures as StorageError, saying what to fix and if to retry.
- `publication.py`: all or nothing: stage under temporary names, commit by posix-rename (manifest last).
- `transfer.py`: one file's bytes cut into ranges written over several connections at once (and why).
- `reading.py`: ranged reads, a window of requests in flight at a time.
- `pipelining.py`: pipelined SFTP requests: the one module that calls paramiko's private API.
"""

from exports.storage.sftp.storage import SftpStorage

__all__ = ["SftpStorage"]
