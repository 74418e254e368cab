"""`manage.py seed_demo --customers N --sessions M [--seed S] [--days D] [--start DATE] ...`: demo data."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug

from exports.errors import WarehouseError
from queries.ingest import (
    DEFAULT_DAYS,
    DEFAULT_START,
    demo_batches,
    demo_customer_keys,
    demo_customers,
    warehouse_has_events,
    warehouse_loader,
)

DEFAULT_CUSTOMERS = 3


class Command(BaseCommand):
    help = (
        "Generate realistic demo sessions (calls, key presses, messages, flow exits) and load them into the "
        "warehouse. The same arguments always give the same rows. Defaults cover 2019-11-25..26, the window "
        "of the API document's examples."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--customers", type=int, help=f"How many demo customers (default {DEFAULT_CUSTOMERS})."
        )
        parser.add_argument("--sessions", type=int, required=True, help="How many sessions in all.")
        parser.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
        parser.add_argument(
            "--days",
            type=int,
            default=DEFAULT_DAYS,
            help=f"Days the sessions spread over (default {DEFAULT_DAYS}).",
        )
        parser.add_argument(
            "--start",
            default=DEFAULT_START.isoformat(),
            metavar="YYYY-MM-DD",
            help=f"First day, UTC (default {DEFAULT_START.isoformat()}).",
        )
        parser.add_argument(
            "--customer-keys",
            metavar="KEY,KEY,...",
            help="Customer keys (the rows' CustomerId) instead of acme, globex, initech, ...",
        )
        parser.add_argument(
            "--create-customers",
            action="store_true",
            help="Also create the customers that do not exist yet in the metadata database.",
        )
        parser.add_argument(
            "--warehouse", metavar="URL", help="Warehouse URL (default: the WAREHOUSE_URL setting)."
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Load nothing when the warehouse already holds events (what `make run` does on each start).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        keys = _customer_keys(options["customers"], options["customer_keys"])
        sessions, days = options["sessions"], options["days"]
        if sessions < 0:
            raise CommandError("--sessions must be 0 or more")
        if days < 1:
            raise CommandError("--days must be 1 or more")
        start = _start_date(options["start"])
        if options["create_customers"]:
            self._customers_create(keys)
        try:
            engine = warehouse_loader(options["warehouse"])
        except ValueError as exc:
            raise CommandError(f"--warehouse: {exc}") from None
        except WarehouseError as exc:
            raise CommandError(f"cannot open the warehouse: {exc}") from None
        if options["if_empty"] and warehouse_has_events(engine):
            engine.close()
            self.stdout.write("the warehouse already holds events: nothing loaded")
            return
        rows = 0
        try:
            # One load per batch keeps memory flat; a failure leaves the batches already loaded in place.
            for batch in demo_batches(
                customers=keys, sessions=sessions, seed=options["seed"], start=start, days=days
            ):
                rows += engine.load(batch)
        except WarehouseError as exc:
            raise CommandError(f"the warehouse refused the demo rows after {rows} rows: {exc}") from None
        finally:
            engine.close()
        self.stdout.write(
            f"loaded {rows} rows: {sessions} sessions of {', '.join(keys)} "
            f"over {days} day{'s' if days != 1 else ''} from {start.isoformat()}"
        )

    def _customers_create(self, keys: tuple[str, ...]) -> None:
        from insights.models import Customer
        from insights.services import customer_create

        for customer in demo_customers(keys):
            if Customer.objects.filter(key=customer.key).exists():
                continue
            try:
                customer_create(key=customer.key, name=customer.name)
            except ValidationError as exc:
                raise CommandError(
                    f"cannot create customer {customer.key!r}: {' '.join(exc.messages)}"
                ) from None
            self.stdout.write(f"created customer {customer.key!r} ({customer.name})")


def _customer_keys(count: int | None, listed: str | None) -> tuple[str, ...]:
    if count is not None and count < 1:
        raise CommandError("--customers must be 1 or more")
    if listed is None:
        return demo_customer_keys(count or DEFAULT_CUSTOMERS)
    keys = tuple(key.strip() for key in listed.split(","))
    for key in keys:
        try:
            validate_slug(key)
        except ValidationError:
            raise CommandError(
                f"--customer-keys: {key!r} is not a valid key (letters, digits, - and _)"
            ) from None
    if len(set(keys)) != len(keys):
        raise CommandError("--customer-keys: each key may appear only once")
    if count is not None and count != len(keys):
        raise CommandError(f"--customers {count} does not match the {len(keys)} keys of --customer-keys")
    return keys


def _start_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--start: {text!r} is not a date (YYYY-MM-DD)") from None
