"""A Completed query's parts onto the local disk, each checked against the manifest's sha256.

A part is written to `<name>.partial` and renamed to `<name>` only once its size and sha256 match, so a file
under its own name is always a whole, checked part. An interrupted download (Ctrl-C, a dropped connection)
leaves the `.partial`; the next run asks only for the rest (`Range: bytes=<size>-`). A `<name>` shorter than
the part (a copy cut short elsewhere) is resumed the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from insights_cli.client import Client
from insights_cli.errors import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, CliError
from insights_cli.wait import EXIT_BY_STATUS, state_problem

CHUNK = 1024 * 1024


class PartProgress(Protocol):
    def part(self, name: str, total: int, done: int) -> Callable[[int], None]: ...


@dataclass(frozen=True)
class PartFetched:
    """One part on disk: where, its manifest figures, and what this run fetched (0: it was already there)."""

    path: Path
    rows: int
    size: int
    fetched: int
    resumed_at: int


class _Mismatch(Exception):
    pass


def result_download(
    client: Client, guid: str, directory: Path, progress: PartProgress, note: Callable[[str], None]
) -> list[PartFetched]:
    """Every part of the query's result into `directory` (created), in order. A query without a result is an
    error with its exit code: Failed (2), Canceled (3), still Pending or its files gone (1)."""
    state = client.query_status(guid)
    if state["status"] == "Pending":
        raise CliError(f"query {guid} has no result yet (Pending): see `insights status {guid}`")
    if state["status"] != "Completed":
        raise CliError(state_problem(state), EXIT_BY_STATUS.get(state["status"]) or EXIT_USAGE)
    entries = client.query_location(guid).get("files") or []
    directory.mkdir(parents=True, exist_ok=True)
    fetched = []
    for index, entry in enumerate(entries):
        part = part_download(client, guid, index, entry, directory, progress)
        note(_summary(index, len(entries), part))
        fetched.append(part)
    return fetched


def part_download(
    client: Client, guid: str, index: int, entry: dict[str, Any], directory: Path, progress: PartProgress
) -> PartFetched:
    name = part_name(entry["path"])
    size, sha256, rows = int(entry["size"]), str(entry["sha256"]), int(entry["rows"])
    final, partial = directory / name, directory / f"{name}.partial"
    if final.exists():
        if final.stat().st_size == size and file_sha256(final) == sha256:
            return PartFetched(final, rows, size, fetched=0, resumed_at=size)
        _partial_adopt(final, partial, size)
    offset = partial.stat().st_size if partial.exists() else 0
    try:
        fetched, offset = _fetch(client, guid, index, partial, offset, size, sha256, progress)
    except _Mismatch:
        if not offset:
            raise _mismatch_error(guid, index, name) from None
        # The kept bytes may be what is wrong (another file under that name): fetch the part whole, once.
        try:
            fetched, offset = _fetch(client, guid, index, partial, 0, size, sha256, progress)
        except _Mismatch:
            raise _mismatch_error(guid, index, name) from None
    partial.replace(final)
    return PartFetched(final, rows, size, fetched=fetched, resumed_at=offset)


def part_name(path: str) -> str:
    """The file name of a part's storage path; anything that could leave the directory is refused."""
    name = PurePosixPath(path).name
    if name in ("", ".", "..") or "\\" in name or name.endswith(".partial"):
        raise CliError(
            f"the service named a part {path!r}: not a file name this CLI writes", EXIT_UNREACHABLE
        )
    return name


def _partial_adopt(final: Path, partial: Path, size: int) -> None:
    """A `<name>` that is not the whole part: shorter than it, it is where a resume starts (unless a longer
    `.partial` is there); otherwise it is some other file and goes."""
    length = final.stat().st_size
    if length < size and (not partial.exists() or partial.stat().st_size < length):
        final.replace(partial)
    else:
        final.unlink()


def _fetch(
    client: Client,
    guid: str,
    index: int,
    partial: Path,
    offset: int,
    size: int,
    sha256: str,
    progress: PartProgress,
) -> tuple[int, int]:
    """(bytes received, where they started) once `partial` holds the whole part; _Mismatch (the `.partial`
    removed) when its size or sha256 differ from the manifest's."""
    if offset > size:
        partial.unlink()
        offset = 0
    digest = hashlib.sha256()
    received = 0
    if offset < size:
        with client.part_stream(guid, index, offset=offset) as response:
            if response.status_code == 416:  # the server's part is shorter than what is on disk
                offset = 0
                partial.unlink(missing_ok=True)
                return _fetch(client, guid, index, partial, 0, size, sha256, progress)
            if response.status_code == 200:  # the whole part: the range was not honoured
                offset = 0
            advance = progress.part(partial.name.removesuffix(".partial"), size, offset)
            with partial.open("r+b" if offset else "wb") as out:
                _hash_into(digest, out, offset)
                out.seek(offset)
                out.truncate()
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    advance(len(chunk))
    else:  # all there already (an interrupted run stopped between its last byte and the rename)
        partial.touch()
        with partial.open("rb") as kept:
            _hash_into(digest, kept, size)
    if partial.stat().st_size != size or digest.hexdigest() != sha256:
        partial.unlink()
        raise _Mismatch()
    return received, offset


def _hash_into(digest: Any, stream: Any, length: int) -> None:
    """Hash the first `length` bytes of an open file (what a resume keeps)."""
    stream.seek(0)
    for block in _blocks(stream, length):
        digest.update(block)


def _blocks(stream: Any, length: int) -> Iterator[bytes]:
    left = length
    while left > 0 and (block := stream.read(min(CHUNK, left))):
        left -= len(block)
        yield block


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _mismatch_error(guid: str, index: int, name: str) -> CliError:
    return CliError(
        f"part {index} of query {guid} ({name}) does not match the manifest's size and sha256; the bad copy "
        "was removed: run `insights download` again",
        EXIT_FAILED,
    )


def _summary(index: int, count: int, part: PartFetched) -> str:
    where = f"part {index + 1}/{count} {part.path.name}"
    if part.fetched == 0 and part.resumed_at == part.size:
        return f"{where}: already complete, sha256 ok"
    resumed = f" (resumed at {part.resumed_at:,} of {part.size:,})" if part.resumed_at else ""
    return f"{where}: fetched {part.fetched:,} bytes{resumed}, sha256 ok"
