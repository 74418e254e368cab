"""The publication journal: what a run is about to place at its destination, so that a run that dies between
placing its files and recording `Completed` leaves a result that is either finished or removed, never a
second one beside the next attempt's (invariant I4).

A run writes the journal (fenced by its attempt) just before the first file gets its final name; the query is
not claimed again while a journal is open. The reaper settles a journal left by a dead run: when the manifest
(placed last) and every part are in place, the publication finished and the query is Completed with those
files; otherwise whatever of it was placed is deleted, and the query is run again like any dead run.
"""

from __future__ import annotations

import logging
from typing import Any

from exports.errors import ObjectNotFound
from exports.storage.base import Storage
from insights.destinations import destination_storage
from insights.models import Destination

logger = logging.getLogger(__name__)


def journal_build(
    *, destination_id: int | None, files: list[dict[str, Any]], manifest_path: str, summary: str = ""
) -> dict[str, Any]:
    """The journal of a publication: its destination (None: local storage), its parts (path, size, rows,
    bytes, sha256, in order), its manifest key and the result's summary (JSON text: a JSON column may reorder
    an object's keys)."""
    return {
        "destination_id": destination_id,
        "files": files,
        "manifest_path": manifest_path,
        "summary": summary,
    }


def journal_settle(journal: dict[str, Any]) -> bool:
    """True when the journal's publication is complete at its destination; otherwise delete whatever of it was
    placed and return False. Raises StorageError when the destination cannot tell (try again later)."""
    destination = None
    if journal["destination_id"] is not None:
        destination = Destination.objects.filter(pk=journal["destination_id"]).first()
    with destination_storage(destination) as storage:
        if _complete(storage, journal):
            return True
        keys = [entry["path"] for entry in journal["files"]] + [journal["manifest_path"]]
        storage.delete(keys)
        logger.info("rolled back an interrupted publication of %d file(s)", len(keys))
        return False


def _complete(storage: Storage, journal: dict[str, Any]) -> bool:
    try:
        storage.stat(journal["manifest_path"])
        return all(storage.stat(entry["path"]).size == entry["size"] for entry in journal["files"])
    except ObjectNotFound:
        return False
