"""What one table must prove after erasure, read back by the engine's reader and checked against the log.

``check_table`` runs the GE suites on what the engine's reader (:mod:`dsr.engines.reading`) returns: on the
delta-rs engine, the access layer in this process (delta-rs' DataFusion reader, which honours column mapping
and deletion vectors); on Spark, Spark jobs on the cluster, whose results are checked against the files' own
account (6.):

1. ``dsr_erased_rows``: the rows found for the erased subjects (a pushed-down filter; past ``BIG_IN`` keys the
   access layer filters the whole column in Arrow, which is the full pass of 2: its matches) number zero;
2. ``dsr_erased_absent``: every value of the subject column, batch by batch, is outside the erased set (one
   projected read compared in Arrow; GE validates the values that matched, which must be none);
3. ``dsr_read_sighted``: the same full read is not blind — its count of non-NULL subject values agrees with
   the Delta log's file statistics (a column read as all NULL while the log says it holds values fails);
4. for anonymised rows (found by their pseudonym), every masked column holds its mask;
5. ``dsr_reconcile``, per erase commit of the run (version v-1 -> v): row counts before/after equal the
   commit's reported deletions (update: unchanged), the rows changed equal the erased subjects' rows before,
   none of them is left, the rows of every other subject are unchanged in number, every file the commit
   removes was live before it (a remove path written differently from its add leaves the rows visible to
   other readers), and the table's protocol, features, configuration and schema are unchanged;
6. ``dsr_files_agree`` (a cluster reader only): the live files delta-rs' log replay lists, read as plain Parquet
   (:mod:`dsr.verify.evidence`), hold no erased key, and agree with the Delta reader's counts and the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dsr.core.identifiers import IMPLICIT
from dsr.core.masks import Strategy, pseudonym_kind
from dsr.core.policy import Policy, TableSpec
from dsr.delta import access, commits
from dsr.engines.reading import LOCAL, Reader, SubjectPass
from dsr.plan import erasure
from dsr.plan import keys as keys_
from dsr.verify import evidence
from dsr.verify.frames import access_schema, as_text, frames, one_row, within

__all__ = ["TableCheck", "check_table", "commit_counts"]


@dataclass
class TableCheck:
    table: str
    success: bool = True
    suites: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    version: int | None = None
    """The table version the checks read (the current one when they ran)."""

    def add(self, outcome: Any) -> None:
        self.suites.append(outcome.as_dict())
        self.success = self.success and bool(outcome.success)

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "success": self.success, "version": self.version, "suites": self.suites,
                "notes": self.notes}


def _marker(table: TableSpec, keys: erasure.SubjectKeys, key: bytes | None, ctype: Any) -> tuple[str, Any]:
    """What an anonymised row's subject column holds afterwards: ('pseudonym', array), ('null', None), or
    ('none', None) for delete."""
    import pyarrow as pa

    if table.erase is not Strategy.ANONYMISE:
        return "none", None
    mask = table.mask_map[table.subject]
    if mask.strategy == "pseudonymise" and key is not None:
        return "pseudonym", pa.array(erasure.pseudonyms(keys, key, _kind(ctype)), type=ctype)
    return "null", None


def check_table(
    policy: Policy, table: TableSpec, people: Sequence[str] | keys_.People, reconcile: Sequence[dict[str, Any]] = (),
    reader: Reader = LOCAL,
) -> TableCheck:
    """Run the GE suites of one table for a set of erased people (absence, sight, masks, reconcile) in each of its
    subject columns (the identifiers of the column's kind), the data read by ``reader`` (the engine's: in this
    process, or on the cluster, then with the files' own evidence). ``people``: (request id, identifiers) per
    request, or plain ids of the implicit kind. ``reconcile``: the ``table_erased`` details of the run's
    commits (per column when the table has several)."""
    check = TableCheck(table.name)
    if table.erase is Strategy.RETAIN:
        check.notes.append(f"retained: {table.reason}")
        return check
    who = _people(policy, people)
    views = table.views()
    for view in views:
        recs = _records_of(view, reconcile, len(views) > 1)
        _check_view(policy, view, who, recs, reader, check, label=len(views) > 1)
    return check


def _people(policy: Policy, people: Sequence[str] | keys_.People) -> keys_.People:
    """(request id, identifiers): plain ids are of the implicit kind (a policy with one declared kind: of it)."""
    from dsr.core.identifiers import Identifier

    out: list[tuple[str, Sequence[Identifier]]] = []
    only = next(iter(policy.kinds)) if len(policy.kinds) == 1 else None
    for i, p in enumerate(people):
        if isinstance(p, str):
            if only is None:
                raise ValueError("plain ids need a policy with one identifier kind")
            out.append((f"id{i}", (Identifier(only, p),)))
        else:
            rid, ids = p
            out.append((str(rid), tuple(ids)))  # type: ignore[arg-type]
    return out


def _records_of(view: TableSpec, reconcile: Sequence[dict[str, Any]], several: bool) -> list[dict[str, Any]]:
    """The commits of one subject column: a table's single commit, or its entries in ``commits``."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for rec in reconcile:
        if "commits" in rec:
            for c in rec["commits"]:
                if c["column"] == view.subject:
                    out[(int(c["version_before"]), int(c["version_after"]))] = c
        elif not several or rec.get("column", view.subject) == view.subject:
            out[(int(rec["version_before"]), int(rec["version_after"]))] = rec
    return [out[k] for k in sorted(out)]


def _check_view(
    policy: Policy, table: TableSpec, people: keys_.People, reconcile: Sequence[dict[str, Any]], reader: Reader,
    check: TableCheck, *, label: bool,
) -> None:
    """The suites of one subject column (``table``: a view, :meth:`TableSpec.views`).

    The suites run in a fixed order over one column; each is a few lines, kept in the order they prove.
    """
    from dsr.verify.ge import SuiteOutcome, Validator

    first = len(check.suites)
    validator = Validator.shared()
    info = access.table_info(table.uri)
    check.version = info.version
    schema = info.schema
    keys = keys_.keys_for(policy, table, people, info, reader)
    for rec in reconcile:  # a normalised kind's raw values erased by the commit are looked for too
        if policy.kinds[table.kind].normalise:
            keys = erasure.merged(keys, keys_.keys_for(policy, table, people, access.table_info(
                table.uri, int(rec["version_before"])), reader, version=int(rec["version_before"])))
    values = keys.keys.to_pylist()
    subject_schema = access_schema(schema, [table.subject])

    # 2 + 3. every value of the subject column, batch by batch, outside the erased set; and the read not blind
    seen = reader.subject_pass(table.uri, table.subject, keys.keys if values else None, version=info.version,
                               info=info)
    total, non_null, survivors = seen.rows, seen.non_null, seen.survivors
    if values:
        # 1. the rows the reader finds for the erased set (a pushed-down filter): there must be none. Past
        # BIG_IN keys the reader's filter is the full pass itself (the whole column compared in Arrow): its
        # matches are those rows, not read a second time
        rows = SuiteOutcome("dsr_erased_rows")
        found = survivors.to_batches() if not access.pushes_down(keys.keys) else reader.scan(
            table.uri, [table.subject], where_in=(table.subject, keys.keys), version=info.version, info=info)
        for frame in frames(iter(found), subject_schema):
            rows.add(validator.validate("dsr_erased_rows", frame, "pandas"))
        check.add(rows)
    else:
        check.notes.append("no erased subject id can be cast to this table's subject column: nothing to find"
                           if table.kind == IMPLICIT else f"no erased person's identifier of kind {table.kind!r} "
                           f"fits the subject column {table.subject!r}: nothing to find")
    if values:
        # The value set GE checks against: the erased keys the pass found (every survivor is one, by
        # construction). Passing all K keys would check the same frame the same way, but GE copies and
        # serialises the set in every step of a validation (1.8 s for 10,000 keys on an empty frame).
        present = sorted({v for v in survivors.column(0).to_pylist() if v is not None}, key=repr)
        absent = validator.validate(
            "dsr_erased_absent", survivors.to_pandas(), "pandas", subs={"$subject": table.subject},
            params={"erased_subjects": present},
        )
        absent.rows_checked = total  # the rows the pass compared; GE sees the ones that matched
        check.add(absent)
    low, high, why = _sighted_bounds(commits.column_stats(table.uri, table.subject, info=info), total)
    sight = validator.validate(
        "dsr_read_sighted", one_row(non_null_read=non_null), "pandas",
        params={"non_null_low": low, "non_null_high": high},
    )
    check.add(sight)
    cluster = reader.where != LOCAL.where
    check.notes.append(f"v{info.version}: {total} rows, {non_null} non-null subject values read"
                       f"{' ' + reader.where if cluster else ''} ({why})")
    if cluster:
        _check_files(reader, table, info, keys, seen, reconcile, check, validator)

    # 4. anonymised rows hold their masks
    if table.erase is Strategy.ANONYMISE and values:
        _check_masks(policy, table, info, keys, check, validator, reader)

    # 5. each erase commit of the run reconciles (its after-side, when it is the version the pass read, counted
    # by that same pass: the rows, the erased subjects' rows, the NULL subjects)
    read = {"version": info.version, "rows": total, "keyed": len(survivors) if values else 0,
            "nulls": total - non_null}
    for rec in reconcile:
        _reconcile(policy, table, keys, rec, check, validator, read, reader)
    if label:  # a table with several subject columns: each suite says which one it proved
        for suite in check.suites[first:]:
            suite["suite"] = f"{suite['suite']}@{table.subject}"


def _check_files(reader: Reader, table: TableSpec, info: access.TableInfo, keys: erasure.SubjectKeys,
                 seen: SubjectPass, reconcile: Sequence[dict[str, Any]], check: TableCheck, validator: Any) -> None:
    """The cluster's Delta reader against the files' own account (:mod:`dsr.verify.evidence`)."""
    found = evidence.gather(reader, table.uri, table.subject, info, keys.keys if len(keys.keys) else None,
                            [int(r["version_after"]) for r in reconcile])
    check.add(validator.validate("dsr_files_agree", one_row(**found.frame_values(seen)), "pandas",
                                 params=found.params()))
    check.notes.append(found.note)


def _sighted_bounds(stats: commits.ColumnStats, rows_read: int) -> tuple[int, int | None, str]:
    """The non-NULL count a sighted read of the subject column must fall within, from the log's statistics.

    With complete statistics: at most the log's non-NULL count, and at least that minus the rows the read
    did not return (rows deleted by deletion vectors can only hide that many values). Without: a column read
    entirely NULL is blind (at least one value expected when there are rows).
    """
    if stats.records is not None and stats.non_null is not None:
        hidden = stats.records - rows_read
        if hidden < 0:  # more rows read than the log holds: cannot be sighted
            return stats.records + 1, stats.records + 1, "more rows read than the log's statistics hold"
        return max(0, stats.non_null - hidden), stats.non_null, f"log statistics: {stats.non_null} non-null"
    return (1 if rows_read else 0), None, "no complete statistics in the log: an all-NULL read fails"


def _check_masks(
    policy: Policy, table: TableSpec, info: access.TableInfo, keys: erasure.SubjectKeys, check: TableCheck,
    validator: Any, reader: Reader,
) -> None:
    from dsr.verify.ge import SuiteOutcome

    schema = info.schema
    ctype = schema.field(table.subject).type
    marker, anonymised = _marker(table, keys, policy.pseudonym_key() if policy.needs_key else None, ctype)
    if marker != "pseudonym":
        check.notes.append("subject column nullified: anonymised rows cannot be singled out, masks not re-checked")
        return
    key = policy.pseudonym_key()
    params = {col: mask.kind.params(mask, erasure.pseudonyms(keys, key, _kind(schema.field(col).type))
                                    if pseudonym_kind(schema.field(col).type) else [])
              for col, mask in table.masks}
    outcomes = {c: SuiteOutcome(f"{m.kind.suite}[{c}]") for c, m in table.masks}
    text_cols = [c for c, m in table.masks if m.kind.checked_as_text]
    columns = [c for c, _ in table.masks]
    found = reader.scan(table.uri, columns, where_in=(table.subject, anonymised), version=info.version, info=info)
    for frame in frames(found, access_schema(schema, columns)):
        frame = as_text(frame, text_cols)
        for col, mask in table.masks:
            outcomes[col].add(validator.validate(
                mask.kind.suite, frame[[col]], "pandas", subs={"$column": col}, params=within(params[col], frame[col]),
            ))
    for outcome in outcomes.values():
        check.add(outcome)


def commit_counts(
    uri: str, subject: str, version: int, keys: Any, marker: tuple[str, Any], read: dict[str, int] | None = None,
    reader: Reader = LOCAL,
) -> dict[str, int]:
    """Rows, erased subjects' rows, and marked rows (pseudonyms or NULL subjects) at one version. ``read``: the
    counts a full pass of the subject column made at ``read["version"]`` (rows, keyed, nulls), used instead of
    counting again when that is this version."""
    kind, values = marker
    known = read if read is not None and read["version"] == version else None
    if known is None and reader.where != LOCAL.where:  # one job on the cluster for the three counts
        rows, non_null, keyed = reader.tally(uri, subject, keys, version=version)
        known = {"rows": rows, "keyed": keyed, "nulls": rows - non_null}
    rows = known["rows"] if known else reader.count_rows(uri, version)
    keyed = known["keyed"] if known else reader.count_rows(uri, version, where_in=(subject, keys))
    marked = 0
    if kind == "pseudonym":
        marked = reader.count_rows(uri, version, where_in=(subject, values))
    elif kind == "null":
        marked = known["nulls"] if known else reader.count_rows(uri, version, null_column=subject)
    return {"rows": rows, "keyed": keyed, "marked": marked, "others": rows - keyed - marked}


def _reconcile(
    policy: Policy, table: TableSpec, keys: erasure.SubjectKeys, rec: dict[str, Any], check: TableCheck,
    validator: Any, read: dict[str, int] | None = None, reader: Reader = LOCAL,
) -> None:
    vb, va = int(rec["version_before"]), int(rec["version_after"])
    info_before = access.table_info(table.uri, vb)
    info_after = access.table_info(table.uri, va)
    ctype = info_before.schema.field(table.subject).type
    marker = _marker(table, keys, policy.pseudonym_key() if policy.needs_key else None, ctype)
    before = commit_counts(table.uri, table.subject, vb, keys.keys, marker, reader=reader)
    after = commit_counts(table.uri, table.subject, va, keys.keys, marker, read, reader)
    commit = commits.commit_actions(table.uri, va)
    live = commits.live_files(table.uri, vb)
    stray_removes = sum(1 for path, _ in commit.removes if path not in live)
    deleted = int(rec.get("rows_deleted") or 0)
    changed = deleted if table.erase is Strategy.DELETE else int(rec.get("rows_updated") or 0)
    intact = info_before.fingerprint() == info_after.fingerprint()
    frame = one_row(
        rows_after=after["rows"], rows_changed=changed, keyed_after=after["keyed"], others_after=after["others"],
        marked_after=after["marked"], stray_removes=stray_removes, table_intact=int(intact),
    )
    outcome = validator.validate("dsr_reconcile", frame, "pandas", params={
        "expected_rows_after": before["rows"] - deleted,
        "rows_matched": before["keyed"],
        "expected_others_after": before["others"],
        "expected_marked_after": before["marked"] + (before["keyed"] if table.erase is Strategy.ANONYMISE else 0),
    })
    outcome.suite = f"dsr_reconcile[v{vb}->v{va}]"
    check.add(outcome)
    effect = (f"{commit.files_rewritten} file(s) rewritten, {commit.files_added} added, "
              f"{commit.dv_marked} marked with deletion vectors")
    check.notes.append(
        f"v{vb}: {before['rows']} rows ({before['keyed']} of the erased subjects), v{va}: {after['rows']} rows "
        f"({after['keyed']} left); {changed} {'deleted' if table.erase is Strategy.DELETE else 'updated'}; "
        f"other subjects' rows {before['others']} -> {after['others']}; {effect}"
        + ("" if stray_removes == 0 else f"; {stray_removes} remove(s) name no live file")
        + ("" if intact else "; protocol, configuration or schema changed")
    )


def _kind(arrow_type: Any) -> str:
    kind = pseudonym_kind(arrow_type)
    if kind is None:  # the policy check refuses pseudonymise on other types
        raise ValueError(f"no pseudonym form for {arrow_type}")
    return kind
