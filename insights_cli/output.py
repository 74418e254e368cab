"""What the commands print: results on stdout (rich tables, or the API's JSON with --json), notes and progress on
stderr, so `insights query body.json` can be captured and piped. Every value from the service is printed as
text, never as rich markup (a message may hold brackets)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from rich import filesize
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

PIPE_WIDTH = 10_000  # off a terminal (and without COLUMNS) rich would wrap tables at 80 columns: never wrap


def console_for(stream: TextIO) -> Console:
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(file=stream, highlight=False, soft_wrap=False, width=PIPE_WIDTH if wide else None)


def stdout() -> Console:
    return console_for(sys.stdout)


def stderr() -> Console:
    return console_for(sys.stderr)


def note(console: Console, text: str) -> None:
    """One line of the CLI's own commentary, whole (not wrapped), brackets and all."""
    console.print(escape(text), soft_wrap=True)


def json_print(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _text(value: Any) -> Text:
    return Text("" if value is None else str(value))


def _count(value: Any) -> Text:
    return Text("" if value is None else f"{int(value):,}", justify="right")


def _size(value: Any) -> Text:
    return Text("" if value is None else filesize.decimal(int(value)), justify="right")


def status_table(state: dict[str, Any]) -> Table:
    progress = state.get("progress") or {}
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("query", state.get("guid")),
        ("status", state.get("status")),
        ("rows", f"{int(progress.get('rows', 0)):,}"),
        ("bytes", f"{filesize.decimal(int(progress.get('bytes', 0)))} (uncompressed)"),
        ("submitted", state.get("submitted_at")),
        ("started", state.get("started_at") or "-"),
        ("finished", state.get("finished_at") or "-"),
    ]
    rows += [("message", message) for message in state.get("messages") or []]
    for label, value in rows:
        table.add_row(label, _text(value))
    return table


def exports_table(exports: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title in ("id", "status", "submitted", "rows", "size", "parts", "events", "description"):
        table.add_column(title, no_wrap=title in ("id", "submitted"))
    for export in exports:
        table.add_row(
            _text(export.get("id")),
            _text(export.get("status")),
            _text(export.get("submitted_at")),
            _count(export.get("rows")),
            _size(export.get("size")),
            _count(export.get("parts")),
            _text(", ".join(export.get("events") or [])),
            _text(export.get("description")),
        )
    return table


def catalog_tables(catalog: dict[str, Any], *, verbose: bool) -> list[Table]:
    """One table of events and their own fields; verbose: one table per event, every field described."""
    if not verbose:
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("event", no_wrap=True)
        table.add_column("fields")
        for name, event in catalog.items():
            table.add_row(_text(name), _text(", ".join(event.get("fields") or [])))
        return [table]
    tables = []
    for name, event in catalog.items():
        table = Table(
            title=Text(f"{name}: {event.get('description', '')}"),
            title_justify="left",
            box=None,
            header_style="bold",
            pad_edge=False,
        )
        for title in ("field", "type", "display name", "common", "description"):
            table.add_column(title, no_wrap=title != "description")
        for field in event.get("fields") or []:
            table.add_row(
                _text(field.get("name")),
                _text(field.get("type")),
                _text(field.get("display_name")),
                _text("yes" if field.get("common") else ""),
                _text(field.get("description")),
            )
        tables.append(table)
    return tables


def preview_table(preview: dict[str, Any]) -> Table:
    names = [str(field["name"]) for field in preview.get("fields") or []]
    table = Table(header_style="bold")
    for name in names:
        table.add_column(name)
    for row in preview.get("data") or []:
        table.add_row(*(_text(_cell(row.get(name))) for name in names))
    return table


def _cell(value: Any) -> Any:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)
