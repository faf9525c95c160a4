"""Spark sessions for the engine: classic with delta-spark (the io.delta jars), or Spark Connect; and which
server writes behind a session (delta-spark, Databricks, Sail, or unknown), which decides what it handles."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any
from urllib.parse import urlparse

from dsr.errors import InputError

__all__ = ["DELTA_CATALOG", "DELTA_EXTENSION", "NO_DELTA", "SERVER_ENV", "SERVER_KINDS", "check_reachable",
           "classic_session", "declared_server", "delta_coordinate", "is_connect", "remote_from_environment",
           "server_kind"]

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
NO_DELTA = (
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


def is_connect(spark: Any) -> bool:
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
    if not is_connect(spark):
        return "delta-spark"
    with contextlib.suppress(Exception):
        if str(spark.sql("SELECT current_catalog()").collect()[0][0]).lower() == "sail":
            return "sail"
    with contextlib.suppress(Exception):
        if spark.conf.get("spark.databricks.clusterUsageTags.clusterId", None):
            return "databricks"
    return "unknown"


def check_reachable(remote: str) -> None:
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


def classic_session(app_name: str) -> Any:
    """A classic SparkSession with the Delta extension and catalog, or InputError when Delta cannot load."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.extensions", DELTA_EXTENSION)
        .config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
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
        raise InputError(NO_DELTA.format(coordinate=delta_coordinate())) from None
    if is_connect(spark):  # pyspark's process-wide Connect mode (SPARK_REMOTE or an open Connect session)
        raise InputError("this process is in Spark Connect mode ($SPARK_REMOTE is set or a Connect session is "
                         "open): pass its address with --remote sc://HOST:PORT")
    try:
        jvm: Any = spark._jvm
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        loader.loadClass(DELTA_EXTENSION)
    except Exception:
        if fresh:
            with contextlib.suppress(Exception):
                spark.stop()
        raise InputError(NO_DELTA.format(coordinate=delta_coordinate())) from None
    return spark
