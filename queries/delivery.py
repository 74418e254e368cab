"""Where a customer's results go and are read back from (docs/DESIGN.md §5)."""

from __future__ import annotations

import shutil
from pathlib import Path

from exports.storage.base import Storage
from insights.destinations import destination_default, destination_storage
from insights.models import Destination
from queries.models import QueryRequest, QueryStatus


def query_destination(query: QueryRequest) -> Destination | None:
    """Where a run publishes: the destination the query was created for (a schedule's, schedules.runs), else
    the customer's default (None: this server's local export directory)."""
    if query.destination_id is not None:
        return query.destination
    return destination_default(query.customer)


def query_storage(query: QueryRequest) -> Storage:
    """The storage holding a finished query's files."""
    return destination_storage(query.destination)


def result_redeliver(*, query: QueryRequest, destination: Destination | None, workdir: Path) -> list[str]:
    """Copy a finished result (parts and manifest) to another destination without running the query again.

    The copy is published all or nothing like a first delivery; the query keeps pointing at its original
    files. Returns the keys written. Raises StorageError.
    """
    if query.status != QueryStatus.COMPLETED:
        raise ValueError(f"query {query.guid} has no result to redeliver (status {query.status})")
    workdir.mkdir(parents=True, exist_ok=True)
    local_files = []
    try:
        with query_storage(query) as source, destination_storage(destination) as target:
            for entry in query.files:
                path = workdir / entry["path"].rsplit("/", 1)[-1]
                with source.open(entry["path"]) as stream, path.open("wb") as out:
                    shutil.copyfileobj(stream, out, 1 << 20)
                local_files.append((path, entry["path"]))
            with source.open(query.manifest_path) as stream:
                manifest = stream.read()
            target.publish(local_files, (manifest, query.manifest_path))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return [key for _, key in local_files] + [query.manifest_path]
