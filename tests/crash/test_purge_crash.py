"""A purge killed at any point must never lose a table or leave a person behind (issue 21, invariant 10).

Each trial kills ``dsr purge`` with SIGKILL in a fresh copy of the scenario (``scenario.py``), runs it again (at
most twice, it must exit 0) and checks with readers that are not dsr's (``checks.py``): every table reads on delta-
rs and Sail, every other row is intact, no erased id in a decoded scan of the lake and the exports, ``dsr audit
verify`` passes, ``dsr requests``/``dsr receipt`` show every erasure purged with residue 0.

``make test`` runs one trial per kind of file event (locally; on S3 per kind where a crash did damage before: a
checkpoint, a commit replaced by its stub, a control-table commit), one per crash point (local)
and, on S3, the crash points just before a checkpoint, a log cleanup or a control-table write. ``make test-crash``
(``DSR_CRASH_FULL=1``, marker ``crash_full``) runs a trial at every file event and every crash point the untouched
run reaches, on both storages. A failure lists each failing trial: storage, target, the check, the place (ids
masked), counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pytest

from tests.crash.events import DEFAULT_FAMILIES, S3_DEFAULT_FAMILIES, family
from tests.crash.kit import Bench, Trial, failures, key

pytestmark = [pytest.mark.slow, pytest.mark.spark]

# File-event families (events.family) whose crash points matter most on S3: what comes right before them.
S3_POINT_FAMILIES = ("table:checkpoint:write", "table:log:rewrite", "table:log:delete", "table:last_checkpoint",
                     "control:data:write", "control:commit:write", "control:log:delete")


def _report(trials: Iterable[Trial], untouched: Trial | None = None) -> None:
    """Run the trials (a generator: each line is printed as its trial ends), then fail with every failing one."""
    shared = {key(f) for f in untouched.findings} if untouched else set()
    done = []
    for t in trials:
        done.append(t)
        print(t.line(shared) if not t.ok else f"[{t.storage}] {t.target}: ok ({t.seconds:.1f}s)", flush=True)
    print(f"{len(done)} trial(s), {sum(t.seconds for t in done):.0f}s")
    assert all(t.ok for t in done), failures(done, untouched)


def test_an_untouched_purge_passes_every_check(bench: Bench) -> None:
    trace = bench.trace()
    kinds = Counter(family(e.kind) for e in trace.events)
    print(f"[{bench.storage}] untouched run: {len(trace.events)} file event(s) in {len(kinds)} kind(s), "
          f"{len(trace.points)} crash point(s) reached; Sail cannot read after the run: "
          f"{sorted(bench.scenario.sail_unreadable) or 'none'}")
    for kind, n in sorted(kinds.items()):
        print(f"    {kind}: {n}")
    _report([trace.trial])


def test_a_kill_at_each_kind_of_file_event_converges(bench: Bench) -> None:
    families = S3_DEFAULT_FAMILIES if bench.storage == "s3" else DEFAULT_FAMILIES
    targets = bench.trace().first_of(families)
    absent = sorted(set(families) - {family(e.kind) for e in targets})
    print(f"[{bench.storage}] kinds the untouched purge did not produce: {absent or 'none'}")
    assert targets, "the untouched purge produced no file event of any kind the trials aim at"
    _report((bench.trial(event=e) for e in targets), bench.trace().trial)


def test_a_kill_at_each_crash_point_converges(local_bench: Bench) -> None:
    points = local_bench.trace().point_targets(every=False)
    assert points, "the purge reached no crash point (DSR_CRASH_TRACE listed none): each step needs one"
    _report((local_bench.trial(point=p) for p in points), local_bench.trace().trial)


@pytest.mark.s3
def test_a_kill_at_the_crash_points_before_checkpoints_log_cleanup_and_control_writes_converges_on_s3(
        local_bench: Bench, s3_bench: Bench) -> None:
    reached = set(s3_bench.trace().points)
    points = [p for p in local_bench.trace().points_before(S3_POINT_FAMILIES) if p in reached]
    assert points, ("no crash point comes before a checkpoint, a log cleanup or a control-table write "
                    f"(points reached: {len(reached)})")
    _report((s3_bench.trial(point=p) for p in points), s3_bench.trace().trial)


@pytest.mark.crash_full
def test_a_kill_at_every_file_event_converges(bench: Bench) -> None:
    trace = bench.trace()
    assert trace.events, "the untouched purge produced no file event"
    _report((bench.trial(event=e) for e in trace.events), trace.trial)


@pytest.mark.crash_full
def test_a_kill_at_every_crash_point_converges(bench: Bench) -> None:
    points = bench.trace().point_targets(every=True)
    assert points, "the purge reached no crash point (DSR_CRASH_TRACE listed none): each step needs one"
    _report((bench.trial(point=p) for p in points), bench.trace().trial)
