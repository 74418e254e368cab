"""The exit codes the CLI promises, and the one error type that carries them to the top (commands.main), where
it becomes one line on stderr: never a traceback."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 1  # a bad command line, body or configuration; a request the service refused (4xx)
EXIT_FAILED = 2  # the query Failed, or a downloaded part does not match its manifest
EXIT_CANCELED = 3  # the query was Canceled
EXIT_AUTH = 4  # no API key, or the service refused it (401, 403)
EXIT_UNREACHABLE = 5  # the service cannot be reached, timed out, or answered 5xx / not as the API does
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class CliError(Exception):
    """Something the user is told in one line; `exit_code` is what the process exits with."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def exit_code_for_status(status_code: int) -> int:
    """The exit code of an HTTP error answer: credentials refused (4), the service failing (5), or a request
    it would not take (1: a bad body, an unknown guid, a query in the wrong state, a limit reached)."""
    if status_code in (401, 403):
        return EXIT_AUTH
    if status_code >= 500:
        return EXIT_UNREACHABLE
    return EXIT_USAGE
