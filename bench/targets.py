"""Issue 13's targets, judged on one ``bench/compare.py`` result: met or not, and for each the measured breakdown
of where the time (or memory) goes, so a target that is not met shows its remaining floor in numbers.

Pure: a result dict in, verdict dicts out (printed by ``compare.py`` and written into its JSON).
"""

from __future__ import annotations

from typing import Any

LARGE = 20_000_000
"""From this many rows on, the run is judged whole (the GE import included) against 2x the erase step."""


def _ok(r: dict[str, Any] | None) -> bool:
    return bool(r) and "error" not in r and bool(r.get("seconds"))  # type: ignore[union-attr]


def _steps(run: dict[str, Any]) -> str:
    parts = [f"{k} {v:.2f}" for k, v in run.get("steps", {}).items() if k != "finish_exports"]
    return ", ".join(parts) + f" (GE import {run.get('ge_seconds', 0):.2f} apart)"


def _verdict(target: str, case: str, measured: float, limit: float, breakdown: str) -> dict[str, Any]:
    return {"target": target, "case": case, "measured": round(measured, 2), "limit": limit,
            "met": measured <= limit, "breakdown": breakdown}


def _run(rows: int, k: int, case: str, r: dict[str, Any]) -> dict[str, Any] | None:
    run, erase = r.get("dsr_run"), r.get("dsr_erase")
    if not _ok(run) or not _ok(erase) or (rows < LARGE and 1 < k < 1000):
        return None
    assert run is not None and erase is not None
    whole = rows >= LARGE
    spent = run["seconds"] - (0.0 if whole else run.get("ge_seconds", 0.0))
    steps = run.get("steps", {})
    verify = steps.get("verify", 0.0)
    rest = spent - erase["seconds"] - verify
    target = "whole run <= 2x erase step" if whole else \
        f"(run - GE import) <= {2 if k >= 1000 else 3}x erase step"
    suites = run.get("ge_validations_seconds")
    within = f", of which GE validating the suites {suites:.2f} s" if suites is not None else ""
    imported = run.get("ge_seconds", 0.0) if whole else 0.0
    ge = f"the GE import {imported:.2f} s, " if whole else ""
    return _verdict(target, case, spent / erase["seconds"], 2.0 if whole or k >= 1000 else 3.0,
                    f"run {spent:.2f} s = {_steps(run)}; beyond the erase step ({erase['seconds']:.2f} s): "
                    f"verify {verify:.2f} s ({verify / erase['seconds']:.1f}x the step{within}), {ge}claim, "
                    f"complete and the rest {max(rest - imported, 0.0):.2f} s")


def _erase(k: int, case: str, r: dict[str, Any]) -> dict[str, Any] | None:
    erase, bound, alone = r.get("dsr_erase"), r.get("bound"), r.get("merge_alone")
    if not _ok(erase) or not _ok(bound):
        return None
    assert erase is not None and bound is not None
    merge = erase.get("merge_seconds", erase["seconds"])
    text = (f"erase {erase['seconds']:.2f} s = MERGE {merge:.2f} s ({merge / bound['seconds']:.1f}x the bound "
            f"{bound['seconds']:.2f} s) + pre-count and bookkeeping {erase.get('rest_seconds', 0):.2f} s; "
            f"files removed {erase.get('files_removed')} of {r.get('_holding')} holding rows")
    if _ok(alone):
        assert alone is not None
        over = alone["seconds"] / bound["seconds"]
        text += (f"; the same MERGE alone {alone['seconds']:.2f} s ({over:.1f}x the bound"
                 + (": delta-rs' streamed MERGE reads every file of the partitions it may touch, where the bound "
                    "reads only the files holding rows)" if over > 1.3 else ")"))
    if erase.get("rest_seconds", 0) > merge - bound["seconds"]:
        text += f"; dsr's own part (pre-count, {k} request(s)' audit events) is the larger excess"
    return _verdict(f"erase step <= {1.3 if k >= 100 else 2}x bound", case, erase["seconds"] / bound["seconds"],
                    1.3 if k >= 100 else 2.0, text)


def _export(k: int, case: str, r: dict[str, Any]) -> dict[str, Any] | None:
    export, floor = r.get("dsr_export"), r.get("export_bound")
    if not _ok(export) or not _ok(floor):
        return None
    assert export is not None and floor is not None
    scan, packages = export.get("scan_seconds", export["seconds"]), export.get("packages_seconds", 0.0)
    files = r.get("files_floor")
    made = (f"; creating {k} file(s) alone takes {files['seconds']:.2f} s here" if _ok(files) and files else "")
    return _verdict("export <= 1.5x one filtered scan", case, export["seconds"] / floor["seconds"], 1.5,
                    f"export {export['seconds']:.2f} s = scan {scan:.2f} s ({scan / floor['seconds']:.1f}x the "
                    f"scan floor {floor['seconds']:.2f} s) + {k} package(s) {packages:.2f} s "
                    f"({1000 * packages / k:.2f} ms per request: a zip with document, manifest and README each, "
                    f"and the request's completion){made}")


def _memory(rows: int, case: str, r: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    erase, alone = r.get("dsr_erase"), r.get("merge_alone")
    if rows >= LARGE:
        for name in ("dsr_erase", "dsr_run"):
            got = r.get(name)
            if got and "error" not in got:
                out.append(_verdict(f"{name} peak RSS <= 2 GB", case, got["peak_rss_mb"] / 1024, 2.0,
                                    f"peak {got['peak_rss_mb']:.0f} MB"))
    if erase and alone and "error" not in erase and "error" not in alone:
        out.append(_verdict("erase step peak RSS <= 1.5x the MERGE alone", case,
                            erase["peak_rss_mb"] / alone["peak_rss_mb"], 1.5,
                            f"erase step {erase['peak_rss_mb']:.0f} MB, MERGE alone {alone['peak_rss_mb']:.0f} MB"))
    return out


def _spark(case: str, r: dict[str, Any]) -> dict[str, Any] | None:
    spark, merge = r.get("dsr_run_spark"), r.get("sail_merge")
    if not _ok(spark) or not _ok(merge):
        return None
    assert spark is not None and merge is not None
    spent = spark["seconds"] - spark.get("ge_seconds", 0.0)
    return _verdict("Spark engine (run - GE import) <= 2x the Sail MERGE", case, spent / merge["seconds"], 2.0,
                    f"run {spent:.2f} s = {_steps(spark)}; the MERGE alone on Sail {merge['seconds']:.2f} s")


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target the result's cases can judge, in the issue's order."""
    rows = int(result["params"]["rows"])
    out: list[dict[str, Any]] = []
    for c in result["cases"]:
        r = {**c["results"], "_holding": c["files_holding_rows"]}
        case = f"{c['layout']}, K={c['k']}"
        found = [_run(rows, c["k"], case, r), _erase(c["k"], case, r), _export(c["k"], case, r),
                 *_memory(rows, case, r), _spark(case, r)]
        out.extend(v for v in found if v is not None)
    return out


def print_verdicts(found: list[dict[str, Any]]) -> None:
    met = sum(v["met"] for v in found)
    print(f"\ntargets: {met} of {len(found)} met")
    for v in found:
        print(f"  {'met    ' if v['met'] else 'NOT MET'} {v['target']} [{v['case']}]: {v['measured']} "
              f"(limit {v['limit']})")
        if not v["met"]:
            print(f"          {v['breakdown']}")
