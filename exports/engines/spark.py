"""Spark: the warehouse as a Parquet lake, queried through a Spark Connect server (`sc://host:15002`).

The worker holds a thin client (`pyspark-client`, gRPC); it never starts a JVM. Layout under the lake path
(`WAREHOUSE_LAKE_PATH`: a local path, or an object-store URL the cluster is configured for):

    events/CustomerId=<id>/_event_date=<yyyy-mm-dd>/part-*.parquet   the rows, each with `_row_id`, `_load_id`
    loads/part-*.parquet                                            one row per committed load (the marker)
    schema/part-*.parquet                                           no rows: the columns, as ensure_schema left them

Every query reads by customer and time window, so the lake is partitioned by `CustomerId` and by the UTC day
of `TimeStamp`; the compiler adds the day bound to the window (`Dialect.day_partition`), and Spark reads only
the customer's directories for those days (PartitionFilters in the plan). A CustomerId is a directory name,
so the empty string cannot be told from NULL there: `load` refuses it (no query can ask for it anyway).

Loads are all or nothing by a commit marker, not by moving files: the client cannot rename files in an object
store (it only speaks Spark Connect), and an object store has no atomic directory rename. A load writes its
rows tagged with a fresh random `_load_id`, then appends one row naming that id to `loads/` (one small file,
which appears whole). The `events` view every query reads keeps only rows of committed loads (a broadcast
semi-join on a small table), so a load that fails half way leaves files nobody reads. `_row_id` continues
from the largest `last_row_id` committed. One loader at a time, as with DuckDB (there is no lock).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import grpc
import pyarrow as pa
import pyarrow.compute as pc

from exports.engines import load_table_conform, statement_check
from exports.engines.base import EVENTS_TABLE, ROW_ID, Dialect, Estimate, SessionEngine, Statement
from exports.errors import QueryCanceled, WarehouseError
from exports.schema import Column, ColumnType, arrow_schema

if TYPE_CHECKING:
    from pyspark.sql.connect.session import SparkSession
    from pyspark.sql.types import StructType

DAY_PARTITION = "_event_date"  # the UTC day of TimeStamp: the second partition column
CUSTOMER = "CustomerId"
TIME = "TimeStamp"
LOAD_ID = "_load_id"
_PARTITIONS = (CUSTOMER, DAY_PARTITION)
_LOAD_ROWS = 100_000  # rows per createDataFrame: bounds the gRPC message and the loader's memory
_PING_SECONDS = 5.0
_INTERRUPT_RETRIES = (0.2, 0.5, 1.0, 2.0)  # an interrupt may land before the server registered the operation

SPARK = Dialect(
    name="spark",
    paramstyle="named",
    type_names={
        ColumnType.STRING.value: "STRING",
        ColumnType.INTEGER.value: "BIGINT",
        ColumnType.FLOAT.value: "DOUBLE",
        ColumnType.BOOLEAN.value: "BOOLEAN",
        ColumnType.TIMESTAMP.value: "TIMESTAMP_NTZ",
    },
    day_partition=DAY_PARTITION,
    iso_weekday="DAYOFWEEK_ISO",
    quantile="percentile_approx({column}, {fraction}, 100000)",
)

# Per session: UTC (nothing shifts), "identifiers" in double quotes as the compiler writes them, binary string
# order (UTF8_BINARY: by code point), naive timestamps.
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.ansi.doubleQuotedIdentifiers": "true",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
    "spark.sql.sources.partitionOverwriteMode": "static",
}


def _quiet_client_logs() -> None:
    """The client logs each SQL error with its query context itself: our errors name the kind only."""
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).disabled = True


class SparkEngine(SessionEngine["SparkSession"]):
    """One Spark Connect session over one lake, opened on first use."""

    dialect = SPARK

    def __init__(self, url: str, *, lake_path: str, read_only: bool = True) -> None:
        super().__init__()
        if not url.lower().startswith("sc://"):
            raise ValueError("a Spark warehouse URL starts with sc://")
        if not lake_path:
            raise ValueError("a Spark warehouse needs WAREHOUSE_LAKE_PATH: where its Parquet lake lives")
        self.url = url
        self.lake_path = lake_path.rstrip("/")
        self.read_only = read_only
        self._tag: str | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        read_only: bool,
        memory_limit: str | None,
        temp_directory: str | None,
        lake_path: str | None = None,
    ) -> SparkEngine:
        # memory_limit / temp_directory bound an embedded engine; the cluster's own settings govern Spark.
        return cls(url, lake_path=lake_path or "", read_only=read_only)

    def _path(self, name: str) -> str:
        return f"{self.lake_path}/{name}"

    # -- connection ------------------------------------------------------------------------------------------

    def _connect(self) -> SparkSession:
        from pyspark.sql.connect.client.retries import DefaultPolicy
        from pyspark.sql.connect.session import SparkSession

        _quiet_client_logs()
        try:
            spark = SparkSession.builder.remote(self.url).create()  # no call to the server yet
            # A lost server is the caller's retry to make (the task retries), not minutes of backoff here.
            spark.client.set_retry_policies([DefaultPolicy(max_retries=3, max_backoff=1000)])
            for key, value in SESSION_CONF.items():
                spark.conf.set(key, value)
        except Exception as exc:
            raise _warehouse_error(exc) from exc
        return spark

    def _usable(self, conn: SparkSession) -> bool:
        return not conn.is_stopped

    def _interrupt(self, conn: SparkSession) -> None:
        tag = self._tag
        if tag is None:
            return
        threading.Thread(target=self._interrupt_tag, args=(conn, tag), daemon=True).start()

    def _interrupt_tag(self, conn: SparkSession, tag: str) -> None:
        """Interrupt the tagged operation, and again while execute() still runs it: an interrupt can arrive
        before the server has registered the operation (on a loaded machine, seconds later), and is then lost.
        Ends when execute() lets go of the tag."""
        pauses = iter(_INTERRUPT_RETRIES)
        while self._tag == tag:
            with contextlib.suppress(Exception):
                conn.interruptTag(tag)
            threading.Event().wait(next(pauses, _INTERRUPT_RETRIES[-1]))

    def _release(self, conn: SparkSession) -> None:
        with contextlib.suppress(Exception):  # the server may be gone: nothing to release then
            conn.stop()

    def ping(self) -> None:
        """`SELECT 1` on a new session, within a few seconds (a hung server fails the probe too)."""
        outcome: list[BaseException | None] = []

        def probe() -> None:
            engine = SparkEngine(self.url, lake_path=self.lake_path)
            try:
                engine._connection().sql("SELECT 1").collect()
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)
            finally:
                engine.close()

        thread = threading.Thread(target=probe, daemon=True)
        thread.start()
        thread.join(_PING_SECONDS)
        if not outcome:
            raise WarehouseError("the warehouse did not answer in time", retryable=True)
        if outcome[0] is not None:
            error = outcome[0]
            raise error if isinstance(error, WarehouseError) else _warehouse_error(error)

    # -- reading ---------------------------------------------------------------------------------------------

    def execute(self, statement: Statement, *, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Stream the result as the server sends it (Arrow batches of a few MB), re-cut to `batch_rows`.

        The statement runs under a tag of its own, which cancel() interrupts; so does anything raised into the
        read from outside the client (Celery's soft time limit), which then passes through as itself. It runs
        as a subquery, so only a query can run here (Spark runs a command such as INSERT the moment it is
        parsed).
        """
        statement_check(statement, self.dialect.name)
        schema = arrow_schema(statement.columns)
        spark = self._connection()
        tag = f"insights-{uuid.uuid4().hex}"
        try:
            self._tag = tag
            spark.addTag(tag)
            try:
                # After the tag is set: a cancel() before it found no tag to interrupt, and is caught here.
                self._raise_if_canceled()
                for table in self._tables(spark, statement):
                    for batch in table.to_batches(max_chunksize=batch_rows):
                        self._raise_if_canceled()
                        yield _conform(batch, schema)
            except BaseException as exc:
                # The caller stopped reading (GeneratorExit), or something outside the client raised in here (a
                # time limit's signal handler): stop the server's work too, or it holds the executors' cores.
                if not _client_error(exc):
                    with contextlib.suppress(Exception):
                        spark.interruptTag(tag)
                raise
            finally:
                self._tag = None
                with contextlib.suppress(Exception):
                    spark.removeTag(tag)
            self._raise_if_canceled()
        except WarehouseError:
            raise
        except Exception as exc:
            if self._canceled.is_set():
                raise QueryCanceled("the query was canceled") from exc
            if not _client_error(exc):
                raise  # not the warehouse's failure: Celery's soft time limit must reach the runner as itself
            raise _warehouse_error(exc) from exc
        finally:
            self._canceled.clear()

    def _tables(self, spark: SparkSession, statement: Statement) -> Iterator[pa.Table]:
        """The statement's rows as the Connect client streams them (`to_table_as_iterator`: one Arrow table
        per server batch, never the whole result)."""
        self._events_view(spark)
        frame = self._query(spark, f"SELECT * FROM ({statement.sql}) AS _insights_query", statement.params)
        plan = frame._plan.to_proto(spark.client)
        for item in spark.client.to_table_as_iterator(plan, {}):
            if isinstance(item, pa.Table):
                yield item

    def _query(self, spark: SparkSession, sql: str, params: Sequence[Any]) -> Any:
        """`spark.sql` with the statement's values bound as `:p1, :p2, ...` (never in the SQL text): a Connect
        DataFrame, whose `_plan` the streaming read needs."""
        args = {f"p{position}": _literal(value) for position, value in enumerate(params, start=1)}
        return spark.sql(sql, args=args)

    def estimate(self, statement: Statement) -> Estimate:
        """The statement's own row count over the partitions it reads (Spark keeps no row statistics for a
        Parquet lake; the count reads only the pruned partitions' filter columns)."""
        statement_check(statement, self.dialect.name)
        spark = self._connection()
        try:
            self._events_view(spark)
            sql = f"SELECT count(*) AS n FROM ({statement.sql}) AS _insights_query"
            ((rows,),) = self._query(spark, sql, statement.params).collect()
        except Exception as exc:
            raise _warehouse_error(exc) from exc
        return Estimate(rows=int(rows), details={"engine": "spark", "exact": True})

    def explain(self, statement: Statement) -> str:
        """Spark's physical plan of the statement (formatted): where partition pruning shows."""
        statement_check(statement, self.dialect.name)
        spark = self._connection()
        try:
            self._events_view(spark)
            frame = self._query(spark, statement.sql, statement.params)
            return str(spark.client.explain_string(frame._plan.to_proto(spark.client), "formatted"))
        except Exception as exc:
            raise _warehouse_error(exc) from exc

    def _events_view(self, spark: SparkSession) -> None:
        """(Re)define the session's `events` view: the committed rows of the lake, with a fresh file listing
        (a view over a file source keeps the listing it was made with)."""
        from pyspark.sql.types import LongType, StructField, StructType

        columns = self._stored_columns(spark)
        if columns is None:
            raise WarehouseError("the warehouse has no events table: load events first")
        events_schema = StructType([*columns.fields, StructField(LOAD_ID, LongType()), _day_field()])
        try:
            rows = spark.read.schema(events_schema).parquet(self._path("events"))
            loads = spark.read.schema(_loads_schema()).parquet(self._path("loads"))
            committed = rows.join(loads.select(LOAD_ID), on=LOAD_ID, how="left_semi")
            view = committed.select(*[name for name in columns.fieldNames()], DAY_PARTITION)
            view.createOrReplaceTempView(EVENTS_TABLE)
        except Exception as exc:
            if not _is_missing_path(exc):
                raise
            spark.createDataFrame([], StructType([*columns.fields, _day_field()])).createOrReplaceTempView(
                EVENTS_TABLE
            )

    def _stored_columns(self, spark: SparkSession) -> StructType | None:
        """The events columns as ensure_schema stored them, `_row_id` included (None: no table yet)."""
        try:
            return spark.read.parquet(self._path("schema")).schema
        except Exception as exc:
            if _is_missing_path(exc):
                return None
            raise

    # -- writing ---------------------------------------------------------------------------------------------

    def ensure_schema(self, columns: Sequence[Column]) -> None:
        """Store the columns (those already stored kept, new ones added) as an empty Parquet dataset: files
        written before a column existed read it as NULL."""
        from pyspark.sql.types import LongType, StructField, StructType

        self._require_writable()
        spark = self._connection()
        try:
            stored = self._stored_columns(spark)
            fields = list(stored.fields) if stored is not None else []
            known = {field.name for field in fields}
            added = [_struct_field(c) for c in columns if c.name not in known]
            if ROW_ID not in known:
                added.append(StructField(ROW_ID, LongType(), nullable=False))
            if stored is not None and not added:
                return
            schema = StructType(fields + added)
            spark.createDataFrame([], schema).coalesce(1).write.mode("overwrite").parquet(
                self._path("schema")
            )
        except Exception as exc:
            raise _warehouse_error(exc) from exc

    def load(self, table: pa.Table) -> int:
        """Append `table` (a subset of the warehouse columns; missing ones are NULL) all or nothing.

        Rows are written under a new `_load_id`, in chunks, then committed by one row in `loads/` (see the
        module docstring); `_row_id` continues from the largest one committed, in the input's order.
        """
        self._require_writable()
        if table.num_rows == 0:
            return 0
        spark = self._connection()
        try:
            stored = self._stored_columns(spark)
            types = {f.name: _arrow_type(f.dataType.simpleString()) for f in stored.fields} if stored else {}
            staged = load_table_conform(table, types)
            _refuse_empty_customer(staged)
            first = self._last_row_id(spark) + 1
            load_id = secrets.randbits(62)
            staged = _with_load_columns(staged, first, load_id)
            for batch in staged.to_batches(max_chunksize=_LOAD_ROWS):
                self._write_rows(spark, pa.Table.from_batches([batch]), types)
            marker = pa.table(
                {
                    LOAD_ID: pa.array([load_id], pa.int64()),
                    "first_row_id": pa.array([first], pa.int64()),
                    "last_row_id": pa.array([first + staged.num_rows - 1], pa.int64()),
                    "rows": pa.array([staged.num_rows], pa.int64()),
                }
            )
            spark.createDataFrame(marker).coalesce(1).write.mode("append").parquet(self._path("loads"))
        except WarehouseError:
            raise
        except Exception as exc:
            raise _warehouse_error(exc) from exc
        return int(staged.num_rows)

    def _last_row_id(self, spark: SparkSession) -> int:
        try:
            loads = spark.read.schema(_loads_schema()).parquet(self._path("loads"))
            ((last,),) = loads.selectExpr("coalesce(max(last_row_id), 0)").collect()
        except Exception as exc:
            if _is_missing_path(exc):
                return 0
            raise
        return int(last)

    def _write_rows(self, spark: SparkSession, chunk: pa.Table, types: dict[str, pa.DataType]) -> None:
        """One chunk into the partitioned rows: timestamps sent as UTC instants and stored naive."""
        from pyspark.sql import functions as F

        frame = spark.createDataFrame(chunk)
        for name in chunk.column_names:
            if pa.types.is_timestamp(chunk.schema.field(name).type):
                frame = frame.withColumn(name, F.col(name).cast("timestamp_ntz"))
        frame = frame.withColumn(DAY_PARTITION, F.to_date(F.col(TIME)))
        frame.sortWithinPartitions(TIME, ROW_ID).write.mode("append").partitionBy(*_PARTITIONS).parquet(
            self._path("events")
        )

    def _require_writable(self) -> None:
        if self.read_only:
            raise WarehouseError("the warehouse is open read-only")


