"""Process every pending data-subject request once, on the Spark engine: ``dsr run --engine spark``.

A thin entry point for spark-submit, which needs a file: it translates its arguments and calls the CLI's
``dsr run`` in this process, so both print, check and exit the same way (0 success, 1 a request or a
verification failed, 2 bad usage or bad input, before anything is written). Runs the same with python and
with spark-submit::

    python jobs/process.py --policy dsr.yml --remote sc://HOST:15002      # Spark Connect
    spark-submit --remote sc://HOST:15002 jobs/process.py --policy dsr.yml
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.1 jobs/process.py --policy dsr.yml   # classic

``--remote`` defaults to ``$SPARK_REMOTE``, else the address given to ``spark-submit --remote``; without
one (or an empty one), a classic SparkSession with delta-spark is used. The pseudonym key comes from the
environment variable the policy names, never from the command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

try:
    import dsr  # noqa: F401
except ImportError:  # run from a checkout without the package installed (spark-submit of this file)
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def dsr_args(argv: Sequence[str] | None = None) -> list[str]:
    """This script's arguments -> the ``dsr`` command line it runs (``dsr [--policy P] run --engine spark ...``)."""
    from dsr.engines.spark import remote_from_environment

    parser = argparse.ArgumentParser(
        prog="process.py", description="Process every pending data-subject request once on Spark (dsr run)."
    )
    parser.add_argument("--policy", metavar="FILE", help="policy YAML (default: $DSR_POLICY, else ./dsr.yml)")
    parser.add_argument("--remote", metavar="sc://HOST:PORT", default=remote_from_environment(),
                        help="Spark Connect endpoint (default: $SPARK_REMOTE or spark-submit --remote; "
                             "none or empty: classic Spark + delta-spark)")
    parser.add_argument("--run-id", help="the batch id (default: generated)")
    parser.add_argument("--json", action="store_true", help="print the run report as JSON on stdout")
    args = parser.parse_args(argv)
    out = ["--policy", args.policy] if args.policy else []
    out += ["run", "--engine", "spark"]
    out += ["--remote", args.remote] if args.remote else []
    out += ["--run-id", args.run_id] if args.run_id is not None else []
    return out + (["--json"] if args.json else [])


def main(argv: Sequence[str] | None = None) -> int:
    from dsr.cli.main import main as dsr_main

    return dsr_main(dsr_args(argv))


if __name__ == "__main__":
    sys.exit(main())
