"""`manage.py load_events PATH [PATH ...] [--warehouse URL]`: load event files into the warehouse."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exports.engines.base import WarehouseEngine
from exports.errors import WarehouseError
from queries.ingest import FILE_KINDS, LoadError, events_file_read, warehouse_loader


class Command(BaseCommand):
    help = (
        "Load CSV (header row), NDJSON (one object per line) or Parquet files of events into the "
        f"warehouse. Files are told apart by name ({', '.join(FILE_KINDS)}); columns are catalog field "
        "names, EventName, TimeStamp and CustomerId required. Each file is checked whole and loaded all or "
        "nothing; the other files still load. Exits non-zero if any file was rejected."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH", help="Event files to load, in order.")
        parser.add_argument(
            "--warehouse", metavar="URL", help="Warehouse URL (default: the WAREHOUSE_URL setting)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        paths: list[str] = options["paths"]
        engine = _engine_open(options["warehouse"])
        try:
            rejected = [path for path in paths if not self._file_load(engine, path)]
        finally:
            engine.close()
        if rejected:
            raise CommandError(f"{len(rejected)} of {len(paths)} files rejected: {', '.join(rejected)}")

    def _file_load(self, engine: WarehouseEngine, path: str) -> bool:
        """Load one file; report the outcome; True when it loaded."""
        try:
            table = events_file_read(path)
            # The whole file goes in one load: the engine commits it all or none of it.
            rows = engine.load(table)
        except LoadError as exc:
            self.stderr.write(f"rejected {path}: {exc}")
            return False
        except WarehouseError as exc:
            self.stderr.write(f"rejected {path}: the warehouse refused it, nothing was loaded: {exc}")
            return False
        self.stdout.write(f"loaded {rows} rows from {path}")
        return True


def _engine_open(url: str | None) -> WarehouseEngine:
    try:
        return warehouse_loader(url)
    except ValueError as exc:
        raise CommandError(f"--warehouse: {exc}") from None
    except WarehouseError as exc:
        raise CommandError(f"cannot open the warehouse: {exc}") from None
