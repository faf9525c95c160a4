"""The policy as frozen objects: tables (subject, strategy, masks), exempt paths, the run settings.

The HMAC key is not part of it: ``Policy.pseudonym_key()`` reads it from the environment when asked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from dsr.core.delivery import Delivery
from dsr.core.identifiers import IMPLICIT, IdKind
from dsr.core.masks import MASKS, Mask, Strategy
from dsr.delta import storage
from dsr.errors import PolicyError

ERASE_STRATEGIES = tuple(s.value for s in Strategy)
MASK_STRATEGIES = tuple(MASKS)
SUBJECT_MASKS = tuple(name for name, kind in MASKS.items() if kind.masks_subject)

MIN_KEY_BYTES = 16
_KEY_RULE = f"at least {MIN_KEY_BYTES} bytes, not counting white space"


OWNER = "owner"
MENTIONED = "mentioned"
ROLES = (OWNER, MENTIONED)


@dataclass(frozen=True)
class SubjectColumn:
    """A column of a table that holds one kind of identifier of a person, and what erasure does when the person
    is found there: ``owner`` (the table's strategy for the whole row) or ``mentioned`` (only ``masks``: the
    column itself and those it names; the row, someone else's, stays)."""

    column: str
    kind: str = IMPLICIT
    role: str = OWNER
    masks: tuple[tuple[str, Mask], ...] = ()

    @property
    def owner(self) -> bool:
        return self.role == OWNER


@dataclass(frozen=True)
class IdentityLink:
    """A link table: its columns that hold identifiers of the same person (column -> kind)."""

    path: str
    uri: str
    columns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TableSpec:
    name: str
    path: str
    uri: str
    subject: str
    erase: Strategy
    masks: tuple[tuple[str, Mask], ...] = ()
    reason: str | None = None
    never_export: tuple[str, ...] = ()
    export: bool = True
    purge_after_hours: int | None = None  # None: the policy's
    catalog: str | None = None
    """``table:`` in the policy: the name in the Spark catalog (``schema.table``...). ``path`` and ``uri`` are
    empty until :func:`dsr.core.policy_catalog.resolve` sets both to the location the catalog gives."""
    subjects: tuple[SubjectColumn, ...] = ()
    """Every column holding an identifier of a person (``subject:`` + ``kind:``, or ``subjects:``); empty is
    read as one owner column ``subject`` of the implicit kind."""

    @property
    def subject_columns(self) -> tuple[SubjectColumn, ...]:
        """The subject columns, owners first (in policy order), then the mentioned ones."""
        cols = self.subjects or (SubjectColumn(self.subject),)
        return tuple(c for c in cols if c.owner) + tuple(c for c in cols if not c.owner)

    def views(self) -> tuple[TableSpec, ...]:
        """The table as seen through each subject column (owners first): one column, and what erasure does when
        the person is found there (an owner's row: the table's strategy; a mention: the column's masks, as an
        anonymisation). A table with one subject column has one view: itself."""
        cols = self.subject_columns
        if len(cols) == 1 and cols[0].owner:
            return (replace(self, subject=cols[0].column, subjects=cols),)
        out = []
        for c in cols:
            if c.owner:
                out.append(replace(self, subject=c.column, subjects=(c,)))
            else:
                out.append(replace(self, subject=c.column, subjects=(c,), erase=Strategy.ANONYMISE, masks=c.masks))
        return tuple(out)

    @property
    def kind(self) -> str:
        """The kind of the (first) subject column: a view's."""
        return self.subject_columns[0].kind

    @property
    def every_mask(self) -> tuple[tuple[str, Mask], ...]:
        """The table's masks and those of its mentioned subject columns."""
        return self.masks + tuple(m for c in self.subject_columns for m in c.masks)

    @property
    def subject_names(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.subject_columns)

    @property
    def resolved(self) -> bool:
        """Whether the table's location is known (always, unless it is named by ``table:`` and not resolved)."""
        return bool(self.uri)

    @property
    def mask_map(self) -> dict[str, Mask]:
        return dict(self.masks)


@dataclass(frozen=True)
class Exempt:
    path: str
    reason: str


@dataclass(frozen=True)
class Policy:
    source: str
    lake: str
    control: str
    exports: str
    pseudonym_key_env: str
    export_before_erase: bool
    tables: tuple[TableSpec, ...]
    exempt: tuple[Exempt, ...] = ()
    subject_columns: tuple[str, ...] = ()
    max_attempts: int = 3
    claim_ttl_minutes: int = 60
    due_days: int = 30
    purge_after_hours: int = 168
    export_ttl_days: int = 30
    erase_cooldown_days: int = 0
    lease_wait_seconds: int = 120
    delivery: Delivery = field(default_factory=Delivery)
    identifiers: tuple[IdKind, ...] = ()
    """The declared identifier kinds; empty: one implicit kind (:data:`dsr.core.identifiers.IMPLICIT`)."""
    identity: tuple[IdentityLink, ...] = ()
    identity_max_ids: int = 50
    identity_max_depth: int = 3

    @property
    def kinds(self) -> dict[str, IdKind]:
        """Kind name -> kind: the declared ones, else the implicit one."""
        if self.identifiers:
            return {k.name: k for k in self.identifiers}
        return {IMPLICIT: IdKind(IMPLICIT, "any", (), implicit=True)}

    @property
    def typed(self) -> bool:
        """Whether the policy declares identifier kinds (else: one implicit kind, the id cast to each column)."""
        return bool(self.identifiers)

    def purge_window_hours(self, table: TableSpec) -> int:
        """Hours after an erase commit before ``dsr purge`` removes what it left (the table's, else the policy's)."""
        return self.purge_after_hours if table.purge_after_hours is None else table.purge_after_hours

    @property
    def control_uri(self) -> str:
        return storage.join(self.lake, self.control)

    @property
    def requests_uri(self) -> str:
        return storage.join(self.control_uri, "requests")

    @property
    def audit_uri(self) -> str:
        return storage.join(self.control_uri, "audit")

    @property
    def unresolved(self) -> tuple[TableSpec, ...]:
        """The tables named by ``table:`` whose location the Spark catalog has not given yet."""
        return tuple(t for t in self.tables if not t.resolved)

    def table(self, name: str) -> TableSpec:
        for t in self.tables:
            if t.name == name:
                return t
        raise PolicyError(f"no table named {name!r} in the policy {self.source}")

    @property
    def needs_key(self) -> bool:
        return any(m.strategy == "pseudonymise" for t in self.tables for _, m in t.every_mask)

    def pseudonym_key(self) -> bytes:
        """The HMAC key, read from the environment variable ``pseudonym_key_env`` now (never stored in the
        policy). PolicyError naming the variable, never its value, when it is unset, empty or too short."""
        env = self.pseudonym_key_env
        value = os.environ.get(env, "")
        if not value:
            users = sorted({t.name for t in self.tables for _, m in t.every_mask if m.strategy == "pseudonymise"})
            who = f"table {users[0]!r} pseudonymises, but " if users else ""
            raise PolicyError(
                f"policy {self.source}: {who}the key environment variable {env} is not set "
                f"(set it to a secret of {_KEY_RULE})"
            )
        if len("".join(value.split()).encode("utf-8", "surrogateescape")) < MIN_KEY_BYTES:
            raise PolicyError(f"policy {self.source}: the key in {env} is too short ({_KEY_RULE})")
        return value.encode("utf-8", "surrogateescape")  # the bytes of the environment, as given
