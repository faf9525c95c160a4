"""dsr/engines/spark_session.py: which Spark a run talks to (the Connect address, the server kind behind a session,
a reachable address, the delta-spark jar for classic Spark)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from dsr.delta.support import DELTA_SPARK, ENGINE_SUPPORT
from dsr.engines.spark_session import SERVER_ENV, check_reachable, delta_coordinate, remote_from_environment
from dsr.errors import InputError


def test_finds_the_remote_spark_submit_hands_over(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("SPARK_REMOTE", "PYSPARK_REMOTE_INIT_CONF_LEN", "PYSPARK_REMOTE_INIT_CONF_0"):
        monkeypatch.delenv(k, raising=False)
    assert remote_from_environment() is None
    monkeypatch.setenv("PYSPARK_REMOTE_INIT_CONF_LEN", "1")
    monkeypatch.setenv("PYSPARK_REMOTE_INIT_CONF_0", '{"spark.app.name": "x", "spark.remote": "sc://h:1"}')
    assert remote_from_environment() == "sc://h:1"
    monkeypatch.setenv("SPARK_REMOTE", "sc://env:2")
    assert remote_from_environment() == "sc://env:2"


def test_names_the_delta_jar_matching_pyspark() -> None:
    import pyspark

    spark = ".".join(pyspark.__version__.split(".")[:2])
    assert delta_coordinate().startswith(f"io.delta:delta-spark_{spark}_2.13:")


@pytest.mark.spark
def test_the_server_kind_comes_from_the_session_unless_dsr_spark_server_says(
    spark_connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsr.engines.spark import SERVER_ENV as ENV
    from dsr.engines.spark import SERVER_KINDS, SparkEngine, declared_server, server_kind

    assert ENV == SERVER_ENV and set(SERVER_KINDS) == {"delta-spark", "databricks", "sail", "unknown"}
    assert all(f"spark:{kind}" in ENGINE_SUPPORT for kind in SERVER_KINDS)
    monkeypatch.delenv(SERVER_ENV, raising=False)
    assert declared_server() is None
    assert server_kind(spark_connect) == "sail"

    monkeypatch.setenv(SERVER_ENV, "delta-spark")
    assert declared_server() == "delta-spark"
    with SparkEngine(spark_connect) as eng:  # the same session, now declared delta-spark
        assert eng.server == "delta-spark"
        assert eng.support is ENGINE_SUPPORT["spark:delta-spark"] is DELTA_SPARK
    monkeypatch.setenv(SERVER_ENV, " Databricks ")  # case and blanks do not matter
    assert server_kind(spark_connect) == "databricks"

    monkeypatch.setenv(SERVER_ENV, "hadoop")
    with pytest.raises(InputError, match=f"{SERVER_ENV}='hadoop'"):
        declared_server()
    with pytest.raises(InputError, match=f"{SERVER_ENV}='hadoop'"):
        SparkEngine(spark_connect)
    assert spark_connect.range(2).count() == 2  # a borrowed session is left alone


@pytest.mark.parametrize("remote", ["http://h:1", "sc://", "h:15002"])
def test_an_address_that_is_not_sc_host_port_is_refused(remote: str) -> None:
    with pytest.raises(InputError, match="looks like sc://HOST:PORT"):
        check_reachable(remote)


def test_an_unreachable_address_fails_fast_naming_host_and_port() -> None:
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(InputError, match=f"cannot reach the Spark Connect server at 127.0.0.1:{port}"):
            check_reachable(f"sc://127.0.0.1:{port}")


@pytest.mark.spark
def test_a_listening_server_is_reachable(spark_remote: Any) -> None:
    assert check_reachable(spark_remote) is None
