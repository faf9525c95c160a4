"""A column-mapping table (written by Spark: parquet files hold physical names such as ``col-5f42...``).

The old path read it with ``to_pyarrow_dataset``, which sees every column-mapped column as NULL: the export
was empty, the MERGE matched nothing, and the absence check passed over a column of NULLs — "completed" with
the person still there. Now the table is read through the access layer (names mapped) and erased; and a read
that does come back blind fails verification instead of passing it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from dsr import steps
from dsr.core import control
from dsr.core.policy import check_against_lake, load_policy
from dsr.delta import access
from dsr.engines.deltars import DeltaRsEngine
from dsr.verify import checks as tablecheck
from dsr.verify.ge import Validator
from tests import real_tables as rt

TABLE = rt.VENDORED / "data-skipping-basic-stats-all-types-columnmapping-name"


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv(rt.KEY_ENV, rt.KEY)
    monkeypatch.delenv("DSR_POLICY", raising=False)
    case = rt.case_for(TABLE)
    assert case is not None and case.subject == "as_int" and case.value == 0
    policy = load_policy(rt.make_lake(tmp_path, case, "delete"))
    check_against_lake(policy)
    return {"case": case, "policy": policy, "uri": policy.tables[0].uri}


def test_the_old_reader_saw_nulls_and_its_absence_check_passed_with_the_person_present(lake: dict[str, Any]) -> None:
    uri = lake["uri"]
    old = DeltaTable(uri).to_pyarrow_table()
    assert old.num_rows == 1 and old.column("as_int").null_count == 1  # blind: every value NULL
    assert [r["as_int"] for r in rt.read_rows(uri)] == [0]  # yet the row of subject 0 is there
    outcome = Validator.shared().validate(
        "dsr_erased_absent", old.select(["as_int"]).to_pandas(), "pandas", subs={"$subject": "as_int"},
        params={"erased_subjects": [0]},
    )
    assert outcome.success  # what made the old path report "erased"


def test_dsr_now_exports_and_erases_the_row(lake: dict[str, Any]) -> None:
    policy, uri = lake["policy"], lake["uri"]
    erase_id = control.submit(policy, "erase", "0")[0]
    export_id = control.submit(policy, "export", "0")[0]
    report = steps.run(policy, DeltaRsEngine())
    assert report.exit_code == 0, report.as_dict()
    assert rt.read_rows(uri) == []
    export = control.list_requests(policy, ids=[export_id])[0]
    doc = json.loads(Path(str(export.export_uri)).read_text(encoding="utf-8"))
    assert [row["as_int"] for row in doc["tables"][policy.tables[0].name]] == [0]
    result = control.list_requests(policy, ids=[erase_id])[0].result_json()
    assert result["tables"][policy.tables[0].name]["rows"] == 1


def test_a_blind_read_fails_verification_instead_of_passing(
    lake: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = lake["policy"]
    table = policy.tables[0]
    real_scan = access.scan

    def blind(uri: str, columns: Any = None, **kw: Any) -> Any:
        """The old reader's view: the mapped columns come back NULL."""
        for batch in real_scan(uri, columns, **kw):
            yield pa.RecordBatch.from_arrays(
                [pa.nulls(batch.num_rows, f.type) for f in batch.schema], schema=batch.schema)

    sighted = tablecheck.check_table(policy, table, ["0"])
    assert not sighted.success  # the row is there: the honest read finds it
    monkeypatch.setattr(access, "scan", blind)
    check = tablecheck.check_table(policy, table, ["0"])
    by_suite = {s["suite"]: s for s in check.suites}
    assert by_suite["dsr_erased_absent"]["success"] is True  # NULLs are never in the erased set...
    assert by_suite["dsr_read_sighted"]["success"] is False  # ...but a blind column is not a pass
    assert not check.success
    assert any("log statistics: 1 non-null" in n for n in check.notes)
