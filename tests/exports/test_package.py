"""Export packages (dsr/exports/package.py, sealing.py): CSV files that round-trip every value type through the
csv module, the manifest's sizes and checksums, the README, and sealing to a recipient key (X25519 and RSA):
the package opens with the private key and with no other."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import hashlib
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from dsr.core.identifiers import Identifier
from dsr.exports import PackageOptions, PartWriter, Person, finish_documents
from dsr.exports.sealing import MAGIC, unseal
from tests.exports.conftest import NOW
from tests.packages import manifest, members

UTC = dt.UTC


def _typed_table() -> Any:
    """Rows of every type a lake table holds: text, integers, decimals, timestamps, dates, binary, floats,
    booleans, nested structs, lists and maps, and nulls (as the export step reads them: pyarrow to_pylist)."""
    import pyarrow as pa

    schema = pa.schema([
        pa.field("user_id", pa.string()),
        pa.field("n", pa.int64()),
        pa.field("amount", pa.decimal128(10, 2)),
        pa.field("at", pa.timestamp("us", tz="UTC")),
        pa.field("day", pa.date32()),
        pa.field("blob", pa.binary()),
        pa.field("ratio", pa.float64()),
        pa.field("ok", pa.bool_()),
        pa.field("address", pa.struct([("street", pa.string()), ("zip", pa.int32())])),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("attrs", pa.map_(pa.string(), pa.string())),
    ])
    rows = [
        {"user_id": "u1", "n": -7, "amount": decimal.Decimal("1234.50"), "at": dt.datetime(2024, 5, 6, 7, 8, 9, 123456,
         tzinfo=UTC), "day": dt.date(2024, 2, 29), "blob": b"\x00\xff,\"\n", "ratio": 0.1, "ok": True,
         "address": {"street": 'Main St, "Apt" 1\nBack', "zip": 10115}, "tags": ["a,b", 'q"t'],
         "attrs": [("k", "v"), ("é", "ü")]},
        {"user_id": "u1", "n": None, "amount": None, "at": None, "day": None, "blob": None, "ratio": None,
         "ok": False, "address": None, "tags": [], "attrs": None},
    ]
    return pa.Table.from_pylist(rows, schema=schema)


def _from_csv(text: str, type_: Any) -> Any:
    """A CSV cell back to the column's Python value (the inverse of the documented encoding)."""
    import pyarrow as pa

    if text == "":
        return None
    if pa.types.is_decimal(type_):
        return decimal.Decimal(text)
    if pa.types.is_timestamp(type_):
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if pa.types.is_date(type_):
        return dt.date.fromisoformat(text)
    if pa.types.is_binary(type_):
        return base64.b64decode(text)
    if pa.types.is_integer(type_):
        return int(text)
    if pa.types.is_floating(type_):
        return float(text)
    if pa.types.is_boolean(type_):
        return {"true": True, "false": False}[text]
    if pa.types.is_map(type_):
        return [tuple(kv) for kv in json.loads(text)]
    if pa.types.is_struct(type_) or pa.types.is_list(type_):
        return json.loads(text)
    return text


def _package(tmp_path: Path, fmt: str, key: str | None = None) -> tuple[str, Any]:
    table = _typed_table()
    ex = str(tmp_path / "exports")
    with PartWriter(ex, "run_1", "events", ["req_a"], columns=table.column_names) as w:
        for row in table.to_pylist():
            w.write("req_a", row)
    with PartWriter(ex, "run_1", "empty", ["req_a"], columns=["user_id", "x"]):
        pass
    uris = finish_documents(ex, "run_1", [("req_a", "u1")], ["events", "empty"], exported_at=NOW, ttl_days=14,
                            options={"req_a": PackageOptions(fmt, key)})
    return uris["req_a"], table


def test_a_csv_package_round_trips_every_value_type_through_the_csv_module(tmp_path: Path) -> None:
    uri, table = _package(tmp_path, "csv")
    files = members(uri)
    assert sorted(files) == ["README.txt", "empty.csv", "events.csv", "manifest.json"]
    parsed = list(csv.reader(io.StringIO(files["events.csv"].decode("utf-8"), newline="")))
    assert parsed[0] == table.column_names
    back = [{c: _from_csv(v, table.schema.field(c).type) for c, v in zip(parsed[0], line, strict=True)}
            for line in parsed[1:]]
    assert back == table.to_pylist()
    assert files["events.csv"].count(b"\r\n") >= 3  # RFC 4180 line ends (and quoted newlines inside)
    assert files["empty.csv"] == b"user_id,x\r\n"  # no rows: the header still says what the table holds


