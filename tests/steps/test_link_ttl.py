"""dsr/steps/links.py (``dsr export-link``): without ``--ttl`` a link lasts what is left of the package's life,
at most 7 days, as the command's help and README say. Packages on moto's S3 server; the link's
``X-Amz-Expires`` is read from the URL itself."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from pathlib import Path

import pytest

from dsr import steps
from dsr.core import control
from dsr.engines.deltars import DeltaRsEngine
from dsr.steps.links import expires_at, issue_link
from tests import lakes
from tests.invoke import dsr

pytestmark = pytest.mark.s3

WEEK = 7 * 24 * 3600


def _expires(url: str) -> int:
    return int(urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-Expires"][0])


def test_without_ttl_a_link_lasts_the_packages_remaining_life_at_most_7_days(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = lakes.small(tmp_path / "w")
    text = lake.policy_path.read_text(encoding="utf-8").replace("exports: ./exports", "exports: s3://exp/links")
    lake.policy_path.write_text(text, encoding="utf-8")
    policy = lake.use(monkeypatch).policy()
    rid, _ = control.submit(policy, "export", "u1")
    assert steps.run(policy, DeltaRsEngine()).exit_code == 0

    out = dsr("export-link", rid, "--for", "support desk", "--json")  # 30 days left: capped at 7 days
    assert out.returncode == 0, out.stderr
    link = json.loads(out.stdout)
    assert link["ttl_seconds"] == WEEK and _expires(link["url"]) == WEEK

    ends = expires_at(control.list_requests(policy, ids=[rid])[0], policy)
    late = issue_link(policy, rid, issued_for="support desk", now=ends - dt.timedelta(days=2, hours=3))
    assert late.ttl_seconds == (2 * 24 + 3) * 3600 == _expires(late.url)  # what is left, not 7 days
    assert late.expires_at == ends
