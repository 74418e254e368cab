"""What is wrong with an events file: a `Problem` (where, which field, what), and the `LoadError` refusing it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file: where (1-based line, or row for Parquet; None: the file as a whole),
    which field (None: the line as a whole), and what."""

    line: int | None
    field: str | None
    message: str

    def render(self, source: str) -> str:
        where = source if self.line is None else f"{source}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class LoadError(Exception):
    """A file was refused. The message is its first problem, as `file:line: field: problem`."""

    def __init__(self, source: str, problem: Problem, *, count: int = 1) -> None:
        self.source = source
        self.problem = problem
        self.count = count
        more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
        super().__init__(problem.render(source) + more)
