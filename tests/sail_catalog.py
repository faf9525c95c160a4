"""A Sail Spark Connect server whose catalog outlives a session: Sail's AWS Glue catalog provider, on moto's Glue.

Sail's default catalog is in memory *per session*: a table one session registers is gone for the next, so a
``dsr`` command (which opens its own session) could never find it. With ``SAIL_CATALOG__LIST`` naming a Glue
catalog (read when the server starts) tables persist across sessions, as in a Hive or Glue metastore. The server
runs in its own process with that environment, so the tests' process and the session-scoped ``spark_remote``
server keep their default catalog; it reads the AWS credentials on each request, which its process keeps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tests.moto_s3 import moto_server, stop

_SERVER = """
import sys
import pysail.spark as sail
server = sail.SparkConnectServer(ip="127.0.0.1", port=0)
server.start(background=True)
host, port = server.listening_address
print(f"sc://{host}:{port}", flush=True)
sys.stdin.read()  # until the test closes our stdin
server.stop()
"""

_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


@contextmanager
def sail_with_glue() -> Iterator[tuple[str, str]]:
    """Yields (the Sail server's sc:// address, moto's endpoint) with the Glue database ``default`` made."""
    import boto3

    with moto_server() as endpoint:
        boto3.client("glue", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_database(DatabaseInput={"Name": "default"})
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAIL_", "SPARK_"))}
        env |= _AWS | {"SAIL_CATALOG__LIST": f'[{{type="glue", name="sail", region="us-east-1", '
                                             f'endpoint_url="{endpoint}"}}]'}
        proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            assert proc.stdout is not None
            address = proc.stdout.readline().strip()
            assert address.startswith("sc://127.0.0.1:"), address
            yield address, endpoint
        finally:
            stop(proc)
