"""Live displays on stderr (rich): a query's status while `--wait` polls, and each part's bytes while a result
downloads. On a terminal they redraw in place; otherwise rich prints only their final state, once."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)


class StatusProgress:
    """One line: status, rows and bytes written so far, time since waiting began."""

    def __init__(self, console: Console, guid: str) -> None:
        self._progress = Progress(
            SpinnerColumn(finished_text="*"),
            TextColumn(f"query {guid}", markup=False),
            TextColumn("{task.fields[status]}", markup=False),
            BarColumn(),
            TextColumn("{task.fields[rows]} rows", markup=False),
            TextColumn("{task.fields[size]}", markup=False),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = TaskID(0)

    def __enter__(self) -> StatusProgress:
        self._progress.start()
        self._task = self._progress.add_task("wait", total=None, status="Pending", rows="0", size="0 bytes")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, state: dict[str, Any]) -> None:
        progress = state.get("progress") or {}
        self._progress.update(
            self._task,
            status=state["status"],
            rows=f"{int(progress.get('rows', 0)):,}",
            size=filesize.decimal(int(progress.get("bytes", 0))),
        )
        if state["status"] != "Pending":  # the bar stops pulsing and fills
            self._progress.update(self._task, total=1, completed=1)


class TransferProgress:
    """A bar per part: bytes on disk of its size, speed."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
        )

        self._started = False

    def __enter__(self) -> TransferProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._started:
            self._progress.stop()

    def part(self, name: str, total: int, done: int) -> Callable[[int], None]:
        """A bar for one part starting at `done` bytes; returns what to call with each chunk's length. The
        display starts with the first bar: a download refused at once draws nothing."""
        if not self._started:
            self._progress.start()
            self._started = True
        task = self._progress.add_task(name, total=total, completed=done)
        return lambda length: self._progress.advance(task, length)
