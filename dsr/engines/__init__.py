"""Engines: delta-rs (default, in-process) and Spark (classic + delta-spark, or Spark Connect)."""

from __future__ import annotations

import os

from dsr.delta.support import ENGINE_SUPPORT, Support
from dsr.engines.base import KEY_COLUMN, CommitResult, Engine, ErasePlan

__all__ = ["KEY_COLUMN", "CommitResult", "Engine", "ErasePlan", "engine_name", "engine_support", "make_engine"]

_DELTA_RS = ("delta-rs", "deltars", "delta_rs")


def engine_name(name: str | None, remote: str | None) -> str:
    """'delta-rs' or 'spark': the engine a command's ``--engine``/``--remote`` (else $DSR_ENGINE) picks."""
    from dsr.errors import InputError

    name = name or ("spark" if remote else os.environ.get("DSR_ENGINE", "delta-rs"))
    if name in _DELTA_RS:
        if remote:
            raise InputError("--remote is a Spark Connect address: use it with --engine spark")
        return "delta-rs"
    if name == "spark":
        return "spark"
    raise InputError(f"unknown engine {name!r} (use delta-rs or spark)")


def make_engine(name: str | None = None, *, remote: str | None = None) -> Engine:
    """Build an engine: 'delta-rs' (default) or 'spark'. ``remote`` (or $SPARK_REMOTE) means Spark Connect.

    $DSR_ENGINE picks the engine when name is None.
    """
    if engine_name(name, remote) == "delta-rs":
        from dsr.engines.deltars import DeltaRsEngine

        return DeltaRsEngine()
    from dsr.engines.spark import SparkEngine

    return SparkEngine.connect(remote=remote or os.environ.get("SPARK_REMOTE"))


def engine_support(name: str | None = None, *, remote: str | None = None) -> Support:
    """What the configured engine writes correctly, for ``dsr check``: delta-rs at once; Spark by
    ``$DSR_SPARK_SERVER``, else by asking the Connect server (``remote`` or $SPARK_REMOTE), else delta-spark
    (a classic session)."""
    if engine_name(name, remote) == "delta-rs":
        return ENGINE_SUPPORT["delta-rs"]
    from dsr.engines.spark import declared_server

    server = declared_server()
    remote = remote or os.environ.get("SPARK_REMOTE")
    if server is None and remote:
        engine = make_engine("spark", remote=remote)
        try:
            return engine.support
        finally:
            engine.close()
    return ENGINE_SUPPORT[f"spark:{server or 'delta-spark'}"]
