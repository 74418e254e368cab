"""Downloads against a fake service (httpx.MockTransport) that answers ranges as the real one does: what is
asked for, what lands on disk, and when a part is refused."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from insights_cli.download import PartFetched, part_name, result_download
from insights_cli.errors import EXIT_CANCELED, EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, CliError
from tests.insights_cli.test_client import client_for

GUID = "d" * 32
PARTS = [bytes(range(256)) * 40, b"second part " * 500]
NAMES = [f"{GUID}_QueryExport_1700000000000__{n:012d}.csv.gz" for n in range(len(PARTS))]


class FakeService:
    """Status, location and ranged downloads of one query; `served` is what each download answered with."""

    def __init__(self, status: str = "Completed", *, honour_ranges: bool = True) -> None:
        self.status = status
        self.honour_ranges = honour_ranges
        self.contents = list(PARTS)  # what downloads serve (a test may make it differ from the manifest)
        self.ranges: list[str | None] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/_rest/v4/dwh/Q/")
        if path == f"{GUID}/status":
            messages = {"messages": ["The query returned empty values"]} if self.status != "Completed" else {}
            return httpx.Response(200, json={"status": self.status, "guid": GUID, **messages})
        if path == GUID:
            return httpx.Response(
                200, json={"status": "Process finished.", "guid": GUID, "files": self.files()}
            )
        match = re.fullmatch(rf"{GUID}/download/(\d+)", path)
        assert match, path
        return self.download(request, self.contents[int(match.group(1))])

    def files(self) -> list[dict[str, Any]]:
        return [
            {
                "path": f"reports/acme/{name}",
                "size": len(p),
                "rows": 7,
                "sha256": hashlib.sha256(p).hexdigest(),
            }
            for name, p in zip(NAMES, PARTS, strict=True)
        ]

    def download(self, request: httpx.Request, content: bytes) -> httpx.Response:
        wanted = request.headers.get("Range")
        self.ranges.append(wanted)
        if not wanted or not self.honour_ranges:
            return httpx.Response(200, content=content)
        first = int(wanted.removeprefix("bytes=").removesuffix("-"))
        if first >= len(content):
            return httpx.Response(416)
        return httpx.Response(206, content=content[first:])


class Bars:
    def __init__(self) -> None:
        self.advanced = 0

    def part(self, name: str, total: int, done: int) -> Callable[[int], None]:
        def advance(length: int) -> None:
            self.advanced += length

        return advance


def _download(service: FakeService, directory: Path) -> tuple[list[PartFetched], list[str]]:
    notes: list[str] = []
    with client_for(service.handler) as client:
        return result_download(client, GUID, directory, Bars(), notes.append), notes


def _on_disk(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_every_part_is_fetched_whole_and_named_as_stored(tmp_path: Path) -> None:
    service = FakeService()
    parts, notes = _download(service, tmp_path / "out")
    assert _on_disk(tmp_path / "out") == dict(zip(NAMES, PARTS, strict=True))
    assert [p.fetched for p in parts] == [len(p) for p in PARTS]
    assert service.ranges == [None, None]
    assert notes[0] == f"part 1/2 {NAMES[0]}: fetched {len(PARTS[0]):,} bytes, sha256 ok"


def test_a_part_cut_short_is_resumed_from_where_it_stops(tmp_path: Path) -> None:
    _download(FakeService(), tmp_path)
    half = len(PARTS[0]) // 2
    (tmp_path / NAMES[0]).write_bytes(PARTS[0][:half])
    service = FakeService()
    parts, notes = _download(service, tmp_path)
    assert service.ranges == [f"bytes={half}-"]  # the second part was whole already: not asked for
    assert (parts[0].fetched, parts[0].resumed_at) == (len(PARTS[0]) - half, half)
    assert parts[1].fetched == 0
    assert _on_disk(tmp_path) == dict(zip(NAMES, PARTS, strict=True))
    assert f"fetched {len(PARTS[0]) - half:,} bytes (resumed at {half:,} of {len(PARTS[0]):,})" in notes[0]
    assert notes[1] == f"part 2/2 {NAMES[1]}: already complete, sha256 ok"


def test_an_interrupted_partial_file_is_resumed_then_renamed(tmp_path: Path) -> None:
    (tmp_path / f"{NAMES[1]}.partial").write_bytes(PARTS[1][:100])
    service = FakeService()
    parts, _ = _download(service, tmp_path)
    assert service.ranges == [None, "bytes=100-"]
    assert parts[1].fetched == len(PARTS[1]) - 100
    assert _on_disk(tmp_path) == dict(zip(NAMES, PARTS, strict=True))


def test_a_server_that_ignores_the_range_still_gives_the_whole_part(tmp_path: Path) -> None:
    (tmp_path / f"{NAMES[0]}.partial").write_bytes(PARTS[0][:100])
    parts, _ = _download(FakeService(honour_ranges=False), tmp_path)
    assert parts[0].fetched == len(PARTS[0]) and parts[0].resumed_at == 0
    assert _on_disk(tmp_path) == dict(zip(NAMES, PARTS, strict=True))


def test_kept_bytes_that_are_wrong_make_it_fetch_the_part_whole_once(tmp_path: Path) -> None:
    (tmp_path / f"{NAMES[0]}.partial").write_bytes(b"x" * 100)  # not the part's first bytes
    service = FakeService()
    parts, _ = _download(service, tmp_path)
    assert service.ranges == ["bytes=100-", None, None]
    assert parts[0].fetched == len(PARTS[0])
    assert _on_disk(tmp_path) == dict(zip(NAMES, PARTS, strict=True))


def test_a_longer_file_under_the_name_is_replaced(tmp_path: Path) -> None:
    (tmp_path / NAMES[1]).write_bytes(PARTS[1] + b"more")
    _download(FakeService(), tmp_path)
    assert _on_disk(tmp_path) == dict(zip(NAMES, PARTS, strict=True))


def test_a_part_that_does_not_match_its_sha256_is_exit_2_and_not_kept(tmp_path: Path) -> None:
    service = FakeService()
    service.contents[1] = PARTS[1][:-1] + b"!"
    with pytest.raises(CliError) as raised:
        _download(service, tmp_path)
    assert raised.value.exit_code == EXIT_FAILED
    assert f"part 1 of query {GUID} ({NAMES[1]}) does not match the manifest's size and sha256" in (
        raised.value.message
    )
    assert _on_disk(tmp_path) == {NAMES[0]: PARTS[0]}  # the checked part stays; nothing of the bad one


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        ("Failed", EXIT_FAILED, "Failed: The query returned empty values"),
        ("Canceled", EXIT_CANCELED, "Canceled"),
        ("Pending", EXIT_USAGE, "has no result yet (Pending)"),
        ("Expired", EXIT_USAGE, "Expired"),
    ],
)
def test_a_query_without_a_result_downloads_nothing(
    tmp_path: Path, status: str, code: int, words: str
) -> None:
    service = FakeService(status)
    with pytest.raises(CliError) as raised:
        _download(service, tmp_path / "out")
    assert raised.value.exit_code == code and words in raised.value.message
    assert service.ranges == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", ["reports/acme/..", "", "a\\..\\b", "x.csv.gz.partial"])
def test_a_part_name_that_could_leave_the_directory_is_refused(path: str) -> None:
    with pytest.raises(CliError) as raised:
        part_name(path)
    assert raised.value.exit_code == EXIT_UNREACHABLE
