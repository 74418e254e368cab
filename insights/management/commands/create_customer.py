"""`manage.py create_customer NAME [--key KEY] [--api-key] [--max-concurrent N]`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify

from insights.models import Customer
from insights.services import api_key_create, customer_create

API_KEY_NAME = "create_customer"


class Command(BaseCommand):
    help = (
        "Create a customer (or reuse the one with that key) and optionally an API key. With --api-key the "
        "last line of output is the raw key alone; it is shown this once and stored only as a hash."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Display name, e.g. 'Acme Corp'.")
        parser.add_argument(
            "--key", help="Customer key (the warehouse CustomerId, a slug); defaults to the slugified name."
        )
        parser.add_argument("--api-key", action="store_true", help="Also create an API key and print it.")
        parser.add_argument(
            "--max-concurrent", type=int, help="Pending queries allowed at once (new customers only)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["name"].strip()
        if not name:
            raise CommandError("NAME must not be empty.")
        key: str = options["key"] if options["key"] is not None else slugify(name)
        if not key:
            raise CommandError(f"Cannot derive a key from {name!r}; pass --key.")
        customer = self._customer(key=key, name=name, max_concurrent=options["max_concurrent"])
        if not customer.is_active:
            self.stderr.write(
                f"Customer {customer.key!r} is inactive: its API keys are refused until reactivated."
            )
        if options["api_key"]:
            api_key, raw = api_key_create(customer=customer, name=API_KEY_NAME)
            self.stdout.write(
                f"API key {api_key.display_prefix} created; it is shown only now and stored as a hash:"
            )
            self.stdout.write(raw)

    def _customer(self, *, key: str, name: str, max_concurrent: int | None) -> Customer:
        existing = Customer.objects.filter(key=key).first()
        if existing is not None:
            self.stdout.write(f"Customer {existing.key!r} exists ({existing.name}); reusing it unchanged.")
            return existing
        try:
            customer = customer_create(key=key, name=name, max_concurrent_queries=max_concurrent)
        except ValidationError as exc:
            raise CommandError(_validation_text(exc)) from None
        self.stdout.write(
            f"Created customer {customer.key!r} ({customer.name}), "
            f"max {customer.max_concurrent_queries} concurrent queries."
        )
        return customer


def _validation_text(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
    return " ".join(exc.messages)
