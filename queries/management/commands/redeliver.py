"""`manage.py redeliver GUID [--to DESTINATION]`: copy a finished result to another destination."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from exports.errors import StorageError
from insights.destinations import destination_default
from insights.models import Destination
from queries.delivery import result_redeliver
from queries.models import QueryRequest


class Command(BaseCommand):
    help = "Copy a finished query's files and manifest to another destination, without running it again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("guid")
        parser.add_argument(
            "--to",
            dest="destination",
            help="Destination name of the query's customer (default: its default destination; 'local' for "
            "this server's export directory).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            query = QueryRequest.objects.select_related("customer", "destination").get(guid=options["guid"])
        except QueryRequest.DoesNotExist:
            raise CommandError(f"no query with guid {options['guid']!r}") from None
        destination = self._destination(query, options["destination"])
        workdir = Path(settings.VAR_DIR) / "work" / f"redeliver-{query.guid}"
        try:
            keys = result_redeliver(query=query, destination=destination, workdir=workdir)
        except (ValueError, StorageError) as error:
            raise CommandError(str(error)) from None
        where = destination or "local storage"
        self.stdout.write(f"redelivered {len(keys)} file(s) of {query.guid} to {where}")

    def _destination(self, query: QueryRequest, name: str | None) -> Destination | None:
        if name is None:
            return destination_default(query.customer)
        if name == "local":
            return None
        try:
            return query.customer.destinations.get(name=name)
        except Destination.DoesNotExist:
            names = ", ".join(query.customer.destinations.values_list("name", flat=True)) or "none"
            raise CommandError(
                f"customer {query.customer.key} has no destination {name!r} (it has: {names})"
            ) from None
