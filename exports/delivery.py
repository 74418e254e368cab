"""Delivery while the export is still being written: each finished part is staged at the destination on a
background thread as soon as the writer hands it over, while the writer produces the next part. Generic: a
publication, local part files and a retry policy in; it knows nothing of queries.

At most `in_flight` finished parts exist on local disk at a time (waiting for or in upload); the writer waits
when that many are outstanding, and each part's local file is deleted once the destination holds it. Nothing
becomes visible before the runner commits the publication (all or nothing, manifest last).

Transient failures are retried with exponential backoff, per operation (a part's stage or the commit), up to
`retries` times; the first try of all and every retry are reported to the caller's DeliveryControl. A
delivery that gives up raises DeliveryFailed, saying whether the destination refused (a permanent error:
its settings need fixing) or kept failing.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol

from exports.errors import StorageError, WriteCanceled
from exports.storage.base import Publication
from exports.writers import PartFile

logger = logging.getLogger(__name__)

# How often a writer blocked on a full pipeline looks whether the export was stopped meanwhile.
_POLL_SECONDS = 0.1


class DeliveryControl(Protocol):
    """What a delivery asks of whoever runs it."""

    stop: threading.Event  # set when the export must stop (a cancel, the time limit, a lost right to publish)

    def delivery_tried(self) -> None:
        """A delivery try is about to be made (the first of all, or a retry)."""


class DeliveryFailed(StorageError):
    """The delivery gave up: `cause` is the last error; `refused` when the destination refused outright (a
    permanent error: its settings need fixing), else it kept failing for `tries` tries."""

    def __init__(self, cause: StorageError, *, tries: int) -> None:
        super().__init__(str(cause), retryable=False)
        self.cause = cause
        self.tries = tries
        self.refused = not cause.retryable


class DeliveryTries:
    """The retry policy of one delivery, shared by the part uploads and the commit."""

    def __init__(self, *, retries: int, backoff_seconds: float, control: DeliveryControl, label: str) -> None:
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.count = 0
        self.control = control
        self._label = label

    def run(self, operation: Callable[[], None]) -> None:
        """Run `operation`, retrying retryable StorageErrors with backoff; DeliveryFailed when it gives up,
        WriteCanceled when the export is stopped meanwhile."""
        stop = self.control.stop
        for attempt in range(self.retries + 1):
            if stop.is_set():
                raise WriteCanceled("delivery stopped")
            if self.count == 0 or attempt > 0:
                self.count += 1
                self.control.delivery_tried()
            try:
                operation()
                return
            except StorageError as error:
                if not error.retryable or attempt == self.retries:
                    raise DeliveryFailed(error, tries=attempt + 1) from error
                logger.warning("%s: delivery try %s failed (%s); retrying", self._label, self.count, error)
                stop.wait(self.backoff_seconds * 2**attempt)


class PartUploader:
    """Stages parts into `publication` on its own thread, in the order they are put.

    `put(part)` takes each part the writer finishes: it blocks while `in_flight` parts are outstanding and
    raises the uploads' failure (DeliveryFailed) or WriteCanceled once the export is stopped, which stops the
    writer. `finish()` waits until every part is staged; `close()` (always, in a finally) stops the thread.
    `key_for(part_name)` is the destination key of a part; parts without rows (the header-only part of an
    empty result) are not uploaded.
    """

    def __init__(
        self,
        publication: Publication,
        *,
        key_for: Callable[[str], str],
        in_flight: int,
        tries: DeliveryTries,
        on_thread_exit: Callable[[], None] = lambda: None,
    ) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self._publication = publication
        self._key_for = key_for
        self._tries = tries
        self._stop = tries.control.stop
        self._on_thread_exit = on_thread_exit
        self._slots = threading.Semaphore(in_flight)
        self._parts: queue.SimpleQueue[PartFile | None] = queue.SimpleQueue()
        self._failure: BaseException | None = None
        self._stop_requested = False
        # In a copy of the caller's context: the caller's log fields (a query run's guid) follow the uploads.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._work,), name="part-upload", daemon=True
        )
        self._thread.start()

    def put(self, part: PartFile) -> None:
        while not self._slots.acquire(timeout=_POLL_SECONDS):
            self._raise_if_stopped()
        try:
            self._raise_if_stopped()
        except BaseException:
            self._slots.release()
            raise
        self._parts.put(part)

    def finish(self) -> None:
        """Wait for every part put so far to be staged; raise the first upload failure."""
        self._close_queue()
        self._raise_if_stopped()

    def close(self) -> None:
        """Stop the upload thread (it finishes the part in upload, skips the rest, deleting their files)."""
        self._stop_requested = True
        self._close_queue()

    def _close_queue(self) -> None:
        if self._thread.is_alive():
            self._parts.put(None)
            self._thread.join()

    def _raise_if_stopped(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._stop.is_set():
            raise WriteCanceled("export stopped")

    def _work(self) -> None:
        try:
            while (part := self._parts.get()) is not None:
                try:
                    if self._failure is None and not self._stop_requested:
                        self._upload(part)
                except BaseException as exc:  # handed to the writer at its next put, or to finish()
                    self._failure = exc
                finally:
                    part.path.unlink(missing_ok=True)
                    self._slots.release()
        finally:
            self._on_thread_exit()

    def _upload(self, part: PartFile) -> None:
        if part.rows == 0:
            return
        key = self._key_for(part.name)
        self._tries.run(lambda: self._publication.stage(part.path, key))
