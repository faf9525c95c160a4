"""Process every pending data-subject request once, on the Spark engine.

A thin entry point: parse the arguments, build the engine, load and check the policy, call
``dsr.steps.run``, exit with its code (0 success, 1 a request or a verification failed, 2 bad usage or
bad input). Runs the same with python and with spark-submit::

    python jobs/process.py --policy dsr.yml --remote sc://HOST:15002      # Spark Connect
    spark-submit --remote sc://HOST:15002 jobs/process.py --policy dsr.yml
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.1 jobs/process.py --policy dsr.yml   # classic

``--remote`` defaults to ``$SPARK_REMOTE``, else the address given to ``spark-submit --remote``; without
one, a classic SparkSession with delta-spark is used. The pseudonym key comes from the environment variable
the policy names, never from the command line.
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


def main(argv: Sequence[str] | None = None) -> int:
    from dsr.engines.spark import remote_from_environment

    parser = argparse.ArgumentParser(
        prog="process.py", description="Process every pending data-subject request once on Spark."
    )
    parser.add_argument("--policy", metavar="FILE", help="policy YAML (default: $DSR_POLICY, else ./dsr.yml)")
    parser.add_argument("--remote", metavar="sc://HOST:PORT", default=remote_from_environment(),
                        help="Spark Connect endpoint (default: $SPARK_REMOTE or spark-submit --remote; "
                             "none: classic Spark + delta-spark)")
    parser.add_argument("--run-id", help="the batch id (default: generated)")
    parser.add_argument("--json", action="store_true", help="print the run report as JSON on stdout")
    args = parser.parse_args(argv)

    import json

    from dsr import steps
    from dsr.core.policy import check_against_lake, load_policy, resolve_policy_path
    from dsr.engines import make_engine
    from dsr.errors import DsrError

    try:
        policy = load_policy(resolve_policy_path(args.policy))
        check_against_lake(policy)
        engine = make_engine("spark", remote=args.remote)
    except DsrError as exc:
        print(f"process.py: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        report = steps.run(policy, engine, run_id=args.run_id)
    except DsrError as exc:  # e.g. an uncovered personal table: nothing claimed
        print(f"process.py: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        engine.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        s = report.summary
        print(f"run {report.run_id} (spark): {s.get('completed', 0)} completed, {s.get('failed', 0)} failed")
        for error in report.errors:
            print(f"  error: {error}")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
