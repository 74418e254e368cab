"""Delivery while the export is still being written: each finished part is staged at the destination on a
background thread as soon as the writer hands it over, while the writer produces the next part.

At most `in_flight` finished parts exist on local disk at a time (waiting for or in upload); the writer waits
when that many are outstanding, and each part's local file is deleted once the destination holds it. Nothing
becomes visible before the runner commits the publication (all or nothing, manifest last).

Transient failures are retried with exponential backoff, per operation (a part's stage or the commit), up to
DELIVERY_RETRIES times; every try after the first, and the first of all, is counted through `record_try`
(the query's `delivery_attempts`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from exports.errors import StorageError, WriteCanceled
from exports.storage.base import Publication
from exports.writers import PartFile
from queries.errors import QueryFailed

logger = logging.getLogger(__name__)

# How often a writer blocked on a full pipeline looks whether the export was stopped meanwhile.
_POLL_SECONDS = 0.1


class DeliveryTries:
    """The retry policy of one delivery, shared by the part uploads and the commit."""

    def __init__(
        self,
        *,
        retries: int,
        backoff_seconds: float,
        stop: threading.Event,
        record_try: Callable[[], None],
        label: str,
    ) -> None:
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.count = 0
        self._stop = stop
        self._record_try = record_try
        self._label = label

    def run(self, operation: Callable[[], None]) -> None:
        """Run `operation`, retrying retryable StorageErrors with backoff; QueryFailed when it gives up,
        WriteCanceled when the export is stopped (a cancel, the time limit, a lost lease) meanwhile."""
        for attempt in range(self.retries + 1):
            if self._stop.is_set():
                raise WriteCanceled("delivery stopped")
            if self.count == 0 or attempt > 0:
                self.count += 1
                self._record_try()
            try:
                operation()
                return
            except StorageError as error:
                if not error.retryable:
                    raise QueryFailed(
                        f"The result could not be delivered: {error}. Check the destination's "
                        "settings in the admin."
                    ) from None
                if attempt == self.retries:
                    raise QueryFailed(
                        f"The result could not be delivered after {self.retries + 1} tries: {error}"
                    ) from None
                logger.warning("%s: delivery try %s failed (%s); retrying", self._label, self.count, error)
                self._stop.wait(self.backoff_seconds * 2**attempt)


class PartUploader:
    """Stages parts into `publication` on its own thread, in the order they are put.

    `put(part)` is the writer's `on_part` callback: it blocks while `in_flight` parts are outstanding and
    raises the uploads' failure (QueryFailed) or WriteCanceled once the export is stopped, which stops the
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
        stop: threading.Event,
        on_thread_exit: Callable[[], None] = lambda: None,
    ) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self._publication = publication
        self._key_for = key_for
        self._tries = tries
        self._stop = stop
        self._on_thread_exit = on_thread_exit
        self._slots = threading.Semaphore(in_flight)
        self._parts: queue.SimpleQueue[PartFile | None] = queue.SimpleQueue()
        self._failure: BaseException | None = None
        self._stop_requested = False
        self._thread = threading.Thread(target=self._work, name="part-upload", daemon=True)
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
