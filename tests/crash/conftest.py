"""The crash tests' benches, one per storage, built once per session (only when a test asks for one): the
scenario written and run, its snapshot, the rows right after the run (as Sail reads them).

The S3 bench runs its own moto server (``moto_hook.py``: the one that can kill a writer before answering); its
AWS_* variables are set only while a test uses it (``kit.environment``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.crash import checks, scenario
from tests.crash.kit import REPO, Bench, environment
from tests.crash.moto_hook import HookClient
from tests.moto_s3 import stop

FULL = os.environ.get("DSR_CRASH_FULL") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The full sweep (marker ``crash_full``) runs only under ``make test-crash`` (DSR_CRASH_FULL=1)."""
    skip = pytest.mark.skip(reason="the full sweep of crash trials runs with `make test-crash` (DSR_CRASH_FULL=1)")
    for item in items:
        if "crash_full" in item.keywords and not FULL:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def local_bench(tmp_path_factory: pytest.TempPathFactory, spark_connect: Any) -> Bench:
    base = tmp_path_factory.mktemp("crash-local")
    original = scenario.write_policy(base / "original")
    erase, export = scenario.build(original)
    copier = scenario.local_copier(base)
    snapshot = copier(original, "snapshot")
    story = scenario.Scenario(original, snapshot, erase, export, copier=copier)
    checks.baseline(story, spark_connect)
    return Bench("local", story, spark_connect, base)


@pytest.fixture(scope="session")
def s3_bench(tmp_path_factory: pytest.TempPathFactory, spark_connect: Any) -> Iterator[Bench]:
    base = tmp_path_factory.mktemp("crash-s3")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    server = subprocess.Popen([sys.executable, "-m", "tests.crash.moto_hook"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert server.stdout is not None
        endpoint = server.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:"), endpoint
        aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL_S3": endpoint, "AWS_ALLOW_HTTP": "true"}
        token = scenario.new_token()
        with environment(aws):
            client = scenario.s3_client()
            for bucket in (f"{token}-original-l", f"{token}-original-x"):
                client.create_bucket(Bucket=bucket)
            original = scenario.write_policy(base / "original", f"s3://{token}-original-l/lake",
                                             f"s3://{token}-original-x/docs")
            erase, export = scenario.build(original)
            copier = scenario.s3_copier(base, token)
            snapshot = copier(original, "snapshot")
            story = scenario.Scenario(original, snapshot, erase, export, copier=copier)
            checks.baseline(story, spark_connect)
        bench = Bench("s3", story, spark_connect, base, HookClient(endpoint), aws)
        yield bench
    finally:
        stop(server)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def bench(request: pytest.FixtureRequest) -> Bench:
    """Each storage's bench in turn."""
    return request.getfixturevalue(f"{request.param}_bench")
