"""The crash-test kit: kill ``dsr purge`` (SIGKILL) at a file event or a crash point, run it again, check.

A :class:`Bench` is one storage (local or S3 on the hooked moto server) with its scenario built and run once
(``scenario.py``). Every trial starts from a fresh copy of that scenario's snapshot:

1. ``python -m dsr.cli --policy P purge`` runs as a real process and is killed at the target: a file event
   (``kind#rank``, ``events.py``; local: inotify, S3: the moto hook) or a crash point (``DSR_CRASH_AT``);
2. ``dsr purge`` runs again (in this process) until it exits 0, at most twice;
3. ``checks.check`` looks at what is left with readers that are not dsr's.

:meth:`Bench.trace` is the untouched run that lists the events and crash points the trials pick from (and is
itself the trial "no kill"). A :class:`Trial` keeps what happened and formats one line per failure.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.crash import checks, events
from tests.crash.events import CRASHPOINT, FileEvent, LocalWatch, Recorder
from tests.crash.scenario import Place, Scenario

__all__ = ["Bench", "Trace", "Trial", "environment", "failures", "key"]

REPO = Path(__file__).resolve().parents[2]
PURGE_TIMEOUT = 300.0


@dataclass
class Trial:
    """One trial: where, what it aimed at, what it hit, the re-runs' exit codes, the findings, the time."""

    storage: str
    target: str  # "kind#rank", "point NAME[:N]" or "none"
    hit: str | None = None  # the event or point it was killed at (None: it finished first)
    exit: int | None = None  # the killed process's exit status (-9: killed)
    reruns: list[int] = field(default_factory=list)
    findings: list[checks.Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    def line(self, shared: Collection[str] = ()) -> str:
        """The trial and its findings, one per line; findings whose key is in ``shared`` (those of the
        untouched run) are only counted."""
        killed = f"killed at {self.hit}" if self.hit else f"not killed (exit {self.exit})"
        head = f"[{self.storage}] {self.target}: {killed}; re-runs exit {self.reruns}; {self.seconds:.1f}s"
        own = [f for f in self.findings if key(f) not in shared]
        if len(own) < len(self.findings):
            head += f"; {len(self.findings) - len(own)} finding(s) as in the untouched run"
        return head + "".join(f"\n    {f}" for f in own)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def key(finding: checks.Finding) -> str:
    """A finding as text, random file-name parts blanked: the same defect in two copies has the same key."""
    return _UUID.sub("<uuid>", str(finding))


def failures(trials: Sequence[Trial], untouched: Trial | None = None) -> str:
    """A failure message for a list of trials: the untouched run's findings once, then each failing trial with
    the findings it adds."""
    bad = [t for t in trials if not t.ok]
    shared = {key(f) for f in untouched.findings} if untouched is not None else set()
    out = f"{len(bad)} of {len(trials)} trial(s) failed"
    if untouched is not None and untouched.findings and untouched not in trials:
        out += f"; the untouched run itself has {len(untouched.findings)} finding(s):\n" + untouched.line()
    return out + ":\n" + "\n".join(t.line(shared) for t in bad)


@dataclass
class Trace:
    """The untouched run: its file events in order, the crash points it reached in order, and the two merged
    (local: one inotify time line; each item a file event or ``("point", name, n)``)."""

    place: Place
    events: list[FileEvent]
    points: list[str]
    merged: list[Any]
    trial: Trial

    def first_of(self, families: Sequence[str]) -> list[FileEvent]:
        """The first event of each of these families (``events.family``), in trace order."""
        out: dict[str, FileEvent] = {}
        for e in self.events:
            if events.family(e.kind) in families:
                out.setdefault(events.family(e.kind), e)
        return list(out.values())

    def point_targets(self, every: bool) -> list[str]:
        """``NAME`` of each distinct point (first time reached), or ``NAME:N`` of every time one is reached."""
        if not every:
            return list(dict.fromkeys(self.points))
        seen: Counter[str] = Counter()
        out = []
        for p in self.points:
            seen[p] += 1
            out.append(f"{p}:{seen[p]}")
        return out

    def points_before(self, families: Sequence[str]) -> list[str]:
        """Distinct points whose next file event (on the merged time line) is of one of these families."""
        out: list[str] = []
        for i, item in enumerate(self.merged):
            if not isinstance(item, tuple):
                continue
            nxt = next((e for e in self.merged[i + 1:] if isinstance(e, FileEvent)), None)
            if nxt is not None and events.family(nxt.kind) in families and item[1] not in out:
                out.append(item[1])
        return out


class Bench:
    """One storage's scenario and how to run trials on it. ``hook``: the moto hook's client (S3 only)."""

    def __init__(self, storage: str, scenario: Scenario, spark: Any, work: Path, hook: Any = None,
                 env: dict[str, str] | None = None) -> None:
        self.storage = storage
        self.scenario = scenario
        self.spark = spark
        self.work = work
        self.hook = hook
        self.env = env or {}
        self._trace: Trace | None = None

    def environment(self) -> AbstractContextManager[None]:
        """This bench's environment (S3: the endpoint and test credentials) for in-process dsr and Sail."""
        return environment(self.env)

    # --- one process of dsr purge, watched ----------------------------------------------------------------

    def _process_env(self, place: Place, extra: dict[str, str]) -> dict[str, str]:
        env = {**os.environ, **self.env, **place.env, **extra}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        for k in ("DSR_CRASH_AT", "DSR_CRASH_TRACE"):
            if k not in extra:
                env.pop(k, None)
        return env

    def _start(self, place: Place, extra: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "dsr.cli", "--policy", str(place.policy_path), "purge"],
                                cwd=place.root.parent, env=self._process_env(place, extra),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def purge_process(self, place: Place, *, target: tuple[str, int] | None = None, point: str | None = None,
                      trace_points: Path | None = None) -> tuple[int, list[FileEvent], FileEvent | None]:
        """Run ``dsr purge`` as a process; kill it at the file event ``target`` (kind, rank), or let it kill
        itself at the crash point ``point``. Returns its exit status, the file events seen (in order, crash
        points included as events of kind ``crashpoint`` when ``trace_points`` is watched, local only) and the
        event it was killed at."""
        extra = {}
        if point:
            extra["DSR_CRASH_AT"] = point
        if trace_points:
            extra["DSR_CRASH_TRACE"] = str(trace_points)
        if self.storage == "s3":
            assert self.hook is not None
            self.hook.arm(place_roots(place), target)
            proc = self._start(place, extra)
            self.hook.pid(proc.pid)
            try:
                status = proc.wait(timeout=PURGE_TIMEOUT)
            finally:
                if proc.poll() is None:
                    proc.kill()
                seen, killed = self.hook.disarm()
            return status, seen, killed
        roots = {"lake": Path(place.lake), "exports": Path(place.exports),
                 "outside": Path(self.scenario.original.exports)}  # where a stored absolute path leads
        if trace_points:
            roots[CRASHPOINT] = trace_points.parent
        recorder = Recorder(target=target)
        watch = LocalWatch(roots, recorder)
        proc = self._start(place, extra)
        recorder.kill = lambda: os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + PURGE_TIMEOUT
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                watch.poll(0.02)
            if proc.poll() is None:
                proc.kill()
            status = proc.wait()
            watch.poll(0)  # what the process did before it died
        finally:
            watch.close()
        assert not watch.overflowed, "inotify's queue overflowed: the events' ranks cannot be trusted"
        return status, recorder.events, recorder.killed_at

    # --- trials -------------------------------------------------------------------------------------------

    def rerun(self, trial: Trial, place: Place) -> None:
        """``dsr purge`` again (in this process) until it exits 0, at most twice; a finding when it never does
        (with the last line it wrote)."""
        for _ in range(2):
            out = checks.run_dsr(place, "purge")
            trial.reruns.append(out.returncode)
            if out.returncode == 0:
                return
        said = (out.stderr.strip() or out.stdout.strip()).splitlines() or [""]
        trial.findings.append(checks.Finding("purge re-run", "dsr purge",
                                             f"exit codes {trial.reruns}, never 0 in two runs: {said[-1][:200]}"))

    def trial(self, *, event: FileEvent | None = None, point: str | None = None) -> Trial:
        """One trial from a fresh copy: kill at ``event`` (its kind and rank) or at ``point``; re-run; check."""
        started = time.monotonic()
        target = f"point {point}" if point else event.label if event else "none"
        trial = Trial(self.storage, target)
        with self.environment():
            place = self.scenario.fresh()
            status, _, killed = self.purge_process(place, target=(event.kind, event.rank) if event else None,
                                                   point=point)
            trial.exit = status
            if status == -signal.SIGKILL:
                trial.hit = killed.label if killed else (point or "?")
            self.rerun(trial, place)
            trial.findings += checks.check(place, self.spark, self.scenario)
            self.discard(place)
        trial.seconds = time.monotonic() - started
        return trial

    def trace(self) -> Trace:
        """The untouched run (once per bench): its events, its crash points, and its own checks."""
        if self._trace is not None:
            return self._trace
        started = time.monotonic()
        with self.environment():
            place = self.scenario.fresh("trace")
            points_file = self.work / "trace-points" / "points"
            points_file.parent.mkdir(parents=True, exist_ok=True)
            points_file.unlink(missing_ok=True)
            status, seen, _ = self.purge_process(place, trace_points=points_file)
            points = points_file.read_text(encoding="utf-8").split() if points_file.exists() else []
            trial = Trial(self.storage, "none", exit=status)
            if status != 0:
                trial.findings.append(checks.Finding("untouched purge", "dsr purge", f"exit {status}"))
            trial.findings += checks.check(place, self.spark, self.scenario)
        merged: list[Any] = []
        for e in seen:
            merged.append(("point", points[e.rank - 1], e.rank) if e.kind == CRASHPOINT and e.rank <= len(points)
                          else e)
        files = [e for e in seen if e.kind != CRASHPOINT]
        trial.seconds = time.monotonic() - started
        self._trace = Trace(place, files, points, merged, trial)
        return self._trace

    def discard(self, place: Place) -> None:
        """Remove a trial's copy (local folder; S3 buckets are left to the server's end)."""
        if not place.remote:
            shutil.rmtree(place.root, ignore_errors=True)


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` in ``os.environ`` for the duration (what was there before put back after)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def place_roots(place: Place) -> dict[str, str]:
    """The hook's roots: ``lake``/``exports`` -> ``bucket/prefix``."""
    return {name: uri[len("s3://"):] for name, uri in place.roots().items()}
