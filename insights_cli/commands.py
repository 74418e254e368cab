"""The `insights` command line (click): one command per thing a customer does with the API. `main` is the
console script: it runs a command and turns every error into one line on stderr and an exit code."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich import filesize

from insights_cli import __version__, output
from insights_cli.client import Client
from insights_cli.config import settings_load
from insights_cli.download import PartFetched, result_download
from insights_cli.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError
from insights_cli.progress import StatusProgress, TransferProgress
from insights_cli.wait import query_wait, state_exit_code, state_problem

GUID = re.compile(r"[0-9a-f]{32}")
# `query --wait`: how long the POST itself waits for the query to end (the service's `?wait=N`, at most 30 s)
# before the guid is printed and the status is polled. Short, so that a long export shows its guid and progress
# soon; most small queries end well within it.
SERVER_WAIT_SECONDS = 5.0
# A body's export settings (queries.export_settings.KEYS): a preview takes none, so they are left out of it and
# one body file serves both `query` and `preview`.
EXPORT_KEYS = ("output", "description", "filename")
EPILOG = """\b
Configuration: --url/--token, else INSIGHTS_URL/INSIGHTS_TOKEN, else url/token in
~/.config/insights/config.toml ($XDG_CONFIG_HOME/insights/config.toml). The URL is the
service's root (default http://127.0.0.1:8000); the token is an API key.

\b
Exit codes: 0 done (the query Completed, or is still Pending for `status`), 1 usage or
a request the service refused (bad body, unknown guid), 2 the query Failed (or a part
did not match its sha256), 3 the query was Canceled, 4 no API key or the service refused
it, 5 the service cannot be reached (or answered 5xx). Ctrl-C: 130.
"""


@dataclass(frozen=True)
class Options:
    url: str | None
    token: str | None

    def client(self) -> Client:
        return Client(settings_load(url=self.url, token=self.token))


def _guid(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not GUID.fullmatch(value):
        raise click.BadParameter("a query id is 32 lowercase hex digits (as `insights query` prints)")
    return value


def body_read(path: str) -> Any:
    """The JSON body in the file (`-`: stdin); not JSON is a usage error naming where."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {path}: {error}") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError as error:  # JSONDecodeError is one
        raise CliError(f"{path} is not JSON: {error}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object read from the body: a key given twice is refused, as the service refuses it."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        raise ValueError(f"a key appears twice in one object: {[key for key, _ in pairs]}")
    return obj


def body_with_format(body: Any, output_format: str) -> Any:
    """The body asking for the result's file format: `output.format`, the body's other output keys kept."""
    if not isinstance(body, dict) or not isinstance(body.get("output", {}), dict):
        raise CliError("--format needs a body that is a JSON object whose output, if any, is an object")
    return {**body, "output": {**body.get("output", {}), "format": output_format}}


BODY = click.argument("body", type=click.Path(dir_okay=False, allow_dash=True), metavar="BODY.json")
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer as it is.")


@click.group(
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--url", metavar="URL", help="The service's root, e.g. http://127.0.0.1:8000.")
@click.option("--token", metavar="KEY", help="The API key (Authorization: Bearer).")
@click.version_option(__version__, prog_name="insights")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None) -> None:
    """The Insights service from the command line: submit queries, follow them, fetch their results."""
    ctx.obj = Options(url=url, token=token)


@cli.command()
@click.option("--verbose", is_flag=True, help="Every field with its type, display name and description.")
@AS_JSON
@click.pass_obj
def catalog(options: Options, verbose: bool, as_json: bool) -> int:
    """The data dictionary: each event and its fields."""
    with options.client() as client:
        answer = client.catalog(verbose=verbose)
    if as_json:
        output.json_print(answer)
    else:
        console = output.stdout()
        for table in output.catalog_tables(answer, verbose=verbose):
            console.print(table)
    return EXIT_OK


@cli.command()
@BODY
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until the query ends (the service holds its answer up to 5 s, then its status is polled), "
    "showing its progress; exit with its end.",
)
@click.option(
    "--download",
    "directory",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Then download every part into DIR, checked against its sha256 (implies --wait).",
)
@click.option(
    "--format",
    "output_format",
    metavar="FORMAT",
    help="The result's file format, as the body's output.format: csv, xlsx, parquet or ndjson. "
    "(It does not change what this command prints.)",
)
@click.pass_obj
def query(options: Options, body: str, wait: bool, directory: Path | None, output_format: str | None) -> int:
    """Submit the query in BODY.json (`-`: stdin); print its id.

    With --wait, follow it (status, rows, bytes, elapsed) until it ends: exit 0 Completed, 2 Failed,
    3 Canceled. With --download DIR, then fetch its files into DIR and print their paths."""
    request = body_read(body)
    if output_format:
        request = body_with_format(request, output_format)
    with options.client() as client:
        if not (wait or directory):
            click.echo(client.query_create(request))
            return EXIT_OK
        guid, first = _submit_waiting(client, request)
        click.echo(guid)
        state = _wait(client, guid, first)
        if state_exit_code(state) != EXIT_OK:
            raise CliError(state_problem(state), state_exit_code(state))
        if directory:
            _download(client, guid, directory)
    return EXIT_OK