def test_the_manifest_lists_every_file_with_size_and_sha256_and_the_readme_explains(tmp_path: Path) -> None:
    uri, _ = _package(tmp_path, "json")
    files = members(uri)
    m = manifest(uri)
    assert m["schema_version"] == 2 and m["request_id"] == "req_a" and m["format"] == "json"
    assert m["subject_id"] == "u1" and m["identifiers"] == [{"kind": "subject", "value": "u1"}]
    assert m["generated_at"] == "2025-01-02T03:04:05Z" and m["expires_at"] == "2025-01-16T03:04:05Z"
    assert m["tables"] == [{"name": "events", "rows": 2, "file": "export.json"},
                           {"name": "empty", "rows": 0, "file": "export.json"}]
    assert [f["name"] for f in m["files"]] == ["README.txt", "export.json"]
    for f in m["files"]:
        assert f["size"] == len(files[f["name"]])
        assert f["sha256"] == hashlib.sha256(files[f["name"]]).hexdigest()
    doc = json.loads(files["export.json"])
    assert doc["schema_version"] == 2 and len(doc["tables"]["events"]) == 2 and doc["tables"]["empty"] == []
    readme = files["README.txt"].decode("utf-8")
    assert "req_a" in readme and "deleted on 2025-01-16 03:04 UTC" in readme and "u1" not in readme
    assert stat.S_IMODE(os.stat(uri).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path / "exports")) == ["_parts", "req_a.zip"]  # no temporary file left


def test_found_by_is_column_kind_pairs_in_a_csv_and_a_list_in_json_and_the_readme_says_so(tmp_path: Path) -> None:
    ex = str(tmp_path / "exports")
    both = [{"column": "sender_id", "kind": "user_id"}, {"column": "recipient_id", "kind": "user_id"}]
    rows = [{"id": 1, "sender_id": "u1", "recipient_id": "u1", "_found_by": both},
            {"id": 2, "sender_id": "u2", "recipient_id": "u1", "_found_by": both[1:]}]
    with PartWriter(ex, "run_1", "messages", ["req_a", "req_b"], columns=list(rows[0])) as w:
        for row in rows:
            w.write("req_a", row)
    ann = Person("req_a", "u1", (Identifier("email", "ann@example.org"), Identifier("user_id", "u1")))
    uris = finish_documents(ex, "run_1", [ann, ("req_b", "u9")], ["messages"], exported_at=NOW,
                            options={"req_a": PackageOptions("csv"), "req_b": PackageOptions("json")})
    files = members(uris["req_a"])
    parsed = list(csv.DictReader(io.StringIO(files["messages.csv"].decode("utf-8"), newline="")))
    assert [r["_found_by"] for r in parsed] == ["sender_id:user_id;recipient_id:user_id", "recipient_id:user_id"]
    assert [r["id"] for r in parsed] == ["1", "2"]
    m = manifest(uris["req_a"])
    assert m["schema_version"] == 2 and m["subject_id"] == "u1"
    assert m["identifiers"] == [{"kind": "email", "value": "ann@example.org"}, {"kind": "user_id", "value": "u1"}]
    text = files["README.txt"].decode("utf-8")
    assert "_found_by" in text and "sender_id:user_id;recipient_id:user_id" in text
    assert "ann@example.org" not in text  # the README names no identifier
    # a (request id, subject id) pair: one identifier of the implicit kind
    b = members(uris["req_b"])
    assert json.loads(b["manifest.json"])["identifiers"] == [{"kind": "subject", "value": "u9"}]
    doc = json.loads(b["export.json"])
    assert doc["identifiers"] == [{"kind": "subject", "value": "u9"}] and doc["tables"] == {"messages": []}
    assert "_found_by" in b["README.txt"].decode("utf-8")


def test_a_person_shows_no_identifier_in_its_repr() -> None:
    ann = Person("req_a", "ann@example.org", (Identifier("email", "ann@example.org"),))
    assert "ann" not in repr(ann) and "req_a" in repr(ann)


def _keys(kind: str) -> tuple[bytes, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa, x25519

    private = x25519.X25519PrivateKey.generate() if kind == "x25519" else rsa.generate_private_key(65537, 2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return pem, public


@pytest.mark.parametrize("kind", ["x25519", "rsa"])
def test_a_sealed_package_opens_with_the_private_key_and_with_no_other(tmp_path: Path, kind: str) -> None:
    private, public = _keys(kind)
    uri, _ = _package(tmp_path, "csv", public)
    assert uri.endswith("req_a.zip.sealed")
    sealed = Path(uri).read_bytes()
    assert sealed.startswith(MAGIC)
    for plain in (b"PK\x03\x04", b"events.csv", b"Your data export", b"user_id", b"Main St"):  # no clear text
        assert plain not in sealed
    out = tmp_path / "opened.zip"
    with open(uri, "rb") as f:
        unseal(f, str(out), private)
    assert manifest(out.read_bytes())["request_id"] == "req_a"
    assert "events.csv" in members(out.read_bytes())

    other, _ = _keys(kind)
    with open(uri, "rb") as f, pytest.raises(ValueError):
        unseal(f, str(tmp_path / "nope.zip"), other)
    assert not (tmp_path / "nope.zip").exists()
    tampered = tmp_path / "tampered.sealed"
    tampered.write_bytes(sealed[:-40] + bytes([sealed[-40] ^ 1]) + sealed[-39:])
    with open(tampered, "rb") as f, pytest.raises(ValueError, match="does not decrypt"):
        unseal(f, str(tmp_path / "bad.zip"), private)
    assert not (tmp_path / "bad.zip").exists()
