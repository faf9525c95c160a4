"""The Spark engine: the Engine Protocol on pyspark, classic (with delta-spark) or Spark Connect.

Erasure is one Spark SQL statement per table::

    MERGE INTO delta.`<path>` AS t USING <temp view> AS s ON t.`<subject>` = s.`__dsr_key`
    WHEN MATCHED THEN DELETE | UPDATE SET t.`<col>` = <mask expression>, ...

which runs the same on Spark with delta-spark, on Databricks and on any Spark Connect server with Delta.
The source (subject keys, pseudonyms) arrives as a pyarrow Table and becomes a small broadcast DataFrame
behind a temporary view with a unique name, so subject ids travel as data, never as SQL text. Every SQL
statement the engine builds is kept on ``statements`` so tests can prove it.

The engine writes, and its reader (:mod:`dsr.engines.spark_reads`) runs the heavy reads as Spark jobs: the
export scan, the erase planning, verification's passes and counts, the near-match scan, the residue scan's data
files. The Delta log
(versions, history, commit metrics, live files) is read by the one access layer (:mod:`dsr.delta.access`,
delta-rs), which works whatever the Spark server can do: Sail, for one, has no ``DESCRIBE HISTORY``, and its
MERGE returns only an output row count. Metrics come from the MERGE's own commit in the log
(``numTargetRows*``, ``numTargetFiles*``, the same names on delta-spark and Sail). What Spark's Delta reader
returns is checked against evidence it did not produce (:mod:`dsr.verify.evidence`).

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
import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote as url_quote

from dsr.delta import access, commits, storage
from dsr.delta.support import ENGINE_SUPPORT, Support
from dsr.engines.base import KEY_COLUMN, CommitResult, ErasePlan, Search
from dsr.engines.matching import Matches, match_sql
from dsr.engines.reading import Reader
from dsr.engines.spark_reads import SparkReader, file_location, with_forms
from dsr.engines.spark_session import (
    SERVER_ENV,
    SERVER_KINDS,
    check_reachable,
    classic_session,
    declared_server,
    delta_coordinate,
    is_connect,
    remote_from_environment,
    server_kind,
)
from dsr.engines.spark_sql import (
    commit_metrics,
    error_for,
    find_commit,
    key_frame,
    merge_statement,
    normalise_commit,
    quote,
)
from dsr.errors import InputError

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
        self.reader: Reader = SparkReader(spark, self._path, self.server)
        """The heavy reads, as Spark jobs (:mod:`dsr.engines.spark_reads`)."""
        # masks generalise timestamps in UTC: the session runs in UTC
        spark.conf.set("spark.sql.session.timeZone", "UTC")

    @classmethod
    def connect(cls, remote: str | None = None, *, app_name: str = "dsr-lake") -> SparkEngine:
        """A Spark Connect session at ``remote`` (sc://HOST:PORT), else a classic session with Delta."""
        if remote:
            # The Connect builder itself: pyspark's generic builder would set SPARK_CONNECT_MODE_ENABLED for
            # the whole process, and no classic session could be built in it afterwards.
            from pyspark.sql.connect.session import SparkSession as ConnectSession

            check_reachable(remote)
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
        return cls(classic_session(app_name), owned=True)

    @property
    def is_connect(self) -> bool:
        return is_connect(self.spark)

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
        statement = merge_statement(self._path(plan.uri), view, plan.subject, plan.operation, plan.updates,
                                    plan.partitions)
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
            raise error_for(f"MERGE into {plan.uri}", exc, keys) from None
        finally:
            with contextlib.suppress(Exception):
                self.spark.catalog.dropTempView(view)
        return self._commit_result(plan.uri, before, token)

    # --- the sweep's search -----------------------------------------------------------------------------------

    def find_suppressed(self, uri: str, search: Search) -> Matches:
        """The match of :mod:`dsr.engines.matching` on the cluster: the whole table read as Delta (``full``),
        else the new files' subject column as parquet (or, for a partition column, their partition values from
        the log); a normalised kind's values are normalised on the cluster (:func:`with_forms`); the secret and
        the digests are DataFrames, the SQL names views only."""
        import pyarrow as pa

        views = {name: f"__dsr_{name}_{uuid.uuid4().hex}" for name in ("cand", "sec", "dig")}
        path = self._path(uri)
        found = Matches(files_scanned=len(search.files), files_matched=None, rows_scanned=None)
        if search.full:
            frame = self.spark.read.format("delta").load(path).selectExpr(f"{quote(search.column)} AS v")
        elif any(search.column in f.partition or search.physical in f.partition for f in search.files):
            values = [f.partition.get(search.column, f.partition.get(search.physical)) for f in search.files]
            frame = key_frame(self.spark, pa.table({"v": pa.array(values, pa.string())}))
        elif search.files:
            paths = [file_location(path, url_quote(f.path, safe="/"), self.server) for f in search.files]
            frame = self.spark.read.parquet(*paths).selectExpr(f"{quote(search.physical)} AS v")
        else:
            return found
        try:
            with_forms(frame, search.steps).createOrReplaceTempView(views["cand"])
            key_frame(self.spark, pa.table({"secret": [search.secret]})).createOrReplaceTempView(views["sec"])
            key_frame(self.spark, pa.table({"d": search.digests.cast(pa.string())})).createOrReplaceTempView(
                views["dig"])
            rows = self.spark.sql(match_sql("spark", **views)).collect()
        except Exception as exc:
            raise error_for(f"the sweep's search of {uri}", exc, []) from None
        finally:
            for view in views.values():
                with contextlib.suppress(Exception):
                    self.spark.catalog.dropTempView(view)
        found.values = {str(r[0]): str(r[1]) for r in rows}
        return found

    # --- maintenance ---------------------------------------------------------------------------------------

    @property
    def rewrites_deletion_vectors(self) -> bool:
        """Whether the server runs ``REORG TABLE ... APPLY (PURGE)`` (delta-spark and Databricks; Sail does
        not, so a purge rewrites with delta-rs there)."""
        return self.server in ("delta-spark", "databricks")

    def rewrite_deletion_vectors(self, uri: str) -> int:
        """``REORG TABLE delta.`path` APPLY (PURGE)``: rewrite the files carrying deletion vectors so the rows
        they mask are physically gone; returns the table's version afterwards."""
        statement = f"REORG TABLE delta.`{self._path(uri)}` APPLY (PURGE)"
        self.statements.append(statement)
        try:
            self.spark.sql(statement).collect()
        except Exception as exc:
            raise error_for(f"REORG of {uri}", exc, []) from None
        return int(access.open_table(uri).version())

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
        commit = find_commit(dt.history(after - before), before, token)
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