@cli.command()
@click.argument("guid", callback=_guid)
@AS_JSON
@click.pass_obj
def status(options: Options, guid: str, as_json: bool) -> int:
    """A query's status and progress. Exits 0 (Pending or Completed), 2 (Failed) or 3 (Canceled)."""
    with options.client() as client:
        state = client.query_status(guid)
    if as_json:
        output.json_print(state)
    else:
        output.stdout().print(output.status_table(state))
    return state_exit_code(state)


@cli.command("ls")
@click.option(
    "--status", "wanted", metavar="STATUS", help="Only this status: Pending, Completed, Failed, ..."
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many.")
@click.option("--all", "everything", is_flag=True, help="Every export (overrides --limit).")
@AS_JSON
@click.pass_obj
def list_exports(options: Options, wanted: str | None, limit: int, everything: bool, as_json: bool) -> int:
    """Your queries (exports), newest first."""
    with options.client() as client:
        exports = list(client.exports_list(status=wanted, limit=None if everything else limit))
    if as_json:
        output.json_print(exports)
    else:
        output.stdout().print(output.exports_table(exports))
    return EXIT_OK


@cli.command()
@click.argument("guid", callback=_guid)
@click.pass_obj
def cancel(options: Options, guid: str) -> int:
    """Cancel a Pending query (a finished one is refused: exit 1)."""
    with options.client() as client:
        answer = client.query_cancel(guid)
    stopping = " (its worker is stopping it)" if answer.get("status") == "Pending" else ""
    click.echo(f"query {guid}: {answer.get('status')}{stopping}")
    return EXIT_OK


@cli.command()
@click.argument("guid", callback=_guid)
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def download(options: Options, guid: str, directory: Path) -> int:
    """Download a Completed query's files into DIR, resuming what an earlier run left, each part checked
    against the manifest's sha256; print their paths."""
    with options.client() as client:
        _download(client, guid, directory)
    return EXIT_OK


@cli.command()
@BODY
@click.option("--limit", type=click.IntRange(1, 10000), help="How many rows (the body's limit, else 100).")
@click.option("--basic", is_flag=True, help="Name the columns with the catalog's display names.")
@AS_JSON
@click.pass_obj
def preview(options: Options, body: str, limit: int | None, basic: bool, as_json: bool) -> int:
    """The first rows the query in BODY.json would export, at once (nothing is queued). The body's export
    settings (output, description, filename) are left out: the same file serves `query`."""
    request = body_read(body)
    if isinstance(request, dict):
        request = {key: value for key, value in request.items() if key not in EXPORT_KEYS}
    elif limit or basic:
        raise CliError("--limit and --basic need a body that is a JSON object")
    if limit:
        request = {**request, "limit": limit}
    if basic:
        request = {**request, "basic": True}
    with options.client() as client:
        answer = client.query_preview(request)
    if as_json:
        output.json_print(answer)
    else:
        output.stdout().print(output.preview_table(answer))
        output.note(output.stderr(), f"{len(answer.get('data') or [])} row(s)")
    return EXIT_OK


def _submit_waiting(client: Client, request: Any) -> tuple[str, dict[str, Any] | None]:
    """POST ?wait=SERVER_WAIT_SECONDS: a small query comes back ended, with no poll at all."""
    try:
        return client.query_submit(request, wait=SERVER_WAIT_SECONDS)
    except KeyboardInterrupt:
        raise CliError(
            "stopped while the query was being submitted; it may have been created (`insights ls`)",
            EXIT_INTERRUPTED,
        ) from None


def _wait(client: Client, guid: str, first: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        with StatusProgress(output.stderr(), guid) as view:
            return query_wait(client, guid, view, first=first)
    except KeyboardInterrupt:
        raise CliError(
            f"stopped waiting; query {guid} goes on (`insights status {guid}`, `insights cancel {guid}`)",
            EXIT_INTERRUPTED,
        ) from None


def _download(client: Client, guid: str, directory: Path) -> list[PartFetched]:
    console = output.stderr()
    try:
        with TransferProgress(console) as progress:
            parts = result_download(
                client, guid, directory, progress, lambda text: output.note(console, text)
            )
    except KeyboardInterrupt:
        raise CliError(
            f"interrupted; `insights download {guid} {directory}` resumes where it stopped", EXIT_INTERRUPTED
        ) from None
    for part in parts:
        click.echo(str(part.path))
    rows, size = sum(p.rows for p in parts), sum(p.size for p in parts)
    output.note(
        console,
        f"{len(parts)} part(s), {rows:,} rows, {filesize.decimal(size)} in {directory}, "
        "each part's sha256 checked against the manifest",
    )
    return parts


def run(args: list[str] | None = None) -> int:
    """Run one command line; the exit code. Errors are one line on stderr, never a traceback."""
    try:
        code = cli.main(args=args, prog_name="insights", standalone_mode=False)
    except click.ClickException as error:  # usage: click's own exit code for these is 2, ours is 1
        error.show()
        return EXIT_USAGE
    except CliError as error:
        click.echo(f"insights: {error.message}", err=True)
        return error.exit_code
    except (KeyboardInterrupt, click.Abort):
        click.echo("insights: interrupted", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (`insights ls | head -1`): stop quietly, as Python advises
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_USAGE
    except Exception as error:  # a bug, or an answer of a shape this CLI does not know
        click.echo(f"insights: unexpected error: {type(error).__name__}: {error}", err=True)
        return EXIT_USAGE
    return code if isinstance(code, int) else EXIT_OK


def main() -> None:
    sys.exit(run())
