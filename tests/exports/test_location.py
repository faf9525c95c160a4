"""The exports location and cleanup (dsr/exports/location.py): remove_run_parts and remove_stale_parts, and
check_location on a local folder and on moto's S3 server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest

from dsr import exports as exporting
from dsr.errors import InputError
from dsr.exports import finish_documents
from dsr.exports import location as exports_location
from tests.exports.conftest import NOW, _keys, _real, _write
from tests.moto_s3 import aws_env

# --- cleanup --------------------------------------------------------------------------------------------------


def _three_runs(ex: str) -> None:
    for run in ("run_a", "run_b", "run_c"):
        _write(ex, run, "events", {"req_1": [{"n": 1}], "req_2": [{"n": 2}]}, buffer_bytes=1)
        _write(ex, run, "users", {"req_1": [{"n": 1}], "req_2": []})
    finish_documents(ex, "run_b", [("req_1", "s1"), ("req_2", "s2")], ["events", "users"], exported_at=NOW)


def test_remove_run_parts_and_stale_parts_locally(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    ex = str(root)
    _three_runs(ex)
    for name in ("req_7.zip.run_a.tmp", "req_8.zip.run_b.tmp", "req_9.zip.sealed.run_c.tmp", "req_6.json.tmp"):
        (root / name).write_text("{")  # a run died while writing documents
    docs = {p.name: p.read_bytes() for p in root.glob("*.zip")}
    assert sorted(docs) == ["req_1.zip", "req_2.zip"]

    assert exporting.remove_stale_parts(ex, ["run_b"]) == 2
    assert sorted(os.listdir(root / "_parts")) == ["run_b"]
    assert sorted(p.name for p in root.glob("*.tmp")) == ["req_6.json.tmp", "req_8.zip.run_b.tmp"]
    assert {p.name: p.read_bytes() for p in root.glob("*.zip")} == docs

    assert exporting.remove_stale_parts(ex, ["run_b"]) == 0
    exporting.remove_run_parts(ex, "run_b")
    assert not (root / "_parts").exists()  # the empty _parts folder is tidied too
    exporting.remove_run_parts(ex, "run_b")  # idempotent
    assert exporting.remove_stale_parts(ex, []) == 0
    assert sorted(os.listdir(root)) == ["req_1.zip", "req_2.zip"]  # no live run: the old-style .tmp goes too
    assert exporting.remove_stale_parts(str(tmp_path / "missing"), []) == 0
    assert not (tmp_path / "missing").exists()


# --- the exports location -----------------------------------------------------------------------------------


def test_check_location_local(tmp_path: Path) -> None:
    (tmp_path / "exists").mkdir()
    exporting.check_location(str(tmp_path / "exists"))
    exporting.check_location(str(tmp_path / "not" / "yet" / "there"))  # nearest existing ancestor is writable
    exporting.check_location(os.path.relpath(tmp_path / "exists"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]  # nothing created
    assert list((tmp_path / "exists").iterdir()) == []

    (tmp_path / "file").write_text("x")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    cases = {
        str(tmp_path / "file"): "exists and is not a directory",
        str(tmp_path / "file" / "exports"): f"cannot be created: {tmp_path / 'file'} is not a directory",
        str(tmp_path / "dangling"): "is a broken symbolic link",
        "gs://bucket/exports": "unsupported scheme 'gs://'",
        "file:///tmp/exports": "unsupported scheme 'file://'",
        "s3:///exports": "no bucket",
        "": "exports location is empty",
    }
    for location, problem in cases.items():
        with pytest.raises(InputError) as err:
            exporting.check_location(location)
        msg = str(err.value)
        assert problem in msg and "\n" not in msg and (not location or repr(location) in msg), msg


def _checks(paths: list[str], uid: int | None) -> list[str]:
    """check_location's verdict on each path, as uid (in a forked child) or as ourselves."""
    def run() -> list[str]:
        out = []
        for p in paths:
            try:
                exporting.check_location(p)
                out.append("ok")
            except InputError as e:
                out.append(str(e))
        return out

    if uid is None:
        return run()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.write(w, json.dumps(run()).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return list(json.loads(data))


def test_check_location_refuses_a_folder_it_cannot_write() -> None:
    base = Path(tempfile.mkdtemp(prefix="dsr-ro-"))  # not under tmp_path: that is private to root
    try:
        os.chmod(base, 0o755)
        ro = base / "ro"
        ro.mkdir(mode=0o555)
        os.chmod(ro, 0o555)
        # root writes anywhere: ask as nobody
        lines = _checks([str(ro), str(ro / "exports"), str(ro / "a" / "b")], 65534 if os.geteuid() == 0 else None)
    finally:
        shutil.rmtree(base)
    assert lines == [
        f"exports location {str(ro)!r}: the directory is not writable",
        f"exports location {str(ro / 'exports')!r}: cannot be created: {ro} is not writable",
        f"exports location {str(ro / 'a' / 'b')!r}: cannot be created: {ro} is not writable",
    ]


# --- S3 (moto) ------------------------------------------------------------------------------------------------

@pytest.mark.s3
@pytest.mark.timeout(60)
def test_check_location_s3(s3: Any) -> None:
    exporting.check_location("s3://exp")
    exporting.check_location("s3://exp/new/prefix")
    exporting.check_location("s3a://exp/docs")
    assert _real(_keys(s3, "new/")) == [] and _keys(s3, "new") == {}  # nothing written
    for location in ("s3://missing-bucket/exports", "s3a://missing-bucket"):
        with pytest.raises(InputError) as err:
            exporting.check_location(location)
        assert str(err.value) == f"exports location {location!r}: bucket 'missing-bucket' does not exist"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.s3
@pytest.mark.timeout(30)  # fails fast: one attempt, short timeouts (pyarrow's defaults retry for long)
def test_check_location_s3_unreachable_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    aws_env(monkeypatch, f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    with pytest.raises(InputError) as err:
        exporting.check_location("s3://exp/exports")
    msg = str(err.value)
    assert msg.startswith("exports location 's3://exp/exports': S3 cannot be reached or refused access: ")
    assert "\n" not in msg

    with socket.socket() as server:  # accepts connections, never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        aws_env(monkeypatch, f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.setattr(exports_location, "CHECK_REQUEST_TIMEOUT", 1.0)
        with pytest.raises(InputError, match="S3 cannot be reached or refused access"):
            exporting.check_location("s3://exp/exports")
