"""The query domain: catalog, validation, compilation, query requests, services, tasks, API, admin."""
