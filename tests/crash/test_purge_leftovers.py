"""What an uninterrupted purge leaves where it should not (issue 21, points 3 and 4), on the crash scenario:

* a table partitioned by its subject column, with Spark's ``.part-*.parquet.crc`` checksum beside each data
  file, and a Parquet file holding an erased id that no log action names, purge to no file or folder naming
  the person and no data file holding the id;
* a purge in a copy of a lake (a restored backup, a test copy) touches only that copy's exports, never the
  packages the control table names by the absolute path they had where the lake ran first.
"""

from __future__ import annotations

import hashlib

import pytest

from tests import bytescan
from tests.crash import decoded
from tests.crash.checks import MASK
from tests.crash.kit import Bench
from tests.crash.scenario import ERASED, EXPORTED, KEPT_EXPORTED, Place, listing
from tests.invoke import dsr

pytestmark = [pytest.mark.slow, pytest.mark.spark]


def _purge(bench: Bench, label: str) -> tuple[Place, str]:
    place = bench.scenario.fresh(label)
    out = dsr("--policy", str(place.policy_path), "purge", env=place.env)
    return place, f"dsr purge exit {out.returncode}"


def test_checksums_and_an_unreferenced_file_leave_no_name_or_value_of_the_person(bench: Bench) -> None:
    with bench.environment():
        place, ran = _purge(bench, "leftovers")
        roots = {name: f"{place.lake}/{name}" for name in ("by_subject", "events")}
        found, _ = decoded.scan(roots, decoded.Finder(ERASED))
    left = sorted(f"{rel} ({where}: {n})" for (rel, where), n in found.items()
                  if where == "names" or (where.startswith("parquet values") and "_delta_log/" not in rel))
    assert len(left) == 0, MASK(f"[{bench.storage}] {ran}; {len(left)} file(s) or folder(s) still name an erased "
                          "person or hold one in a data file:\n  " + "\n  ".join(left))


def _digests(*roots: str) -> dict[str, str]:
    return {f"{root}/{key}": hashlib.sha256(data).hexdigest() for root in roots for key, data in bytescan.objects(root)}


def test_a_purge_in_a_copied_lake_touches_only_its_own_exports(bench: Bench) -> None:
    story = bench.scenario
    with bench.environment():
        place = story.fresh("copied")  # puts the original's exports back as the run left them
        outside = (story.original.lake, story.original.exports, story.snapshot.lake, story.snapshot.exports)
        before = _digests(*outside)
        ran = dsr("--policy", str(place.policy_path), "purge", env=place.env)
        after = _digests(*outside)
        own = listing(place.exports)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    gone = [f"{story.exports[sid]}.zip" for sid in EXPORTED]
    kept = f"{story.exports[KEPT_EXPORTED]}.zip"
    left = [name for name in gone if name in own]
    clean = not changed and not left and kept in own
    assert clean, MASK(
        f"[{bench.storage}] dsr purge exit {ran.returncode} in a copy: {len(changed)} file(s) outside the copy "
        f"changed or deleted ({', '.join(p.rsplit('/', 1)[-1] for p in changed)}); the copy still has "
        f"{len(left)} of the {len(gone)} erased people's package(s) ({', '.join(left)}); its kept package "
        f"{'is there' if kept in own else 'is gone'}")
