"""Near matches: rows that hold a subject id in another spelling (Unicode form, case, surrounding blanks).

A request whose subject matches no row anywhere completes as "no data found" — unless some row matches it
after Unicode NFKC normalisation, lower-casing and trimming (``José`` typed in NFD form against NFC data, a
stray capital, a trailing blank). Then the request must not complete: a person reviews it. Only counts
come out of here, never the values found.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from dsr.core.policy import Policy
from dsr.delta import access
from dsr.engines.reading import LOCAL, Reader, normalise

__all__ = ["near_matches", "normalise", "outcomes", "review_reason"]


def near_matches(policy: Policy, subject_ids: Sequence[str], reader: Reader = LOCAL) -> dict[str, dict[str, int]]:
    """subject id -> {table: rows whose text subject column equals it only after normalisation}.

    One read of the subject column per table with a text subject column, where the engine reads (only called
    for requests that matched nothing exactly, so rarely); only counts per form come back. Tables the reader
    cannot read are skipped (their requests fail on their own account).
    """
    import pyarrow as pa

    from dsr.core.masks import pseudonym_kind
    from dsr.errors import TableError

    if not subject_ids:
        return {}
    wanted = pa.array(list(subject_ids), pa.string())
    forms = normalise(wanted).to_pylist()
    by_form: dict[str, list[str]] = defaultdict(list)
    for sid, form in zip(subject_ids, forms, strict=True):
        by_form[form].append(sid)
    form_set = pa.array(sorted(by_form), pa.string())
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for table in policy.tables:
        try:
            info = access.table_info(table.uri)
            if pseudonym_kind(info.schema.field(table.subject).type) != "string":
                continue
            counts = reader.near_counts(table.uri, table.subject, wanted, form_set)
        except TableError:
            continue
        for form, n in counts.items():
            for sid in by_form.get(form, ()):
                out[sid][table.name] = out[sid].get(table.name, 0) + n
    return dict(out)


def review_reason(tables: dict[str, int]) -> str:
    """The request record's reason: counts and table names only."""
    where = ", ".join(f"{t} ({n} row(s))" for t, n in sorted(tables.items()))
    return ("no row matches the subject id exactly, but rows in " + where + " match it after Unicode "
            "normalisation, case folding or trimming: a person must review the id and file the request again")


def outcomes(
    policy: Policy, found: dict[str, tuple[str, int | None]], done_word: str, reader: Reader = LOCAL,
) -> tuple[dict[str, str], dict[str, str]]:
    """``found``: request id -> (subject id, rows of the subject found in all tables, None if unknown).

    Returns (request id -> outcome, request id -> reason to fail for review). A subject that matched no row
    anywhere gives "no data found" — unless rows match it after Unicode normalisation, case folding or
    trimming: then the request fails for a person to review (counts only, never values).
    """
    empty = sorted({sid for sid, n in found.values() if n == 0})
    near = near_matches(policy, empty, reader) if empty else {}
    outcomes: dict[str, str] = {}
    review: dict[str, str] = {}
    for rid, (sid, n) in found.items():
        if n == 0 and sid in near:
            review[rid] = review_reason(near[sid])
        else:
            outcomes[rid] = "no data found" if n == 0 else done_word
    return outcomes, review
