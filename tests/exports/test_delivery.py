"""The part uploader and the delivery retry policy (exports.delivery), with an in-memory publication (the
runner tests and the storage tests cover the real backends)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from exports.delivery import DeliveryFailed, DeliveryTries, PartUploader
from exports.errors import StorageError, WriteCanceled
from exports.storage.base import Publication
from exports.writers import PartFile


class _Gate(Publication):
    """Stages only when the test opens the gate; fails with `error` when set."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.staged: list[str] = []
        self.error: StorageError | None = None

    def stage(self, source: Path, key: str) -> None:
        self.gate.wait(10)
        if self.error is not None:
            raise self.error
        assert source.is_file()
        self.staged.append(key)

    def commit(self, manifest, *, commit_check=None) -> None:  # pragma: no cover - not used here
        raise AssertionError

    def abort(self) -> None:
        pass


def _part(directory: Path, index: int, rows: int = 1) -> PartFile:
    path = directory / f".part{index}.tmp"
    path.write_bytes(b"x")
    return PartFile(name=f"part{index}", path=path, rows=rows, bytes=1, compressed_bytes=1, sha256="0" * 64)


class _Control:
    """A DeliveryControl: a stop event, and the tries it was told of."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.tried = 0

    def delivery_tried(self) -> None:
        self.tried += 1


def _uploader(publication: Publication, stop: threading.Event, *, in_flight: int = 1, retries: int = 0):
    tries = DeliveryTries(retries=retries, backoff_seconds=0, control=_Control(stop), label="q")
    uploader = PartUploader(publication, key_for=lambda name: f"k/{name}", in_flight=in_flight, tries=tries)
    return uploader, tries


def test_parts_are_staged_in_order_and_their_files_removed(tmp_path):
    publication, stop = _Gate(), threading.Event()
    publication.gate.set()
    uploader, tries = _uploader(publication, stop, in_flight=2)
    parts = [_part(tmp_path, i) for i in range(5)] + [_part(tmp_path, 5, rows=0)]
    for part in parts:
        uploader.put(part)
    uploader.finish()
    uploader.close()
    assert publication.staged == [f"k/part{i}" for i in range(5)]  # the header-only part is not uploaded
    assert list(tmp_path.iterdir()) == [] and tries.count == 1


def test_a_writer_waiting_for_a_slot_is_released_by_a_stop(tmp_path):
    publication, stop = _Gate(), threading.Event()
    uploader, _ = _uploader(publication, stop)
    uploader.put(_part(tmp_path, 0))  # takes the only slot; its upload waits on the gate
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(WriteCanceled):
        uploader.put(_part(tmp_path, 1))  # would wait forever without the stop
    publication.gate.set()
    uploader.close()


def test_an_upload_failure_reaches_the_writer_at_its_next_put(tmp_path):
    publication, stop = _Gate(), threading.Event()
    publication.error = StorageError("permission denied", retryable=False)
    publication.gate.set()
    uploader, _ = _uploader(publication, stop)
    uploader.put(_part(tmp_path, 0))
    with pytest.raises(DeliveryFailed, match="permission denied") as caught:
        uploader.put(_part(tmp_path, 1))
    assert caught.value.refused and caught.value.tries == 1
    uploader.close()
    assert publication.staged == []


def test_transient_failures_are_retried_then_given_up():
    calls: list[int] = []
    control = _Control(threading.Event())
    tries = DeliveryTries(retries=2, backoff_seconds=0, control=control, label="q")

    def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise StorageError("connection reset", retryable=True)

    tries.run(flaky)
    assert (len(calls), tries.count) == (3, 3)
    tries.run(lambda: None)  # a later operation that works at once is not another try
    assert tries.count == 3 and control.tried == 3

    def broken() -> None:
        raise StorageError("connection reset", retryable=True)

    with pytest.raises(DeliveryFailed, match="connection reset") as caught:
        tries.run(broken)
    assert (caught.value.refused, caught.value.tries) == (False, 3)
