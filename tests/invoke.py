"""Running the ``dsr`` command in tests.

:func:`dsr` calls ``dsr.cli.main.main`` in this process, with the given working directory and environment, and
returns what a process would have: exit code, stdout, stderr. That is the default: it costs milliseconds, where a
fresh interpreter costs about a second. :func:`dsr_process` starts ``python -m dsr.cli`` for the tests whose
point is the behaviour of a real process (its exit status, what reaches the real stderr, import cost).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

__all__ = ["dsr", "dsr_process"]


@contextmanager
def _environment(env: Mapping[str, str] | None, cwd: Path | str | None) -> Iterator[None]:
    saved, here = dict(os.environ), os.getcwd()
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved)


def dsr(*args: str, cwd: Path | str | None = None, env: Mapping[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """``dsr ARGS`` in this process (``main()``), its output captured as a process's would be."""
    from dsr.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with _environment(env, cwd), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as stop:  # argparse's usage errors and --help
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return subprocess.CompletedProcess(["dsr", *args], code, out.getvalue(), err.getvalue())


def dsr_process(*args: str, cwd: Path | str | None = None, env: Mapping[str, str] | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m dsr.cli ARGS`` in a fresh interpreter, as a script or a DAG would run it."""
    return subprocess.run(
        [sys.executable, "-m", "dsr.cli", *args],
        cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout, check=False,
    )
