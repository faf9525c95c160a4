"""The protocol gate's rules (dsr.delta.features) and what the engines declare (dsr.delta.support), on
table metadata alone: what a table uses, who handles it."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from dsr.core.masks import Strategy
from dsr.delta.access import TableInfo
from dsr.delta.features import features_in_use, gate, refusal_text
from dsr.delta.support import (
    DELETE,
    DELTA_RS,
    DELTA_SPARK,
    ENGINE_SUPPORT,
    READ,
    READER,
    SAIL,
    UNKNOWN_SPARK,
    UPDATE,
)


def info(
    *, reader: int = 1, writer: int = 2, rf: tuple[str, ...] | None = None, wf: tuple[str, ...] | None = None,
    config: dict[str, str] | None = None, meta: dict[str, dict[str, str]] | None = None,
    partitions: tuple[str, ...] = (), schema: Any = None,
) -> TableInfo:
    schema = schema or pa.schema([("id", pa.int64()), ("email", pa.string()), ("ts", pa.timestamp("us", tz="UTC"))])
    return TableInfo(
        uri="/nowhere", version=3, schema=schema, partition_columns=partitions, reader_version=reader,
        writer_version=writer, reader_features=rf, writer_features=wf, configuration=config or {},
        column_metadata=meta or {},
    )


def names(t: TableInfo, masked: tuple[str, ...] = ()) -> set[str]:
    return {u.name for u in features_in_use(t, masked)}


def test_a_plain_table_uses_nothing_and_passes_every_engine() -> None:
    plain = info()
    assert names(plain) == set()
    for support in ENGINE_SUPPORT.values():
        assert gate(plain, support, (READ, DELETE, UPDATE)) == []


def test_legacy_writer_versions_count_only_the_features_their_metadata_shows() -> None:
    assert names(info(writer=4)) == set()  # CDF and generated columns possible, not used
    assert names(info(writer=4, config={"delta.enableChangeDataFeed": "true"})) == {"changeDataFeed"}
    assert names(info(writer=4, meta={"email": {"delta.generationExpression": "lower(x)"}})) == {"generatedColumns"}
    assert names(info(writer=3, config={"delta.constraints.pos": "id > 0"})) == {"checkConstraints"}
    assert names(info(writer=2, config={"delta.appendOnly": "true"})) == {"appendOnly"}
    assert names(info(reader=2, writer=5, config={"delta.columnMapping.mode": "name"})) == {"columnMapping"}
    assert names(info(writer=6, meta={"id": {"delta.identity.start": "1"}})) == {"identityColumns"}


def test_table_features_listed_are_in_use_unless_a_property_switches_them_off() -> None:
    t = info(reader=3, writer=7, rf=("deletionVectors", "v2Checkpoint"),
             wf=("deletionVectors", "v2Checkpoint", "appendOnly", "invariants", "rowTracking", "domainMetadata"))
    assert names(t) == {"deletionVectors", "v2Checkpoint", "rowTracking", "domainMetadata"}
    ict = info(writer=7, wf=("inCommitTimestamp",))
    assert names(ict) == set()
    assert names(info(writer=7, wf=("inCommitTimestamp",), config={"delta.enableInCommitTimestamps": "true"})) == {
        "inCommitTimestamp"}


def test_an_unknown_future_feature_is_unsupported_everywhere_until_declared() -> None:
    reader_side = info(reader=3, writer=7, rf=("quantumSkipping",), wf=("quantumSkipping",))
    refusals = gate(reader_side, DELTA_SPARK, (READ, DELETE))
    # unreadable: named once, for the read (what a writer could do with it no longer matters)
    assert [(r.feature, r.operation, r.by) for r in refusals] == [("quantumSkipping", READ, READER.name)]
    writer_side = info(writer=7, wf=("fancyWriterThing",))
    assert gate(writer_side, DELTA_RS, (READ,)) == []  # readers need not know writer features
    (r,) = gate(writer_side, DELTA_RS, (READ, DELETE))
    assert (r.feature, r.operation, r.handled_by) == ("fancyWriterThing", DELETE, ())
    future_version = info(reader=4, writer=8)
    assert {r.feature for r in gate(future_version, DELTA_SPARK, (READ, DELETE))} == {"readerVersion4",
                                                                                      "writerVersion8"}


def test_reader_features_the_reader_cannot_read_refuse_the_table_for_every_engine() -> None:
    widened = info(reader=3, writer=7, rf=("typeWidening-preview",), wf=("typeWidening-preview",))
    for support in (DELTA_RS, DELTA_SPARK, SAIL):
        refusals = gate(widened, support, Strategy.RETAIN.operations)
        assert [(r.feature, r.operation) for r in refusals] == [("typeWidening-preview", READ)]
    assert gate(info(reader=3, writer=7, rf=("vacuumProtocolCheck",), wf=("vacuumProtocolCheck",)), DELTA_SPARK,
                (READ,))
    readable = info(reader=3, writer=7, rf=("columnMapping", "deletionVectors", "timestampNtz", "v2Checkpoint",
                                            "variantType-preview"),
                    wf=("columnMapping", "deletionVectors", "timestampNtz", "v2Checkpoint", "variantType-preview"),
                    config={"delta.columnMapping.mode": "id"})
    assert gate(readable, DELTA_RS, (READ, DELETE, UPDATE)) == []


def test_an_append_only_table_cannot_be_erased_by_any_engine() -> None:
    t = info(writer=2, config={"delta.appendOnly": "true"})
    assert gate(t, DELTA_RS, (READ,)) == []  # it can still be exported
    for support in (DELTA_RS, DELTA_SPARK, SAIL):
        (r,) = gate(t, support, (READ, DELETE))
        assert (r.feature, r.detail, r.handled_by) == ("appendOnly", "delta.appendOnly=true", ())


def test_timestamp_partitions_are_refused_on_sail_only_and_say_who_handles_them() -> None:
    for ts in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        t = info(partitions=("ts",), schema=pa.schema([("id", pa.int64()), ("ts", ts)]))
        assert names(t) == {"timestampPartition"}
        assert gate(t, DELTA_RS, (READ, DELETE, UPDATE)) == []
        (d, u) = gate(t, SAIL, (READ, DELETE, UPDATE))
        assert (d.feature, d.operation, u.operation) == ("timestampPartition", DELETE, UPDATE)
        assert d.handled_by == (DELTA_SPARK.name, DELTA_RS.name) or set(d.handled_by) == {DELTA_RS.name,
                                                                                          DELTA_SPARK.name}
        assert "partition column 'ts' is a timestamp" in d.text()
    date_part = info(partitions=("d",), schema=pa.schema([("id", pa.int64()), ("d", pa.date32())]))
    assert gate(date_part, SAIL, (DELETE,)) == []


def test_a_generated_column_fed_by_a_mask_blocks_update_on_writers_that_do_not_recompute_it() -> None:
    t = info(writer=4, meta={"domain": {"delta.generationExpression": "substring_index(`email`, '@', -1)"}},
             schema=pa.schema([("id", pa.int64()), ("email", pa.string()), ("domain", pa.string())]))
    assert gate(t, DELTA_RS, (READ, DELETE, UPDATE), masked_columns=("id",)) == []  # masks elsewhere: fine
    (r,) = gate(t, DELTA_RS, (READ, UPDATE), masked_columns=("id", "email"))
    assert (r.feature, r.operation) == ("generatedColumns", UPDATE)
    assert "computed from masked 'email'" in r.detail and DELTA_SPARK.name in r.handled_by
    (r2,) = gate(t, DELTA_RS, (UPDATE,), masked_columns=("id", "domain"))
    assert "masked column 'domain' is generated" in r2.detail
    assert gate(t, DELTA_SPARK, (UPDATE,), masked_columns=("email",)) == []
    assert gate(t, DELTA_RS, (DELETE,), masked_columns=("email",)) == []  # delete never recomputes anything


def test_engines_declare_what_the_issue_lists() -> None:
    for feature in ("columnMapping", "deletionVectors", "v2Checkpoint", "timestampPartition", "changeDataFeed"):
        assert DELTA_RS.handles(feature, DELETE) and DELTA_RS.handles(feature, UPDATE), feature
    for feature in ("identityColumns", "rowTracking", "inCommitTimestamp", "clustering", "domainMetadata",
                    "typeWidening"):
        assert not DELTA_RS.handles(feature, DELETE), feature
        assert DELTA_SPARK.handles(feature, DELETE), feature
    for feature in ("changeDataFeed", "identityColumns", "rowTracking", "timestampPartition"):
        assert not SAIL.handles(feature, DELETE), feature
    assert UNKNOWN_SPARK.features == {}


def test_operations_follow_the_strategy() -> None:
    assert Strategy.DELETE.operations == (READ, DELETE)
    assert Strategy.ANONYMISE.operations == (READ, UPDATE)
    assert Strategy.RETAIN.operations == (READ,)
    assert (Strategy.DELETE.operation, Strategy.ANONYMISE.operation, Strategy.RETAIN.operation) == (
        DELETE, UPDATE, None)


def test_the_refusal_text_names_table_engine_and_features_only() -> None:
    t = info(reader=3, writer=7, rf=("columnMapping",), wf=("columnMapping", "rowTracking", "identityColumns"),
             config={"delta.columnMapping.mode": "name"}, meta={"id": {"delta.identity.start": "1"}})
    text = refusal_text("events", DELTA_RS.name, gate(t, DELTA_RS, (READ, DELETE)))
    assert text.startswith("table 'events' refused on engine delta-rs: unsupported Delta feature(s): ")
    assert "identityColumns (identity column(s) id): delta-rs cannot delete it; handled by" in text
    assert "rowTracking (writer feature)" in text


def test_sail_refuses_change_data_feed_as_soon_as_it_is_listed_even_switched_off() -> None:
    """Sail 0.7's writer checks the protocol's list: a table listing changeDataFeed with
    delta.enableChangeDataFeed=false fails its MERGE at write time. The gate refuses it for Sail before any
    write; delta-rs and delta-spark handle it; the feature is not *in use* for anyone else."""
    off = info(reader=1, writer=7, wf=("invariants", "changeDataFeed", "appendOnly"),
               config={"delta.enableChangeDataFeed": "false"})
    assert names(off) == set()
    refusals = gate(off, SAIL, (DELETE, UPDATE))
    assert [(r.feature, r.operation, r.by) for r in refusals] == [
        ("changeDataFeed", DELETE, SAIL.name), ("changeDataFeed", UPDATE, SAIL.name)]
    assert {r.detail for r in refusals} == {"listed as a writer feature, though switched off"}
    assert {r.handled_by for r in refusals} == {(DELTA_RS.name, DELTA_SPARK.name)}
    for support in (DELTA_RS, DELTA_SPARK):
        assert gate(off, support, (READ, DELETE, UPDATE)) == []
    assert gate(off, SAIL, (READ,)) == []  # reading is the access layer's: not Sail's business
    legacy = info(writer=4, config={"delta.enableChangeDataFeed": "false"})  # implied, not listed: Sail writes it
    assert gate(legacy, SAIL, (DELETE, UPDATE)) == []
    on = info(writer=7, wf=("changeDataFeed",), config={"delta.enableChangeDataFeed": "true"})
    assert [(r.feature, r.detail) for r in gate(on, SAIL, (DELETE,))] == [
        ("changeDataFeed", "delta.enableChangeDataFeed=true")]  # in use: refused once, as before
