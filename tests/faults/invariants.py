"""The invariants every fault test checks, read from the service's own state (metadata DB and export dir).

- I1: every query reaches a terminal status within a bound.
- I2: never more than N live (Pending) queries per customer, and none left once the bound has passed.
- I3: every file under a final name is complete and matches its manifest (sha256, size, rows); no temporary
  file sits under a final name.
- I4: at most one published result per query: one manifest per guid, and only the parts of one attempt.

The metadata database is read directly (one SQL statement per snapshot), not through the status API: a
snapshot must be atomic to count live queries per customer, and the attempt number is not part of the API.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import re
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv

TERMINAL = frozenset({"Completed", "Failed", "Canceled", "Expired"})
PART_NAME = re.compile(r"^(?P<guid>[0-9a-f]{32})_QueryExport_(?P<epoch>\d+)__(?P<index>\d{12})\.csv\.gz$")
MANIFEST_NAME = re.compile(r"^(?P<guid>[0-9a-f]{32})_manifest\.json$")


@dataclass(frozen=True)
class QueryRow:
    """One QueryRequest as the metadata database holds it."""

    guid: str
    customer: str
    limit: int  # the customer's max concurrent queries
    status: str
    attempts: int
    delivery_attempts: int
    messages: list[str]
    files: list[dict[str, Any]]
    manifest_path: str
    progress_rows: int

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def metadata_connect(database_url: str) -> Any:
    """A connection to the service's metadata database, PostgreSQL or SQLite (the embedded shape)."""
    if database_url.startswith("sqlite:///"):
        return contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30))
    return psycopg.connect(database_url, autocommit=True)


def _json(value: Any) -> Any:
    """A JSON column: PostgreSQL's driver decodes it, SQLite's hands over the text."""
    return json.loads(value) if isinstance(value, str) else value


def queries_read(database_url: str) -> dict[str, QueryRow]:
    """Every query, by guid, in one consistent snapshot."""
    with metadata_connect(database_url) as conn:
        rows = conn.execute(
            "SELECT q.guid, c.key, c.max_concurrent_queries, q.status, q.attempts, q.delivery_attempts,"
            " q.messages, q.files, q.manifest_path, q.progress_rows"
            " FROM queries_queryrequest q JOIN insights_customer c ON c.id = q.customer_id"
        ).fetchall()
    return {
        row[0]: QueryRow(*row[:6], _json(row[6]), _json(row[7]), *row[8:])  # type: ignore[call-arg]
        for row in rows
    }


def query_read(database_url: str, guid: str) -> QueryRow:
    return queries_read(database_url)[guid]


class SlotWatch(threading.Thread):
    """Samples live (Pending) queries per customer every `interval` seconds while it runs (I2).

    Each sample is one SQL statement, so it is a consistent snapshot: a count above the customer's limit
    is a real violation, not an artefact of polling queries one by one.
    """

    def __init__(self, database_url: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True, name="slot-watch")
        self.database_url = database_url
        self.interval = interval
        self.samples = 0
        self.peak: dict[str, int] = defaultdict(int)
        self.violations: list[tuple[str, int, int]] = []  # (customer, live, limit)
        self._stop_event = threading.Event()

    def run(self) -> None:
        with metadata_connect(self.database_url) as conn:
            while not self._stop_event.is_set():
                rows = conn.execute(
                    "SELECT c.key, c.max_concurrent_queries, count(q.id) FROM insights_customer c"
                    " JOIN queries_queryrequest q ON q.customer_id = c.id AND q.status = 'Pending'"
                    " GROUP BY c.key, c.max_concurrent_queries"
                ).fetchall()
                self.samples += 1
                for customer, limit, live in rows:
                    self.peak[customer] = max(self.peak[customer], live)
                    if live > limit:
                        self.violations.append((customer, live, limit))
                self._stop_event.wait(self.interval)

    def __enter__(self) -> SlotWatch:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def check(self) -> None:
        """I2 while running: raise if any sample saw a customer above its limit."""
        assert self.samples > 0, "the slot watch took no sample"
        assert not self.violations, f"I2: more live queries than the limit: {self.violations[:5]}"


@dataclass
class Verdict:
    """What the service did, and how long after the fault the invariants held."""

    queries: dict[str, QueryRow]
    seconds: float  # from the fault to I1-I4 holding
    exports: ExportsReport

    def of(self, guid: str) -> QueryRow:
        return self.queries[guid]


@dataclass
class ExportsReport:
    manifests: int = 0
    parts: int = 0
    staging_leftovers: list[str] = field(default_factory=list)  # hidden files: invisible to customers
    problems: list[str] = field(default_factory=list)


