"""Engines: delta-rs (default, in-process) and Spark (classic + delta-spark, or Spark Connect)."""

from __future__ import annotations

import os

from dsr.engines.base import KEY_COLUMN, CommitResult, Engine, ErasePlan

__all__ = ["KEY_COLUMN", "CommitResult", "Engine", "ErasePlan", "make_engine"]


def make_engine(name: str | None = None, *, remote: str | None = None) -> Engine:
    """Build an engine: 'delta-rs' (default) or 'spark'. ``remote`` (or $SPARK_REMOTE) means Spark Connect.

    $DSR_ENGINE picks the engine when name is None.
    """
    from dsr.errors import InputError

    name = name or ("spark" if remote else os.environ.get("DSR_ENGINE", "delta-rs"))
    if name in ("delta-rs", "deltars", "delta_rs"):
        if remote:
            raise InputError("--remote is a Spark Connect address: use it with --engine spark")
        from dsr.engines.deltars import DeltaRsEngine

        return DeltaRsEngine()
    if name == "spark":
        from dsr.engines.spark import SparkEngine

        return SparkEngine.connect(remote=remote or os.environ.get("SPARK_REMOTE"))
    raise InputError(f"unknown engine {name!r} (use delta-rs or spark)")
