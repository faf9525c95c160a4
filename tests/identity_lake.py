"""A lake where people are known by several identifiers (issue 23's test lake).

Émile (person A) has user id ``"77"``, the email ``Émile.Durand@Example.org`` (written differently in each
table: upper case and a trailing space in marketing, lower case in the CRM) and customer number 5001. Bea
(person B) has user id ``"88"``, her own email, and customer number **77**: equal, as text, to Émile's user id.

Tables (six, five of them with Émile's rows):

- ``users`` (anonymise; also a link table user_id <-> email);
- ``events`` (user_id, delete);
- ``marketing`` (email, delete);
- ``crm_customers`` (customer_no, delete; also a link table customer_no <-> email);
- ``support_tickets`` (customer_no, delete);
- ``messages`` (sender_id owner, recipient_id mentioned: pseudonymised; delete).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.lakes import Lake, _lake, write_table

__all__ = ["A_EMAIL", "POLICY", "build"]

A_EMAIL = "Émile.Durand@Example.org"
A_EMAIL_FORM = "émile.durand@example.org"

POLICY = """\
lake: ./lake
control: _dsr
exports: ./exports
pseudonym_key_env: DSR_PSEUDONYM_KEY
export_before_erase: true
identifiers:
  user_id: {type: string}
  email: {type: string, normalise: [trim, lower]}
  customer_no: {type: integer}
identity:
  - {path: users, columns: {user_id: user_id, email: email}}
  - {path: crm_customers, columns: {customer_no: customer_no, email: email}}
tables:
  - name: users
    path: users
    subject: user_id
    kind: user_id
    erase: anonymise
    mask: {user_id: pseudonymise, email: nullify, full_name: {redact: "[erased]"}}
  - {name: events, path: events, subject: user_id, kind: user_id, erase: delete}
  - {name: marketing, path: marketing, subject: email, kind: email, erase: delete}
  - {name: crm_customers, path: crm_customers, subject: customer_no, kind: customer_no, erase: delete}
  - {name: support_tickets, path: support_tickets, subject: customer_no, kind: customer_no, erase: delete}
  - name: messages
    path: messages
    erase: delete
    subjects:
      - {column: sender_id, kind: user_id}
      - {column: recipient_id, kind: user_id, role: mentioned, mask: {recipient_id: pseudonymise}}
"""


def build(root: Path, policy: str = POLICY) -> Lake:
    """The lake under root/lake and its policy (``policy``: the text, e.g. with a lower ``identity_max_ids``)."""
    import pyarrow as pa

    root.mkdir(parents=True, exist_ok=True)
    lake = root / "lake"
    write_table(lake / "users", {"user_id": ["77", "88", "99"], "email": [A_EMAIL, "bea@example.org", "cy@example.org"],
                                 "full_name": ["Émile Durand", "Bea", "Cy"]})
    write_table(lake / "events", {"user_id": ["77", "88", "77", "99", None], "page": ["/", "/a", "/b", "/c", "/d"]})
    write_table(lake / "marketing", {"email": ["ÉMILE.DURAND@EXAMPLE.ORG ", "bea@example.org", A_EMAIL,
                                               "emile.durand@example.org"],
                                     "campaign": ["spring", "spring", "autumn", "winter"]})
    write_table(lake / "crm_customers", {"customer_no": pa.array([5001, 77, 9001], pa.int64()),
                                         "email": [" émile.durand@example.org", "bea@example.org", "cy@example.org"],
                                         "tier": ["gold", "silver", "bronze"]})
    write_table(lake / "support_tickets", {"customer_no": pa.array([5001, 77, 5001, 9001], pa.int64()),
                                           "subject_line": ["refund", "login", "invoice", "other"]})
    write_table(lake / "messages", {"sender_id": ["77", "88", "99", "77", "88"],
                                    "recipient_id": ["88", "77", "88", "77", "99"],
                                    "body": ["hi Bea", "hi Émile", "hello", "note to self", "hey Cy"]})
    return _lake(root, policy)


def expected_after_erasure() -> dict[str, Any]:
    """What each table holds of the others after Émile's erasure (Bea's and Cy's rows, unchanged)."""
    return {
        "events": sorted(["88", "99", None], key=repr),
        "marketing": ["bea@example.org", "emile.durand@example.org"],  # the second: no accent, someone else
        "crm_customers": [77, 9001],
        "support_tickets": [(77, "login"), (9001, "other")],
    }
