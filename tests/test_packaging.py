"""pyproject.toml builds as ``pip install -e .`` builds it (an isolated build with the declared setuptools),
without a warning: the license is an SPDX string, which the required setuptools understands."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_package_builds_without_a_license_warning_and_declares_its_spdx_license(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "dsr", src / "dsr", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-v", "-w",
                            str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    log = built.stdout + built.stderr
    assert built.returncode == 0, log[-3000:]
    assert "license" not in " ".join(ln for ln in log.splitlines() if "Warning" in ln or "deprecated" in ln).lower()
    assert "SetuptoolsDeprecationWarning" not in log, log[-3000:]
    (wheel,) = (tmp_path / "dist").glob("dsr_lake-*.whl")
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(z.read(name))
    assert metadata["License-Expression"] == "Apache-2.0"
