"""Fixtures of the step tests: a one-table lake whose subjects test matching (Unicode forms, case, blanks)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pyarrow as pa
import pytest

from dsr.core.policy import Policy
from tests import lakes

NFC = unicodedata.normalize("NFC", "José")
NFD = unicodedata.normalize("NFD", "José")


def events_table(users: list[str], start: int = 0) -> pa.Table:
    """Rows of the one-table lake's events: numbered, one user id each."""
    return pa.table({"event_id": pa.array(range(start, start + len(users)), pa.int64()),
                     "user_id": pa.array(users, pa.string())})


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Policy:
    """events (delete) holding José (NFC), anna, bob and 'dora ' (a trailing blank); max_attempts 5."""
    monkeypatch.delenv("DSR_POLICY", raising=False)
    lakes.write_table(tmp_path / "lake" / "events", events_table([NFC, "anna", "bob", NFC, "anna", "bob", "dora "]))
    lakes.write_policy(tmp_path, """\
        lake: ./lake
        exports: ./exports
        max_attempts: 5
        tables:
          - {name: events, path: events, subject: user_id, erase: delete}
        """)
    return lakes.Lake(tmp_path, tmp_path / "dsr.yml").policy()
