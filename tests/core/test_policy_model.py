"""dsr/core/policy_model.py: a valid policy is frozen objects (Policy, TableSpec, masks) with their accessors."""

from __future__ import annotations

import dataclasses

import pytest

from dsr.core.masks import Mask
from dsr.core.policy import Policy, TableSpec, load_policy
from tests import lakes
from tests.lakes import Lake


def test_a_valid_policy_parses_into_frozen_objects(small_lake: Lake) -> None:
    policy = load_policy(small_lake.policy_path)

    assert isinstance(policy, Policy)
    assert policy.lake == str(small_lake.lake)
    assert policy.requests_uri == str(small_lake.lake / "_dsr" / "requests")
    assert policy.audit_uri == str(small_lake.lake / "_dsr" / "audit")
    assert policy.export_before_erase is True
    assert isinstance(policy.tables, tuple) and all(isinstance(t, TableSpec) for t in policy.tables)
    events, users, consents = policy.tables
    assert (events.name, events.erase, events.subject, events.uri) == (
        "events", "delete", "user_id", str(small_lake.lake / "events")
    )
    assert users.mask_map == {
        "user_id": Mask("pseudonymise"),
        "email": Mask("nullify"),
        "full_name": Mask("redact", "[erased]"),
        "birth_date": Mask("year"),
        "last_ip": Mask("ipv4_24"),
    }
    assert users.never_export == ("password_hash",)
    assert consents.reason == "GDPR Art. 7(1): proof of consent"
    assert policy.table("users") is users
    assert policy.pseudonym_key() == lakes.KEY.encode()
    assert lakes.KEY not in repr(policy)

    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.lake = "/elsewhere"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        users.erase = "delete"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        users.masks[0][1].strategy = "nullify"  # type: ignore[misc]
