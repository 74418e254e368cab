"""Loading data into the warehouse: events files read and checked against the catalog, and demo data.

- `events_file`: the entry point, `events_file_read`: which files we read (`FILE_KINDS`), and one file read
  whole into the warehouse's table, or refused with a `LoadError`;
- `csv_reader`, `ndjson_reader`, `parquet_reader`: a file's columns as read, one module per format;
- `raw`: what a reader hands the checks;
- `conversion`: columns to the catalog's types (timestamps as `queries.timestamps` reads them);
- `checks`: required fields, known events, no field of another event; the first problem, counted;
- `problems`: `Problem` and `LoadError`;
- `warehouse`: the warehouse opened for loading (`warehouse_loader`), its schema, whether it holds events;
- `demo`: the deterministic demo-session generator.

Empty values: CSV cannot tell an empty string from a missing value, so an empty CSV cell is NULL. NDJSON and
Parquet keep an empty STRING as an empty string; for every other type an empty string is NULL.
"""

from queries.ingest.checks import REQUIRED_FIELDS
from queries.ingest.demo import (
    DEFAULT_DAYS,
    DEFAULT_START,
    DEMO_CUSTOMER_KEYS,
    SEED_FLOW_ID,
    DemoCustomer,
    DemoFlow,
    demo_batches,
    demo_customer_keys,
    demo_customers,
    demo_table,
)
from queries.ingest.events_file import FILE_KINDS, events_file_read, file_kind
from queries.ingest.problems import LoadError, Problem
from queries.ingest.warehouse import warehouse_has_events, warehouse_loader, warehouse_schema

__all__ = [
    "DEFAULT_DAYS",
    "DEFAULT_START",
    "DEMO_CUSTOMER_KEYS",
    "FILE_KINDS",
    "REQUIRED_FIELDS",
    "SEED_FLOW_ID",
    "DemoCustomer",
    "DemoFlow",
    "LoadError",
    "Problem",
    "demo_batches",
    "demo_customer_keys",
    "demo_customers",
    "demo_table",
    "events_file_read",
    "file_kind",
    "warehouse_has_events",
    "warehouse_loader",
    "warehouse_schema",
]