# -- helpers -----------------------------------------------------------------------------------------------


def _day_field() -> Any:
    from pyspark.sql.types import DateType, StructField

    return StructField(DAY_PARTITION, DateType())


def _loads_schema() -> StructType:
    from pyspark.sql.types import LongType, StructField, StructType

    return StructType(
        [StructField(name, LongType()) for name in (LOAD_ID, "first_row_id", "last_row_id", "rows")]
    )


def _struct_field(column: Column) -> Any:
    from pyspark.sql import types

    spark_type = {
        ColumnType.STRING: types.StringType,
        ColumnType.INTEGER: types.LongType,
        ColumnType.FLOAT: types.DoubleType,
        ColumnType.BOOLEAN: types.BooleanType,
        ColumnType.TIMESTAMP: types.TimestampNTZType,
    }[column.type]
    return types.StructField(column.name, spark_type())


_ARROW_BY_SPARK_TYPE: dict[str, pa.DataType] = {
    "string": pa.string(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp_ntz": pa.timestamp("us"),
}


def _arrow_type(spark_type: str) -> pa.DataType:
    return _ARROW_BY_SPARK_TYPE.get(spark_type, pa.string())


def _refuse_empty_customer(table: pa.Table) -> None:
    if CUSTOMER in table.column_names and pc.any(pc.equal(table.column(CUSTOMER), "")).as_py():
        raise WarehouseError("cannot load: an empty CustomerId (the lake keeps customers as directory names)")


def _with_load_columns(table: pa.Table, first: int, load_id: int) -> pa.Table:
    """`table` with `_row_id`, `_load_id` and the partition sources (NULL when absent), timestamps as UTC
    instants (so the client converts nothing by the local time zone)."""
    count = table.num_rows
    for name, arrow in ((CUSTOMER, pa.string()), (TIME, pa.timestamp("us"))):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(count, arrow))
    table = table.append_column(ROW_ID, pa.array(range(first, first + count), pa.int64()))
    table = table.append_column(LOAD_ID, pa.array([load_id] * count, pa.int64()))
    fields = [
        pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _literal(value: Any) -> Any:
    """A bound value as a typed Spark literal: naive datetimes (UTC) are TIMESTAMP_NTZ, never read through
    the client's local time zone."""
    from pyspark.sql.connect.column import Column as ConnectColumn
    from pyspark.sql.connect.expressions import LiteralExpression
    from pyspark.sql.types import TimestampNTZType

    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return ConnectColumn(LiteralExpression(value, TimestampNTZType()))
    if isinstance(value, date | bool | int | float | str) or value is None:
        return value
    raise WarehouseError(f"cannot bind a {type(value).__name__} value")


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """`batch` with the statement's column names and Arrow types, by position."""
    if batch.num_columns != len(schema):
        raise WarehouseError("the warehouse returned another number of columns than the statement's")
    arrays = []
    for column, field in zip(batch.columns, schema, strict=True):
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            column = column.cast(pa.timestamp(column.type.unit))  # an instant in UTC: its naive reading
        arrays.append(column if column.type == field.type else column.cast(field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _client_error(exc: BaseException) -> bool:
    """Whether `exc` comes from the Spark Connect client or what it rides on (gRPC, Arrow, sockets), rather
    than from outside the warehouse (a signal handler's time limit, the caller closing the generator)."""
    from pyspark.errors import PySparkException

    return isinstance(exc, PySparkException | grpc.RpcError | pa.ArrowException | OSError)


def _condition(exc: BaseException) -> str:
    getter = getattr(exc, "getCondition", None)
    try:
        return str(getter() or "") if callable(getter) else ""
    except Exception:
        return ""


def _is_missing_path(exc: BaseException) -> bool:
    return _condition(exc) == "PATH_NOT_FOUND"


def _grpc_code(exc: BaseException) -> grpc.StatusCode | None:
    """The gRPC status of `exc` or of an error in its chain (the client wraps transport errors)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, grpc.RpcError) and callable(getattr(seen, "code", None)):
            return seen.code()
        code = getattr(seen, "_grpc_status_code", None)
        if isinstance(code, grpc.StatusCode):
            return code
        seen = seen.__cause__ or seen.__context__
    return None


_LOST = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
_RESULT_SIZE_SETTING = "spark.driver.maxResultSize"


def _warehouse_error(exc: BaseException) -> WarehouseError:
    """A WarehouseError naming the failure's kind and Spark's error condition only: server text may quote
    SQL, values or paths."""
    condition = _condition(exc)
    suffix = f" ({condition})" if condition else f" ({type(exc).__name__})"
    if _grpc_code(exc) in _LOST:
        return WarehouseError("the warehouse is unavailable" + suffix, retryable=True)
    if condition.startswith("OPERATION_CANCELED") or "INTERRUPTED" in condition:
        return WarehouseError("the warehouse query was interrupted" + suffix, retryable=True)
    if condition == "PATH_NOT_FOUND":
        return WarehouseError("the warehouse lake path does not exist" + suffix)
    if _RESULT_SIZE_SETTING in str(exc):
        # Spark Connect brings every row through the driver, which refuses a job whose results add up to more
        # than this setting (1 GiB by default): only the server's configuration can let the export through.
        return WarehouseError(
            f"the result is larger than the Spark driver collects ({_RESULT_SIZE_SETTING}): raise it on the "
            "Spark Connect server (0: no limit)" + suffix
        )
    return WarehouseError("the warehouse query failed" + suffix)
