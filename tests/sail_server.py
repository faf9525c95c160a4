"""A Sail Spark Connect server in its own process (``python -m pysail spark server``), for tests and benches that
measure the dsr process: the server's reads and memory are then never the measured process's.

:func:`sail_server` picks a free port on 127.0.0.1, starts the server there, waits until it accepts connections
and yields ``sc://127.0.0.1:PORT``; on exit it stops the process it started (by its pid).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SailStartError", "sail_server"]


class SailStartError(RuntimeError):
    """The server process exited or did not listen in time."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def sail_server(*, attempts: int = 3, wait: float = 60.0, log: Path | None = None) -> Iterator[str]:
    """A Sail server process on 127.0.0.1; yields its ``sc://`` address. A port taken between the pick and the
    server's bind is retried on another (``attempts``); its output goes to ``log`` (else a temporary file)."""
    with tempfile.TemporaryDirectory(prefix="dsr-sail-") as tmp:
        out_path = log or Path(tmp) / "sail.log"
        for _ in range(attempts):
            port = _free_port()
            with out_path.open("ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "pysail", "spark", "server", "--ip", "127.0.0.1", "--port", str(port)],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp,
                    env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})
            try:
                if _wait(proc, port, wait):
                    yield f"sc://127.0.0.1:{port}"
                    return
            finally:
                _stop(proc)
        tail = out_path.read_text(encoding="utf-8", errors="replace")[-1000:]
        raise SailStartError(f"the Sail server did not start after {attempts} attempts: {tail}")


def _wait(proc: subprocess.Popen[bytes], port: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if _listening(port):
            return True
        time.sleep(0.1)
    raise SailStartError(f"the Sail server did not listen on port {port} within {wait:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
