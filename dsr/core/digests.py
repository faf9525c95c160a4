"""Keyed digests of subject ids for the suppression list (:mod:`dsr.core.suppression`): pure functions.

The secret is derived from the pseudonym key in its own domain (a declared identifier kind's, from that with
the kind's name: :func:`kind_secret`); the digest of a value is hex SHA-256 of ``secret:value``, which the
engines compute the same way in SQL over a table's rows (:mod:`dsr.engines.matching`). A fingerprint of the
key goes with each entry, so a sweep with another key fails instead of matching nobody.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["key_check", "kind_secret", "suppression_digest", "suppression_secret"]


def suppression_secret(key: bytes) -> str:
    """The secret of the suppression list's digests (derived from the key in its own domain, hex): what the
    engines hash a subject value with, as data; never the key itself."""
    return hmac.new(key, b"dsr-lake/suppression/v1", hashlib.sha256).hexdigest()


def kind_secret(secret: str, kind: str | None) -> str:
    """The secret of one identifier kind's digests: ``secret:kind``, so equal values of two kinds (a user id
    ``77``, a customer number 77) never share a digest. The implicit kind (``None``: a policy without
    ``identifiers``) keeps the list's own secret, so entries made before kinds existed still match."""
    return secret if kind is None else f"{secret}:{kind}"


def suppression_digest(secret: str, text: str) -> str:
    """A suppression entry's digest of one subject value in its text form: hex SHA-256 of ``secret:text``. The
    engines compute the same in SQL (``sha256(concat(secret, ':', CAST(value AS string)))``) over a table's
    rows; without the secret it cannot be computed for a guessed id."""
    return hashlib.sha256(f"{secret}:{text}".encode()).hexdigest()


def key_check(key: bytes) -> str:
    """A fingerprint of the key (16 hex digits, its own domain) stored with each suppression entry, so a sweep
    with another key fails instead of matching nothing."""
    return hmac.new(key, b"dsr-lake/key-check/v1", hashlib.sha256).hexdigest()[:16]
