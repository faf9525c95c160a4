"""Shared pytest fixtures. Never build a Spark session at import time: fixtures only, scoped as needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dsr.core.policy import Policy, load_policy
from tests import lakes
from tests.lakes import INTAKE_POLICY, KEY, KEY_ENV, Lake, write_policy
from tests.moto_s3 import aws_env, moto_server

# --- foundation: policy, control table, audit log -----------------------------------------------------------


@pytest.fixture
def small_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """A small real lake (events, users, consents, geo_lookup) and its dsr.yml; the pseudonym key is set."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.delenv("DSR_POLICY", raising=False)
    return lakes.small(tmp_path)


@pytest.fixture
def intake_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Policy:
    """A loaded Policy for control-table and audit tests (no lake tables needed for intake)."""
    monkeypatch.delenv("DSR_POLICY", raising=False)
    return load_policy(write_policy(tmp_path, INTAKE_POLICY))


# --- S3: moto's server on 127.0.0.1, one per test module that uses it -------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 with the buckets 'lake' and 'exp'."""
    with moto_server("lake", "exp") as endpoint:
        yield endpoint


@pytest.fixture()
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """AWS_* set for dsr (endpoint, test credentials, region); returns the endpoint."""
    aws_env(monkeypatch, s3_endpoint)
    return s3_endpoint


# --- Spark fixtures ---------------------------------------------------------------------------------------
# A session-scoped Sail Spark Connect server (pysail, in-process) and sessions on it; a classic local
# SparkSession without Delta for chispa tests of pure DataFrame transforms. Built lazily, never at import.


@pytest.fixture(scope="session")
def spark_remote() -> object:
    """The sc://HOST:PORT address of an in-process Sail Spark Connect server (Delta read/write/MERGE)."""
    sail = pytest.importorskip("pysail.spark", reason="pysail (the Sail Spark Connect server) is not installed")
    pytest.importorskip("pyspark.sql.connect.session", reason="pyspark[connect] is not installed")
    server = sail.SparkConnectServer(ip="127.0.0.1", port=0)
    server.start(background=True)
    address = server.listening_address
    assert address is not None, "the Sail server did not start"
    host, port = address
    yield f"sc://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def spark_connect(spark_remote: str) -> object:
    """A Spark Connect session on the Sail server, in UTC."""
    # pyspark's Connect builder, not the generic one (which marks the whole process Connect-only)
    from pyspark.sql.connect.session import SparkSession

    spark = SparkSession.builder.remote(spark_remote).config("spark.sql.session.timeZone", "UTC").create()
    yield spark
    spark.stop()


@pytest.fixture(scope="module")
def spark_catalog_remote() -> Iterator[str]:
    """The sc://HOST:PORT address of a Sail server whose catalog persists across sessions (Sail's Glue catalog
    on moto, in their own processes: tests/sail_catalog.py); the default one keeps tables per session only."""
    pytest.importorskip("pysail.spark", reason="pysail (the Sail Spark Connect server) is not installed")
    pytest.importorskip("pyspark.sql.connect.session", reason="pyspark[connect] is not installed")
    from tests.sail_catalog import sail_with_glue

    with sail_with_glue() as (address, _):
        yield address


@pytest.fixture(scope="session")
def spark_local() -> object:
    """A classic local SparkSession (JVM, no Delta) for chispa tests of pure DataFrame/Column transforms."""
    import os

    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    if "SPARK_CONNECT_MODE_ENABLED" in os.environ:
        pytest.skip("this process is in pyspark's Spark Connect mode (a Connect session was built with the "
                    "generic builder and not closed): classic local Spark cannot run in it")

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("dsr-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield spark
    spark.stop()


# --- end of Spark fixtures ----------------------------------------------------------------------------------
