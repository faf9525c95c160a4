"""The Spark engine: the Engine Protocol on pyspark, classic (with delta-spark) or Spark Connect.

Erasure is one Spark SQL statement per table::

    MERGE INTO delta.`<path>` AS t USING <temp view> AS s ON t.`<subject>` = s.`__dsr_key`
    WHEN MATCHED THEN DELETE | UPDATE SET t.`<col>` = <mask expression>, ...

which runs the same on Spark with delta-spark, on Databricks and on any Spark Connect server with Delta.
The source (subject keys, pseudonyms) arrives as a pyarrow Table and becomes a small broadcast DataFrame
behind a temporary view with a unique name, so subject ids travel as data, never as SQL text. Every SQL
statement the engine builds is kept on ``statements`` so tests can prove it.

The engine only writes. Every read (export, planning, verification, versions, history, commit metrics)
goes through the one Delta access layer (:mod:`dsr.delta.access`, delta-rs), so what Spark wrote is checked by a
reader that did not write it, and works whatever the Spark server can do: Sail, for one, has no
``DESCRIBE HISTORY``, and its MERGE returns only an output row count. Metrics come from the MERGE's own
commit in the log (``numTargetRows*``, ``numTargetFiles*``, the same names on delta-spark and Sail).

What the engine writes correctly depends on the server (``support``, :mod:`dsr.delta.features`): classic Spark is
delta-spark; a Spark Connect server is identified as Sail (``current_catalog()`` is ``sail``) or Databricks
(a ``spark.databricks.clusterUsageTags.clusterId`` conf), else it is unknown and handles plain tables only.
``$DSR_SPARK_SERVER`` (``delta-spark``, ``databricks``, ``sail``, ``unknown``) overrides the detection.

Commit metadata (run id, request ids) goes into ``spark.databricks.delta.commitInfo.userMetadata`` for the
duration of the MERGE, as JSON. delta-spark records it; Sail 0.7 does not (it honours ``userMetadata`` only
as a DataFrame write option), so on Sail the commit carries no dsr metadata and the audit log is the record.

``history`` lifts the keys of a JSON ``userMetadata`` to the top level and adds snake_case aliases of the
camelCase metrics, so callers read commits from either engine the same way.

Classic sessions need the io.delta jars (``configure_spark_with_delta_pip`` fetches them from Maven, or
``spark-submit --packages`` with ``delta_coordinate()``, e.g. ``io.delta:delta-spark_4.2_2.13:4.4.1``); when
they cannot be loaded ``connect`` raises ``InputError`` pointing at ``--remote``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

from dsr.delta import access, commits, storage
from dsr.delta.features import DELETE, ENGINE_SUPPORT, UPDATE, Support
from dsr.engines.base import KEY_COLUMN, CommitResult, ErasePlan
from dsr.errors import ConflictError, InputError

__all__ = [
    "SERVER_ENV",
    "SERVER_KINDS",
    "USER_METADATA_CONF",
    "SparkEngine",
    "commit_metrics",
    "declared_server",
    "delta_coordinate",
    "key_frame",
    "merge_statement",
    "normalise_commit",
    "quote",
    "remote_from_environment",
    "server_kind",
]

USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
_TOKEN_KEY = "dsr_commit"
_DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
_DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
_NO_DELTA = (
    "classic Spark cannot load Delta Lake: the io.delta jars ({coordinate}) could not be fetched from Maven "
    "nor found on the classpath (spark-submit --packages {coordinate}); use --remote sc://HOST:PORT for a "
    "Spark Connect server with Delta"
)


def delta_coordinate() -> str:
    """The Maven coordinate of the delta-spark jar matching the installed pyspark and delta-spark."""
    from importlib.metadata import PackageNotFoundError, version

    import pyspark

    try:
        delta = version("delta-spark")
    except PackageNotFoundError:
        delta = "VERSION"
    spark = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark}_2.13:{delta}"


# --- pure helpers: SQL text, DataFrame transforms, commit metrics ---------------------------------------


def quote(name: str) -> str:
    """A Spark SQL identifier in backticks."""
    return "`" + name.replace("`", "``") + "`"


def merge_statement(
    path: str, view: str, subject: str, operation: str, updates: Mapping[str, str] | None = None
) -> str:
    """The MERGE of one erase commit (``operation``: DELETE or UPDATE). Holds names and mask expressions only,
    never a subject id."""
    head = (
        f"MERGE INTO delta.{quote(path)} AS t USING {quote(view)} AS s "
        f"ON t.{quote(subject)} = s.{quote(KEY_COLUMN)}"
    )
    if operation == DELETE:
        return f"{head} WHEN MATCHED THEN DELETE"
    if operation == UPDATE:
        if not updates:
            raise ValueError("an update needs at least one column update")
        sets = ", ".join(f"t.{quote(col)} = {expr}" for col, expr in updates.items())
        return f"{head} WHEN MATCHED THEN UPDATE SET {sets}"
    raise ValueError(f"engine erase cannot do {operation!r}")


def _plain_types(table: Any) -> Any:
    """Large/view string and binary columns as plain ones (what Spark's schema conversion expects)."""
    import pyarrow as pa

    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
            t = pa.binary()
        fields.append(pa.field(f.name, t, nullable=True))
    schema = pa.schema(fields)
    return table if schema == table.schema else table.cast(schema)


def key_frame(spark: Any, table: Any) -> Any:
    """A small broadcast DataFrame of a pyarrow Table (the MERGE source, or the keys of a scan).

    The schema is given explicitly, so an empty table works and the key keeps the column's type.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    table = _plain_types(table)
    # DataFrame.hint, not functions.broadcast: the latter picks classic or Connect by process-wide state
    return spark.createDataFrame(table, schema=from_arrow_schema(table.schema)).hint("broadcast")


def commit_metrics(commit: Mapping[str, Any]) -> dict[str, int]:
    """CommitResult's counters from a MERGE commit info (delta-spark writes them as text, Sail as ints)."""
    m = commit.get("operationMetrics") or {}

    def n(key: str) -> int:
        value = m.get(key)
        return int(value) if value not in (None, "") else 0

    return {
        "rows_deleted": n("numTargetRowsDeleted"),
        "rows_updated": n("numTargetRowsUpdated"),
        "rows_copied": n("numTargetRowsCopied"),
        "files_added": n("numTargetFilesAdded"),
        "files_removed": n("numTargetFilesRemoved"),
    }


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _number(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    return value


def normalise_commit(commit: Mapping[str, Any]) -> dict[str, Any]:
    """A commit info with its JSON ``userMetadata`` keys lifted to the top level (never overriding) and
    snake_case, numeric aliases of its camelCase ``operationMetrics`` (delta-spark and Sail name them
    ``numTargetRowsDeleted``...; delta-rs ``num_target_rows_deleted``)."""
    out = dict(commit)
    meta = out.get("userMetadata")
    if isinstance(meta, str) and meta.startswith("{"):
        with contextlib.suppress(ValueError):
            parsed = json.loads(meta)
            if isinstance(parsed, dict):
                for k, v in parsed.items():
                    out.setdefault(k, v)
    metrics = out.get("operationMetrics")
    if isinstance(metrics, Mapping):
        aliased = {_snake(k): _number(v) for k, v in metrics.items() if _snake(k) != k}
        out["operationMetrics"] = {**aliased, **metrics}
    return out


def _find_commit(history: Sequence[Mapping[str, Any]], before: int, token: str) -> Mapping[str, Any] | None:
    """Our MERGE among the commits after ``before``: the one tagged with our token (delta-spark), else the
    earliest dsr MERGE (its predicate names KEY_COLUMN) - on Sail, which keeps no user metadata."""
    merges = [c for c in history if int(c.get("version", -1)) > before and c.get("operation") == "MERGE"]
    for c in merges:
        if token in str(c.get("userMetadata") or ""):
            return c
    ours = [c for c in merges if any(KEY_COLUMN in str(v) for v in (c.get("operationParameters") or {}).values())]
    return min(ours, key=lambda c: int(c["version"])) if ours else None


def _scrub(text: str, keys: Sequence[Any]) -> str:
    """``text`` with every subject key that appears as a token replaced by <subject>."""
    for value in sorted({str(k) for k in keys if k is not None}, key=len, reverse=True):
        text = re.sub(rf"(?<![\w.-]){re.escape(value)}(?![\w-])", "<subject>", text)
    return text


def _error(what: str, exc: BaseException, keys: Sequence[Any]) -> Exception:
    """An exception about ``exc`` whose message cannot carry a subject id."""
    first = (str(exc).strip().splitlines() or [""])[0]
    message = f"spark: {what} failed: {type(exc).__name__}: {_scrub(first, keys)[:500]}"
    if "Concurrent" in type(exc).__name__ or "CONCURRENT" in first.upper():
        return ConflictError(message)
    return RuntimeError(message)


def _is_connect(spark: Any) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


def remote_from_environment() -> str | None:
    """The Spark Connect address the environment names: ``$SPARK_REMOTE``, else the ``spark.remote`` that
    ``spark-submit --remote sc://...`` hands to the Python process (``PYSPARK_REMOTE_INIT_CONF_*``)."""
    if os.environ.get("SPARK_REMOTE"):
        return os.environ["SPARK_REMOTE"]
    for i in range(int(os.environ.get("PYSPARK_REMOTE_INIT_CONF_LEN", "0") or 0)):
        with contextlib.suppress(ValueError, KeyError):
            remote = json.loads(os.environ[f"PYSPARK_REMOTE_INIT_CONF_{i}"]).get("spark.remote")
            if remote:
                return str(remote)
    return None


SERVER_KINDS = ("delta-spark", "databricks", "sail", "unknown")
SERVER_ENV = "DSR_SPARK_SERVER"


def declared_server() -> str | None:
    """``$DSR_SPARK_SERVER`` when set (InputError when it names no known server kind)."""
    value = os.environ.get(SERVER_ENV, "").strip().lower()
    if not value:
        return None
    if value not in SERVER_KINDS:
        raise InputError(f"{SERVER_ENV}={value!r}: use one of {', '.join(SERVER_KINDS)}")
    return value


def server_kind(spark: Any) -> str:
    """What writes behind this session: classic Spark is delta-spark; a Connect server is recognised as Sail
    or Databricks, else 'unknown'. ``$DSR_SPARK_SERVER`` overrides."""
    declared = declared_server()
    if declared:
        return declared
    if not _is_connect(spark):
        return "delta-spark"
    with contextlib.suppress(Exception):
        if str(spark.sql("SELECT current_catalog()").collect()[0][0]).lower() == "sail":
            return "sail"
    with contextlib.suppress(Exception):
        if spark.conf.get("spark.databricks.clusterUsageTags.clusterId", None):
            return "databricks"
    return "unknown"


def _check_reachable(remote: str) -> None:
    """Fail fast on an unreachable Spark Connect address (the client would retry for minutes)."""
    import socket

    parsed = urlparse(remote)
    if parsed.scheme != "sc" or not parsed.hostname:
        raise InputError(f"--remote {remote!r}: a Spark Connect address looks like sc://HOST:PORT")
    port = parsed.port or 15002
    try:
        with socket.create_connection((parsed.hostname, port), timeout=5):
            pass
    except OSError as exc:
        raise InputError(
            f"cannot reach the Spark Connect server at {parsed.hostname}:{port} ({exc.strerror or exc})"
        ) from None


# --- the engine ---------------------------------------------------------------------------------------


class SparkEngine:
    """Engine on a SparkSession (classic with delta-spark, or Spark Connect). ``SparkEngine(spark)`` uses a
    session you own; ``SparkEngine.connect(...)`` builds one and ``close`` stops it.

    The session's time zone is set to UTC (year/month masks truncate in UTC). The engine never puts the
    process into pyspark's process-wide Connect mode, so classic sessions can still be built beside it.
    """

    name = "spark"
    dialect = "spark"

    def __init__(self, spark: Any, *, owned: bool = False, server: str | None = None) -> None:
        self.spark = spark
        self.statements: list[str] = []
        """Every SQL statement this engine built and ran, in order (tests assert no subject id is here)."""
        self.server = server or server_kind(spark)
        """'delta-spark', 'databricks', 'sail' or 'unknown': what the session writes with."""
        if self.server not in SERVER_KINDS:
            raise InputError(f"unknown Spark server kind {self.server!r}: use one of {', '.join(SERVER_KINDS)}")
        self.support: Support = ENGINE_SUPPORT[f"spark:{self.server}"]
        self._owned = owned
        self._open = True
        # masks generalise timestamps in UTC: the session runs in UTC
        spark.conf.set("spark.sql.session.timeZone", "UTC")

    @classmethod
    def connect(cls, remote: str | None = None, *, app_name: str = "dsr-lake") -> SparkEngine:
        """A Spark Connect session at ``remote`` (sc://HOST:PORT), else a classic session with Delta."""
        if remote:
            # The Connect builder itself: pyspark's generic builder would set SPARK_CONNECT_MODE_ENABLED for
            # the whole process, and no classic session could be built in it afterwards.
            from pyspark.sql.connect.session import SparkSession as ConnectSession

            _check_reachable(remote)
            try:
                spark = (
                    ConnectSession.builder.remote(remote)
                    .appName(app_name)
                    .config("spark.sql.session.timeZone", "UTC")
                    .create()
                )
            except Exception as exc:
                raise InputError(f"cannot open a Spark Connect session at {remote}: {type(exc).__name__}") from None
            return cls(spark, owned=True)
        return cls(_classic_session(app_name), owned=True)

    @property
    def is_connect(self) -> bool:
        return _is_connect(self.spark)

    def __enter__(self) -> SparkEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- paths, history (the access layer reads the log: works on any server) -----------------------

    def _path(self, uri: str) -> str:
        """The table location as Spark expects it (Hadoop's S3 connector on classic Spark is s3a://)."""
        if uri.startswith("s3://") and not self.is_connect:
            return "s3a://" + uri[len("s3://"):]
        return uri if storage.is_remote(uri) or uri.startswith("file:") else os.path.abspath(uri)

    def history(self, uri: str, limit: int = 20) -> list[dict[str, Any]]:
        """Commit infos, newest first, read the same way as the delta-rs engine does, plus for Spark commits:
        the keys of a JSON ``userMetadata`` (our commit metadata on delta-spark) at the top level, and
        snake_case aliases of camelCase metrics (``num_target_rows_deleted``...), so callers read one form."""
        return [normalise_commit(c) for c in commits.history(uri, limit)]

    # --- the erase commit -------------------------------------------------------------------------------

    def erase(self, plan: ErasePlan, source: Any) -> CommitResult:
        view = f"__dsr_src_{uuid.uuid4().hex}"
        statement = merge_statement(self._path(plan.uri), view, plan.subject, plan.operation, plan.updates)
        before = int(access.open_table(plan.uri).version())
        if source.num_rows == 0:
            return CommitResult(version_before=before, version_after=before)
        keys = source.column(KEY_COLUMN).to_pylist()
        token = uuid.uuid4().hex
        metadata = json.dumps({**plan.metadata, _TOKEN_KEY: token}, sort_keys=True)
        key_frame(self.spark, source).createOrReplaceTempView(view)
        self.statements.append(statement)
        try:
            with self._conf({USER_METADATA_CONF: metadata, "spark.sql.session.timeZone": "UTC"}):
                self.spark.sql(statement).collect()
        except Exception as exc:
            raise _error(f"MERGE into {plan.uri}", exc, keys) from None
        finally:
            with contextlib.suppress(Exception):
                self.spark.catalog.dropTempView(view)
        return self._commit_result(plan.uri, before, token)

    @contextlib.contextmanager
    def _conf(self, values: Mapping[str, str]) -> Iterator[None]:
        """Set session confs for the duration of a block, then put the previous values back."""
        conf = self.spark.conf
        previous = {k: conf.get(k, None) for k in values}
        try:
            for k, v in values.items():
                conf.set(k, v)
            yield
        finally:
            for k, v in previous.items():
                with contextlib.suppress(Exception):
                    if v is None:
                        conf.unset(k)
                    else:
                        conf.set(k, v)

    def _commit_result(self, uri: str, before: int, token: str) -> CommitResult:
        dt = access.open_table(uri)
        after = int(dt.version())
        if after == before:  # nothing matched: Sail writes no commit
            return CommitResult(version_before=before, version_after=before)
        commit = _find_commit(dt.history(after - before), before, token)
        if commit is None:  # others committed, we did not
            return CommitResult(version_before=after, version_after=after)
        version = int(commit["version"])
        return CommitResult(version_before=version - 1, version_after=version, **commit_metrics(commit))

    def close(self) -> None:
        """Stop the session if this engine built it; idempotent."""
        if not self._open:
            return
        self._open = False
        if self._owned:
            with contextlib.suppress(Exception):
                self.spark.stop()


def _classic_session(app_name: str) -> Any:
    """A classic SparkSession with the Delta extension and catalog, or InputError when Delta cannot load."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.extensions", _DELTA_EXTENSION)
        .config("spark.sql.catalog.spark_catalog", _DELTA_CATALOG)
        .config("spark.sql.session.timeZone", "UTC")
    )
    # Under spark-submit (or with a running JVM) the jars are whatever --packages/--jars loaded; otherwise
    # let delta-spark add its Maven coordinates.
    fresh = SparkContext._active_spark_context is None and "PYSPARK_GATEWAY_PORT" not in os.environ
    if fresh:
        from delta import configure_spark_with_delta_pip

        builder = configure_spark_with_delta_pip(builder)
    try:
        spark = builder.getOrCreate()
    except Exception:
        raise InputError(_NO_DELTA.format(coordinate=delta_coordinate())) from None
    if _is_connect(spark):  # pyspark's process-wide Connect mode (SPARK_REMOTE or an open Connect session)
        raise InputError("this process is in Spark Connect mode ($SPARK_REMOTE is set or a Connect session is "
                         "open): pass its address with --remote sc://HOST:PORT")
    try:
        jvm: Any = spark._jvm
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        loader.loadClass(_DELTA_EXTENSION)
    except Exception:
        if fresh:
            with contextlib.suppress(Exception):
                spark.stop()
        raise InputError(_NO_DELTA.format(coordinate=delta_coordinate())) from None
    return spark
