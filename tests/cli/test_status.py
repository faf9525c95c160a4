"""``dsr status`` on a real busy lake with completed, pending, overdue and failed requests: the counts, the exit
code, the JSON, the Prometheus text (parsed by prometheus_client's own parser, checked by ``promtool check
metrics``, and the metrics README lists), and no subject id anywhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dsr.cli.main import main
from dsr.core import control
from dsr.core.policy import load_policy
from tests import lakes
from tests.invoke import dsr
from tests.leaks import Leaks


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> lakes.Lake:
    """Two erasures and an export completed by a real run; one erasure pending; one failed for good (its table
    refused); one filed under a policy with ``due_days: 0``, so overdue at once."""
    lake = lakes.busy(tmp_path_factory.mktemp("status") / "w")
    env = lake.env
    for kind, subject in (("erase", "1003"), ("erase", "1007"), ("export", "1005")):
        assert dsr("request", kind, subject, env=env).returncode == 0
    assert dsr("run", env=env).returncode == 0
    assert dsr("request", "erase", "1011", env=env).returncode == 0
    policy = load_policy(lake.policy_path)
    rid, _ = control.submit(policy, "erase", "1020")
    (got,) = control.claim(policy, "run_status_test", ids=[rid])
    control.fail(policy, "run_status_test", {got.request_id: "table 'events': refused: a reader feature"},
                 final=[got.request_id])
    urgent = lakes.write_policy(lake.root, lake.policy_path.read_text() + "due_days: 0\n", "urgent.yml")
    assert dsr("--policy", str(urgent), "request", "export", "1030", env=env).returncode == 0
    return lake


def _leaks() -> Leaks:
    return Leaks(["1003", "1007", "1005", "1011", "1020", "1030"])


def test_status_counts_overdue_and_failed_and_exits_1(lake: lakes.Lake) -> None:
    out = dsr("status", "--json", env=lake.env)
    assert out.returncode == 1, out.stderr
    s = json.loads(out.stdout)
    counts = {(c["kind"], c["status"]): c["requests"] for c in s["counts"]}
    assert counts == {("erase", "completed"): 2, ("erase", "pending"): 1, ("erase", "failed"): 1,
                      ("erase", "running"): 0, ("export", "completed"): 1, ("export", "pending"): 1,
                      ("export", "running"): 0, ("export", "failed"): 0}
    by_id = {r.request_id: r for r in control.list_requests(load_policy(lake.policy_path))}
    (overdue,) = s["overdue"]
    assert by_id[overdue["request_id"]].kind == "export" and overdue["status"] == "pending"
    assert s["due_soon"] == []
    (failed,) = s["failed"]
    assert failed["final"] and failed["attempts"] == 3 and "refused: a reader feature" in failed["error"]
    assert s["oldest_open"]["request_id"] in {r for r, v in by_id.items() if v.status != "completed"}
    tables = {t["table"]: t for t in s["tables"]}
    assert tables["events"]["last_erase_at"] and tables["events"]["failures_total"] == 0
    assert s["purges_due"] == [] and s["purges_overdue"] == []  # the default window is 168 hours
    assert s["last_completed"]["run_id"].startswith("run_")
    assert not _leaks().found_in(out.stdout + out.stderr)


def test_status_text_names_request_ids_and_reasons(lake: lakes.Lake) -> None:
    out = dsr("status", env=lake.env)
    assert out.returncode == 1
    assert "OVERDUE" in out.stdout and "FAILED" in out.stdout and "refused: a reader feature" in out.stdout
    assert "status: ALERT" in out.stdout
    assert not _leaks().found_in(out.stdout + out.stderr)


def test_status_prometheus_parses_with_prometheus_client(lake: lakes.Lake) -> None:
    out = dsr("status", "--prometheus", env=lake.env)
    assert out.returncode == 1
    families = {f.name: f for f in text_string_to_metric_families(out.stdout)}
    requests = {(s.labels["kind"], s.labels["status"]): s.value for s in families["dsr_requests"].samples}
    assert requests[("erase", "completed")] == 2 and requests[("export", "pending")] == 1
    assert {s.labels["kind"]: s.value for s in families["dsr_requests_overdue"].samples} == {"erase": 0, "export": 1}
    assert families["dsr_table_failures"].type == "counter"
    assert {s.name for s in families["dsr_table_failures"].samples} == {"dsr_table_failures_total"}
    assert "# TYPE dsr_table_failures_total counter" in out.stdout  # the family as promtool expects it
    assert not [s.name for f in families.values() for s in f.samples if s.name.endswith("_created")]
    erased = {s.labels["table"]: s.value for s in families["dsr_table_last_erase_timestamp_seconds"].samples}
    assert set(erased) == {"events", "users", "orders", "consents"} and min(erased.values()) > 1.7e9
    assert families["dsr_status_ok"].samples[0].value == 0
    assert "req_" not in out.stdout and not _leaks().found_in(out.stdout)


def _promtool() -> str:
    """promtool (Debian's prometheus package; ``make install`` installs it as root). Under CI=true a missing
    promtool fails the test instead of skipping it."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (make install installs Debian's prometheus package): CI runs this test")
        pytest.skip("promtool is missing: apt-get install prometheus (make install does it as root)")
    return found


def test_status_prometheus_passes_promtool_check_metrics(lake: lakes.Lake) -> None:
    out = dsr("status", "--prometheus", env=lake.env)
    assert out.returncode == 1 and out.stdout
    checked = subprocess.run([_promtool(), "check", "metrics"], input=out.stdout, capture_output=True, text=True,
                             timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _readme_metrics() -> dict[str, str]:
    """The metrics table of README's *Running it in production*: exposed name -> type."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("**What to monitor: `dsr status`.**", 1)[1].split("**The alert:", 1)[0]
    rows = re.findall(r"^\| `(dsr_[a-z_]+)(?:\{[a-z,]*\})?` \| (gauge|counter) \|", section, flags=re.MULTILINE)
    return dict(rows)


def test_readme_lists_every_prometheus_metric_with_its_type(lake: lakes.Lake) -> None:
    out = dsr("status", "--prometheus", env=lake.env)
    families = {f.name: f for f in text_string_to_metric_families(out.stdout)}
    exposed = {f.name + ("_total" if f.type == "counter" else ""): f.type for f in families.values()}
    assert _readme_metrics() == exposed


def test_status_is_ok_without_anything_overdue(tmp_path: Path) -> None:
    lake = lakes.busy(tmp_path / "w")
    assert dsr("request", "erase", "1003", env=lake.env).returncode == 0
    out = dsr("status", env=lake.env)
    assert out.returncode == 0, out.stdout
    assert "erase: 0 completed, 0 failed, 1 pending, 0 running" in out.stdout and "status: OK" in out.stdout


def test_json_and_prometheus_are_exclusive(lake: lakes.Lake) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["status", "--json", "--prometheus"])
    assert exc.value.code == 2
