"""Insights settings. Every value is read from the environment here, once; see .env.example."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from insights.env import broker_url, env_bool, env_int, env_list, env_str, public_url
from insights.failpoints import failpoints_parse
from insights.logs import log_format_parse, log_level_parse, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("INSIGHTS_VAR_DIR", str(BASE_DIR / "var")))

# Production (INSIGHTS_PRODUCTION=1) has no default secret; development gets a fixed, clearly insecure one.
PRODUCTION = env_bool("INSIGHTS_PRODUCTION", False)
DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", None if PRODUCTION else "insecure-development-key-do-not-deploy")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", [] if PRODUCTION else ["*"])
# The service's address as customers reach it (https://insights.example.com, or with a path prefix behind a proxy):
# links written outside a request (webhook events, the admin's export object) are absolute with it. Unset: those
# links are the API's path, and the receiver knows the host.
PUBLIC_URL = public_url(env_str("INSIGHTS_PUBLIC_URL", ""))

INSTALLED_APPS = [
    "queries.admin_apps.InsightsAdminConfig",  # django.contrib.admin, with the Insights site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "exports",
    "insights",
    "queries",
    "webhooks",
    "schedules",
]

MIDDLEWARE = [
    "insights.middleware.head_without_body",
    "insights.request_ids.request_ids",  # X-Request-ID, and the id on every log line of the request
    "insights.middleware.health_probes",  # before host validation and the HTTPS redirect
    "insights.metrics.http_metrics",  # after the probes and /metrics: only the service's own requests
    "insights.middleware.chunked_body",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # the admin's static files, with no separate web server
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "insights.urls"
WSGI_APPLICATION = "insights.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Metadata database: a SQLite file unless DATABASE_URL names another (PostgreSQL in production).
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'insights.sqlite3'}"), conn_max_age=60
    )
}
METADATA_IS_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
if METADATA_IS_SQLITE:
    # IMMEDIATE transactions take SQLite's write lock at BEGIN, so the slot check-and-insert is serialised.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Encrypts destination credentials at rest (a Fernet key). Required in production and with any shared metadata
# database; the embedded default (SQLite) generates a random key once, in $INSIGHTS_VAR_DIR/secrets.key
# (insights.secrets), so no key is ever derived from something in the source.
SECRETS_KEY = env_str("INSIGHTS_SECRETS_KEY", "")
if not SECRETS_KEY and (PRODUCTION or not METADATA_IS_SQLITE):
    raise ImproperlyConfigured(
        "INSIGHTS_SECRETS_KEY must be set (a Fernet key: python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())') when INSIGHTS_PRODUCTION=1 or DATABASE_URL is not SQLite"
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

# HTTPS hardening: on in production (INSIGHTS_PRODUCTION=1), where TLS ends at a proxy in front of gunicorn.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SECURE_PROXY_SSL", PRODUCTION) else None
)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
X_FRAME_OPTIONS = "DENY"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# Beside the code, not in the var dir: the image collects them at build time, and its var dir is a volume.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# The warehouse holding the events (DuckDB file by default, or postgresql://..., or sc://host:15002: Spark).
WAREHOUSE_URL = env_str("WAREHOUSE_URL", f"duckdb:///{VAR_DIR / 'warehouse.duckdb'}")
# Spark only: the Parquet lake's root, as the Spark cluster sees it (a path, or s3a://bucket/prefix).
WAREHOUSE_LAKE_PATH = env_str("WAREHOUSE_LAKE_PATH", str(VAR_DIR / "lake"))
WAREHOUSE_MEMORY_LIMIT = env_str("WAREHOUSE_MEMORY_LIMIT", "1GB")
WAREHOUSE_TEMP_DIR = env_str("WAREHOUSE_TEMP_DIR", str(VAR_DIR / "warehouse-tmp"))

# Query limits (defaults; per-customer values live on the customer).
QUERY_MAX_WINDOW_DAYS = env_int("QUERY_MAX_WINDOW_DAYS", 31, minimum=1)
# A query running longer is stopped and ends Canceled; Celery's soft and hard limits are a backstop above it.
QUERY_TIME_LIMIT_SECONDS = env_int("QUERY_TIME_LIMIT_SECONDS", 3600, minimum=1)
# A running query's lease; its worker renews it every second. Once it expires the reaper (every
# REAPER_INTERVAL_SECONDS) runs the query again, up to QUERY_MAX_ATTEMPTS attempts in all.
QUERY_LEASE_SECONDS = env_int("QUERY_LEASE_SECONDS", 30, minimum=2)
QUERY_MAX_ATTEMPTS = env_int("QUERY_MAX_ATTEMPTS", 3, minimum=1)
REAPER_INTERVAL_SECONDS = env_int("REAPER_INTERVAL_SECONDS", 30, minimum=1)
# A Pending query no worker has claimed after this long (its message was lost, e.g. a broker restart) is
# enqueued again.
QUERY_REQUEUE_AFTER_SECONDS = env_int("QUERY_REQUEUE_AFTER_SECONDS", 300, minimum=1)

# Preview and summary (POST /dwh/Q/preview, POST /dwh/summary): answered at once, so bounded. A longer one
# is stopped (422: submit it as a query); a customer may ask this many a minute (then 429).
PREVIEW_TIME_LIMIT_SECONDS = env_int("PREVIEW_TIME_LIMIT_SECONDS", 10, minimum=1)
PREVIEW_PER_MINUTE = env_int("PREVIEW_PER_MINUTE", 60, minimum=1)

# Dry runs (POST /dwh/Q?dry_run=true, queries.quotes): the rows are counted exactly when the warehouse answers
# within this many seconds, else from a sample of the window, else from the engine's statistics; a customer
# may ask this many a minute (then 429). Without recorded runs yet, seconds are estimated at this throughput.
QUOTE_TIME_LIMIT_SECONDS = env_int("QUOTE_TIME_LIMIT_SECONDS", 2, minimum=1)
QUOTE_PER_MINUTE = env_int("QUOTE_PER_MINUTE", 120, minimum=1)
QUOTE_DEFAULT_ROWS_PER_SECOND = env_int("QUOTE_DEFAULT_ROWS_PER_SECOND", 200_000, minimum=1)
# A dry run's warehouse engine stays open this long for the next one (opening DuckDB costs more than counting a
# customer's day); an idle DuckDB engine holds the file's shared lock that long. 0: one engine per dry run.
QUOTE_ENGINE_IDLE_SECONDS = env_int("QUOTE_ENGINE_IDLE_SECONDS", 2, minimum=0)
# A worker process keeps its warehouse engine open this long for its next query (opening DuckDB costs more than
# exporting a small query); an idle DuckDB engine holds the file's shared lock that long. 0: one per query.
WORKER_ENGINE_IDLE_SECONDS = env_int("WORKER_ENGINE_IDLE_SECONDS", 2, minimum=0)
# A loader (load_events, seed_demo) waits this long for a DuckDB warehouse file other processes hold.
WAREHOUSE_LOCK_WAIT_SECONDS = env_int("WAREHOUSE_LOCK_WAIT_SECONDS", 30, minimum=0)
# A POST repeating an Idempotency-Key (with the same body) this long after the first gets the same query.
IDEMPOTENCY_KEY_HOURS = env_int("IDEMPOTENCY_KEY_HOURS", 24, minimum=1)
# POST /dwh/Q?wait=N holds its answer (and a web thread) at most this many seconds.
QUERY_WAIT_MAX_SECONDS = env_int("QUERY_WAIT_MAX_SECONDS", 30, minimum=0, maximum=30)

# Exports.
EXPORT_PART_BYTES = env_int("EXPORT_PART_BYTES", 1_000_000_000, minimum=1024)
# Finished parts that may wait on local disk for their upload while the next one is written (at least 1).
EXPORT_PARTS_IN_FLIGHT = env_int("EXPORT_PARTS_IN_FLIGHT", 2, minimum=1)
# One query, many workers: an export of more rows than this is cut by TimeStamp into slices that workers write
# at once (0: never cut), into at most EXPORT_MAX_SLICES slices.
EXPORT_SPLIT_ROWS = env_int("EXPORT_SPLIT_ROWS", 5_000_000, minimum=0)
EXPORT_MAX_SLICES = env_int("EXPORT_MAX_SLICES", 16, minimum=1, maximum=1024)
EXPORT_LOCAL_DIR = Path(env_str("EXPORT_LOCAL_DIR", str(VAR_DIR / "exports")))
EXPORT_GZIP_LEVEL = env_int("EXPORT_GZIP_LEVEL", 1, minimum=0, maximum=3)  # ISA-L levels (zlib: the same)
# Delivery: transient storage failures are retried this many times, with exponential backoff from the base.
DELIVERY_RETRIES = env_int("DELIVERY_RETRIES", 3, minimum=0)
DELIVERY_BACKOFF_SECONDS = env_int("DELIVERY_BACKOFF_SECONDS", 2, minimum=0)
# Presigned download URLs (S3) stay valid this long.
PRESIGNED_URL_SECONDS = env_int("PRESIGNED_URL_SECONDS", 3600, minimum=60)

# Webhooks (webhooks/): one signed POST per state change. A delivery that times out, cannot connect or gets a 5xx
# is tried again after WEBHOOK_BACKOFF_SECONDS, doubling up to WEBHOOK_BACKOFF_MAX_SECONDS, for
# WEBHOOK_RETRY_HOURS after the event. Receivers on loopback, private, link-local or metadata addresses are refused
# unless WEBHOOK_ALLOW_PRIVATE (tests, a receiver inside the deployment). Beat runs the sweep every
# WEBHOOK_SWEEP_SECONDS (far retries, lost messages, query.expiring); events are kept WEBHOOK_LOG_DAYS.
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
WEBHOOK_CONNECT_TIMEOUT_SECONDS = env_int("WEBHOOK_CONNECT_TIMEOUT_SECONDS", 5, minimum=1, maximum=60)
WEBHOOK_READ_TIMEOUT_SECONDS = env_int("WEBHOOK_READ_TIMEOUT_SECONDS", 10, minimum=1, maximum=300)
WEBHOOK_BACKOFF_SECONDS = env_int("WEBHOOK_BACKOFF_SECONDS", 30, minimum=1)
WEBHOOK_BACKOFF_MAX_SECONDS = env_int("WEBHOOK_BACKOFF_MAX_SECONDS", 3600, minimum=1)
WEBHOOK_RETRY_HOURS = env_int("WEBHOOK_RETRY_HOURS", 24, minimum=1)
WEBHOOK_SWEEP_SECONDS = env_int("WEBHOOK_SWEEP_SECONDS", 60, minimum=1)
WEBHOOK_LOG_DAYS = env_int("WEBHOOK_LOG_DAYS", 30, minimum=1)

# Schedules (schedules/): beat's tick every SCHEDULE_TICK_SECONDS claims the due times, sends the runs (a run at the
# customer's limit waits for the next tick) and settles the ended ones. SCHEDULE_MAX_FAILURES failed runs in a row
# pause a schedule; due times missed for longer than SCHEDULE_CATCH_UP_HOURS (beat down) are skipped, not run.
SCHEDULE_TICK_SECONDS = env_int("SCHEDULE_TICK_SECONDS", 60, minimum=1)
SCHEDULE_MAX_FAILURES = env_int("SCHEDULE_MAX_FAILURES", 3, minimum=1)
SCHEDULE_CATCH_UP_HOURS = env_int("SCHEDULE_CATCH_UP_HOURS", 24, minimum=1)
SCHEDULE_MAX_PER_CUSTOMER = env_int("SCHEDULE_MAX_PER_CUSTOMER", 100, minimum=1)

# Celery: Redis in production; a server-less filesystem transport for the embedded default.
CELERY_BROKER_URL = broker_url(env_str("CELERY_BROKER_URL", "filesystem://"))
if os.environ.get("CELERY_BROKER_URL"):  # Celery reads the variable itself, ahead of these settings
    os.environ["CELERY_BROKER_URL"] = CELERY_BROKER_URL
_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "control_folder": str(_BROKER_DIR / "control"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "store_processed": False,
        # The transport takes one message per poll: polled every second, a queue of upkeep tasks would hold a
        # query's run back for many seconds.
        "polling_interval": 0.1,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    # Redis redelivers an unacknowledged task after the visibility timeout: it must outlast the hard limit,
    # or a long query would start twice.
    else {
        "visibility_timeout": max(
            env_int("CELERY_VISIBILITY_TIMEOUT", 7200, minimum=60), QUERY_TIME_LIMIT_SECONDS + 600
        )
    }
)
CELERY_TASK_SOFT_TIME_LIMIT = QUERY_TIME_LIMIT_SECONDS + 60
CELERY_TASK_TIME_LIMIT = QUERY_TIME_LIMIT_SECONDS + 180
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# How long the pool waits for a dead pool process's last result before declaring its task lost (Celery's
# default is 10 s, during which that process's slot takes no task, the reaper's included). Tasks here are
# safe to run twice, so a short wait costs nothing.
CELERY_WORKER_LOST_WAIT = 2.0
CELERY_TIMEZONE = "UTC"
# Celery keeps its hands off the root logger (insights.celery applies LOGGING instead).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Celery's PersistentScheduler, which also records each tick in the cache for the admin's dashboard.
CELERY_BEAT_SCHEDULER = "insights.beat:TickRecordingScheduler"
CELERY_BEAT_SCHEDULE = {
    "reap-leases": {"task": "queries.reap_leases", "schedule": float(REAPER_INTERVAL_SECONDS)},
    "settle-reuses": {"task": "queries.settle_reuses", "schedule": float(REAPER_INTERVAL_SECONDS)},
    "expire-results": {"task": "queries.expire_results", "schedule": 3600.0},
    "sweep-uploads": {"task": "queries.sweep_uploads", "schedule": 6 * 3600.0},
    "delete-expired-tokens": {"task": "insights.delete_expired_tokens", "schedule": 3600.0},
    "webhook-sweep": {"task": "webhooks.sweep", "schedule": float(WEBHOOK_SWEEP_SECONDS)},
    "webhook-query-events": {"task": "queries.webhook_events", "schedule": float(WEBHOOK_SWEEP_SECONDS)},
    "schedules-tick": {"task": "schedules.tick", "schedule": float(SCHEDULE_TICK_SECONDS)},
}

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["insights.parsers.LimitedJSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["insights.authentication.BearerAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["insights.authentication.IsCustomer"],
    "EXCEPTION_HANDLER": "insights.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    # Bodies spelled like the documented ones ({"code": 400, "message": ...}): ", " and ": " separators.
    "COMPACT_JSON": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Insights API",
    "DESCRIPTION": (
        "Asynchronous queries over call, message and flow events; results as files (CSV, gzipped by default; "
        "xlsx, Parquet, NDJSON) on SFTP, S3 or this server.\n\n"
        "Every call but `POST /_rest/v4/authenticate` needs `Authorization: Bearer <API key or token>`. Errors are "
        '`{"code": <status>, "message": <string or object>}`, except 401 (`{"code": 401, "error": '
        '"Unauthorized"}`) and an unknown guid (404, `[{"message": ..., "code": 404}]`). A method a path does not '
        "support is a 405 envelope with an `Allow` header."
    ),
    "VERSION": "4",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's files come from the drf-spectacular-sidecar package: the docs page needs no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "TAGS": [
        {"name": "queries", "description": "Submit queries, follow them, collect their results."},
        {
            "name": "exports",
            "description": "List, read, fetch and delete a customer's exports (its queries).",
        },
        {"name": "auth", "description": "Bearer tokens."},
        {"name": "schedules", "description": "Recurring exports: a query over a moving window."},
        {"name": "webhooks", "description": "Signed POSTs to the customer's endpoint on every state change."},
    ],
    # Not drf-spectacular's enum hook: the hand-written enums stay inline, where a reader looks for them.
    "POSTPROCESSING_HOOKS": ["queries.api_schema.schema_complete"],
}

# Abuse limits.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 65_536, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
AUTH_FAILURES_PER_MINUTE = env_int("AUTH_FAILURES_PER_MINUTE", 30, minimum=1)
# How long a process reuses a credential it resolved: revocation takes effect within this (0: every request).
AUTH_CACHE_SECONDS = env_int("AUTH_CACHE_SECONDS", 1, minimum=0, maximum=60)
TRUST_X_FORWARDED_FOR = env_bool("TRUST_X_FORWARDED_FOR", False)  # only behind a proxy that sets it

# The shared cache (failed-authentication counts): redis://... (the broker's Redis by default when the broker
# is Redis), or file:///path, a directory every process of one machine shares (default: $INSIGHTS_VAR_DIR/cache).
CACHE_URL = env_str(
    "CACHE_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else f"file://{VAR_DIR / 'cache'}"
)
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            # A cache that does not answer is skipped quickly (the throttle fails open), never waited on.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
elif CACHE_URL.startswith("file://"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": CACHE_URL.removeprefix("file://"),
        }
    }
else:
    raise ImproperlyConfigured(
        f"CACHE_URL must be redis://..., rediss://... or file:///path, not {CACHE_URL!r}"
    )

# Prometheus metrics (insights.metrics). Every web and worker process writes its samples into files in this
# directory and GET /metrics merges them all, so web and workers must share it (compose: the var volume).
# prometheus-client itself reads the variable: it is set here, for this process and those it starts (make run);
# a process started with another INSIGHTS_VAR_DIR must be given its own PROMETHEUS_MULTIPROC_DIR too.
PROMETHEUS_MULTIPROC_DIR = str(Path(env_str("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics"))).absolute())
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
# GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`; unset, it answers only loopback clients that
# came through no proxy.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters (a long random string)")
# Gauges read at scrape time, once per scrape (dotted paths of prometheus-client collectors).
METRICS_COLLECTORS = ["queries.metrics.OperationsCollector"]

# Tests only: pause a process at a named place (insights.failpoints); empty in any deployment.
FAILPOINTS = failpoints_parse(env_str("INSIGHTS_FAILPOINTS", ""))

# Logs: one JSON object per line on stderr from every process (web, worker, beat), or LOG_FORMAT=plain for a
# developer's terminal; gunicorn.conf.py and insights.celery apply this same LOGGING (insights.logs).
LOG_LEVEL = log_level_parse(env_str("LOG_LEVEL", "INFO"))
LOG_FORMAT = log_format_parse(env_str("LOG_FORMAT", "json"))
LOGGING_CONFIG = "insights.logs.logging_configure"
LOGGING = logging_config(level=LOG_LEVEL, log_format=LOG_FORMAT)