def invariants_wait(
    *, database_url: str, export_dir: Path, guids: list[str], since: float, bound: float = 120.0
) -> Verdict:
    """Wait for I1 (each query in `guids` terminal) within `bound` seconds of `since` (time.monotonic()),
    then check I2 (no query of any customer left Pending), I3 and I4 on the whole export directory.

    Returns the verdict with the time from `since` to the invariants holding; raises AssertionError naming
    every violation otherwise.
    """
    deadline = since + bound
    while True:
        queries = queries_read(database_url)
        unknown = [guid for guid in guids if guid not in queries]
        assert not unknown, f"queries not in the metadata database: {unknown}"
        waiting = [queries[guid] for guid in guids if not queries[guid].terminal]
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"I1: still Pending {bound:.0f}s after the fault: {waiting}")
        time.sleep(0.1)
    held_at = time.monotonic()
    leaked = [row for row in queries.values() if not row.terminal]
    assert not leaked, f"I2: slots still held after every query ended: {leaked}"
    report = exports_check(export_dir, queries)
    assert not report.problems, "I3/I4:\n" + "\n".join(report.problems)
    return Verdict(queries=queries, seconds=held_at - since, exports=report)


def exports_check(export_dir: Path, queries: dict[str, QueryRow]) -> ExportsReport:
    """I3 and I4 over every file under `export_dir` (the local storage root), against the database."""
    report = ExportsReport()
    parts_seen: dict[str, dict[str, Path]] = defaultdict(dict)  # guid -> key -> path
    manifests: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(p for p in export_dir.rglob("*") if p.is_file()):
        key = path.relative_to(export_dir).as_posix()
        if path.name.startswith("."):
            report.staging_leftovers.append(key)
        elif match := PART_NAME.match(path.name):
            parts_seen[match["guid"]][key] = path
        elif match := MANIFEST_NAME.match(path.name):
            manifests[match["guid"]].append(path)
        else:
            report.problems.append(f"I3: unexpected file under a final name: {key}")
    for guid, paths in manifests.items():
        report.manifests += 1
        if len(paths) > 1:
            report.problems.append(f"I4: {len(paths)} manifests for {guid}: {paths}")
        referenced = _manifest_check(export_dir, paths[0], queries.get(guid), report)
        strays = sorted(set(parts_seen.pop(guid, {})) - referenced)
        if strays:
            report.problems.append(f"I4: parts not in {guid}'s manifest are published: {_some(strays)}")
    for guid, orphans in parts_seen.items():
        report.problems.append(f"I3: parts of {guid} under final names with no manifest: {_some(orphans)}")
    for row in queries.values():
        if row.status == "Completed" and row.guid not in manifests:
            report.problems.append(f"I3: Completed query {row.guid} has no manifest in the export dir")
    return report


def _some(keys: Any) -> str:
    """A few keys of a long list, for a readable failure message."""
    keys = sorted(keys)
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return ", ".join(keys[:3]) + more


def _manifest_check(
    export_dir: Path, manifest_path: Path, row: QueryRow | None, report: ExportsReport
) -> set[str]:
    """Check one manifest and its parts; returns the keys of the parts it lists."""
    key = manifest_path.relative_to(export_dir).as_posix()
    manifest = json.loads(manifest_path.read_bytes())
    directory = manifest_path.parent
    listed = {(directory / part["name"]).relative_to(export_dir).as_posix() for part in manifest["parts"]}
    epochs = {PART_NAME.match(part["name"])["epoch"] for part in manifest["parts"]}  # type: ignore[index]
    if len(epochs) != 1:
        report.problems.append(f"I4: {key} lists parts of {len(epochs)} attempts: {sorted(epochs)}")
    for part in manifest["parts"]:
        report.parts += 1
        problem = _part_problem(directory / part["name"], part)
        if problem:
            report.problems.append(f"I3: {part['name']}: {problem}")
    if sum(part["rows"] for part in manifest["parts"]) != manifest["rows"]:
        report.problems.append(f"I3: {key}: the parts' rows do not add up to the manifest's")
    if row is None or row.status != "Completed":
        state = "unknown" if row is None else row.status
        report.problems.append(f"I4: a result is published for a query that is {state}: {key}")
    elif row.manifest_path != key or [f["path"] for f in row.files] != sorted(listed):
        report.problems.append(f"I4: {key} is not the result the database records for {row.guid}")
    elif [f["sha256"] for f in row.files] != [part["sha256"] for part in manifest["parts"]]:
        report.problems.append(f"I4: {key}: the database's checksums differ from the manifest's")
    return listed


def _part_problem(path: Path, entry: dict[str, Any]) -> str | None:
    """Why a part does not match its manifest entry, or None."""
    if not path.is_file():
        return "listed in the manifest but missing"
    content = path.read_bytes()
    if len(content) != entry["compressed_bytes"]:
        return f"size {len(content)}, manifest says {entry['compressed_bytes']}"
    if hashlib.sha256(content).hexdigest() != entry["sha256"]:
        return "sha256 differs from the manifest's"
    try:
        text = gzip.decompress(content)
    except (OSError, EOFError) as exc:
        return f"not a complete gzip file: {exc}"
    if len(text) != entry["bytes"]:
        return f"{len(text)} uncompressed bytes, manifest says {entry['bytes']}"
    rows = csv_records(text)
    if rows != entry["rows"]:
        return f"{rows} rows, manifest says {entry['rows']}"
    return None


def csv_records(text: bytes) -> int:
    """Data records of a CSV file with a header (quoted fields may hold newlines), read by Arrow's parser."""
    names = next(csv.reader([text.split(b"\n", 1)[0].decode("utf-8")]))
    table = pa_csv.read_csv(
        io.BytesIO(text),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
    )
    return int(table.num_rows)
