"""``dsr export-link`` refusing bad input on real parts (moto's S3 server, a real run's package): ``--for ''``
and a package that is gone from S3 are one line and exit 2, with no link printed and nothing recorded."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from dsr import steps
from dsr.core import audit, control
from dsr.engines.deltars import DeltaRsEngine
from tests import lakes
from tests.invoke import dsr


def _exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[lakes.Lake, str]:
    """A small lake whose exports go to s3://exp/links, with one completed export; returns it and its id."""
    lake = lakes.small(tmp_path / "w")
    text = lake.policy_path.read_text(encoding="utf-8").replace("exports: ./exports", "exports: s3://exp/links")
    lake.policy_path.write_text(text, encoding="utf-8")
    lake.use(monkeypatch)
    policy = lake.policy()
    rid, _ = control.submit(policy, "export", "u1")
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0
    return lake, rid


def _issued(lake: lakes.Lake, rid: str) -> int:
    return sum(1 for e in audit.events(lake.policy(), request_id=rid) if e["event"] == "export_link_issued")


@pytest.mark.s3
def test_a_link_for_nobody_is_refused(s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake, rid = _exported(tmp_path, monkeypatch)
    for blank in ("", "   "):
        out = dsr("export-link", rid, "--for", blank)
        assert out.returncode == 2 and out.stdout == ""
        assert out.stderr.strip().splitlines() == ["dsr: error: --for: empty: name who receives the link"]
    assert _issued(lake, rid) == 0
    assert dsr("export-link", rid, "--for", "support desk").returncode == 0  # a name is fine
    assert _issued(lake, rid) == 1


@pytest.mark.s3
def test_a_package_gone_from_s3_gets_no_link(s3_env: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    lake, rid = _exported(tmp_path, monkeypatch)
    (req,) = control.list_requests(lake.policy(), ids=[rid])
    assert req.export_uri == f"s3://exp/links/{rid}.zip"
    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    s3.delete_object(Bucket="exp", Key=f"links/{rid}.zip")  # removed outside dsr (a lifecycle rule, a person)

    out = dsr("export-link", rid, "--for", "support desk")

    assert out.returncode == 2 and out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line == (f"dsr: error: export {rid}: its package is gone from s3://exp/links/{rid}.zip (deleted "
                    "outside dsr?): no link issued")
    assert _issued(lake, rid) == 0
