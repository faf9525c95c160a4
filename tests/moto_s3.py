"""moto's S3 server on 127.0.0.1 for tests (the fixtures s3_endpoint and s3_env built on it are in tests/conftest.py).

The server runs in its own process: in-process, delta-rs calls that hold the GIL while they wait on the network
(DeltaTable.is_deltatable, MERGE) would starve the server thread and time out.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

_SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
sys.stdin.read()  # until the test closes our stdin
server.stop()
"""


@contextmanager
def moto_server(*buckets: str) -> Iterator[str]:
    """Start the server with these buckets; yields its endpoint URL (``http://127.0.0.1:PORT``)."""
    import boto3

    proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:"), endpoint
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    """End a server process started with its stdin as its lifeline: close it, wait, kill if it lingers."""
    if proc.stdin:
        proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """The AWS_* variables dsr (delta-rs, pyarrow) and boto3 need to reach the server."""
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                 "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
