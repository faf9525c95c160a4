"""Filing exports with a format and a recipient key (command line and CSV import), and the delivery keys of the
policy: good input is kept in the ``received`` audit event; bad input is one line on stderr, exit 2, nothing
written."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsr.core import audit
from dsr.core.policy import load_policy
from tests.invoke import dsr
from tests.lakes import INTAKE_POLICY, write_policy


def _public_key(path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import x25519

    key = x25519.X25519PrivateKey.generate().public_key()
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def _one_error(out: object, starts: str) -> None:
    assert out.returncode == 2 and out.stdout == ""  # type: ignore[attr-defined]
    (line,) = out.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert line.startswith(starts), line


def test_format_and_recipient_key_are_kept_with_the_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSR_POLICY", raising=False)
    policy_path = write_policy(tmp_path, INTAKE_POLICY)
    key = _public_key(tmp_path / "person.pem")
    out = dsr("--policy", str(policy_path), "request", "export", "u1", "--format", "csv", "--recipient-key", str(key))
    assert out.returncode == 0, out.stderr
    rid = out.stdout.strip()
    (tmp_path / "in.csv").write_text("kind,subject_id,ticket,format\nexport,u2,T1,csv\nexport,u3,T2,\nerase,u4,,\n",
                                     encoding="utf-8")
    imported = dsr("--policy", str(policy_path), "request", "import", str(tmp_path / "in.csv"))
    assert imported.returncode == 0, imported.stderr
    policy = load_policy(policy_path)
    received = {e["request_id"]: e["details"] for e in audit.events(policy) if e["event"] == "received"}
    assert received[rid]["format"] == "csv" and "BEGIN PUBLIC KEY" in received[rid]["recipient_key"]
    assert sorted(d.get("format") for d in received.values() if d["kind"] == "export") == ["csv", "csv", "json"]
    assert next(d for d in received.values() if d["kind"] == "erase").get("format") is None


def test_bad_export_options_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSR_POLICY", raising=False)
    policy_path = write_policy(tmp_path, INTAKE_POLICY)
    p = ["--policy", str(policy_path)]
    assert dsr(*p, "request", "export", "u1", "--format", "xml").returncode == 2
    _one_error(dsr(*p, "request", "export", "u1", "--recipient-key", str(tmp_path / "none.pem")),
               "dsr: error: --recipient-key")
    (tmp_path / "not-a-key.pem").write_text("hello", encoding="utf-8")
    _one_error(dsr(*p, "request", "export", "u1", "--recipient-key", str(tmp_path / "not-a-key.pem")),
               "dsr: error: --recipient-key")
    (tmp_path / "bad.csv").write_text("kind,subject_id,format\nexport,u1,csv\nexport,u2,pdf\n", encoding="utf-8")
    _one_error(dsr(*p, "request", "import", str(tmp_path / "bad.csv")), "dsr: error: ")
    (tmp_path / "erase.csv").write_text("kind,subject_id,format\nerase,u1,csv\n", encoding="utf-8")
    _one_error(dsr(*p, "request", "import", str(tmp_path / "erase.csv")), "dsr: error: ")
    assert not (tmp_path / "lake").exists()  # no control table, no audit log


@pytest.mark.parametrize(("extra", "key"), [
    ("exports_sse: AES256\n", "'exports_sse' applies to an s3:// exports location only"),
    ("exports_sse: none\n", "'exports_sse' must be one of"),
    ("exports_kms_key_id: k1\n", "'exports_kms_key_id' needs exports_sse: aws:kms"),
    ("notify: {webhook: ftp://x/y}\n", "'notify.webhook' must be an http(s) URL"),
    ("notify: {webhook: 'http://h/x', retry: 3}\n", "'notify': unknown key 'retry'"),
    ('notify: {webhook: "http://h/x\\r\\nX-Injected: 1"}\n', "'notify.webhook' must be an http(s) URL with no"),
    ('notify: {webhook: "http://h/x\\ny"}\n', "'notify.webhook' must be an http(s) URL with no"),
    ("notify: {webhook: 'http://h/a b'}\n", "'notify.webhook' must be an http(s) URL with no"),
    ('notify: {webhook: "http://h/a\\tb"}\n', "'notify.webhook' must be an http(s) URL with no"),
    ("notify: {webhook: 'http://h:99999/x'}\n", "'notify.webhook': the port must be from 1 to 65535"),
    ("notify: {webhook: 'http://h:0/x'}\n", "'notify.webhook': the port must be from 1 to 65535"),
    ("erase_cooldown_days: -1\n", "'erase_cooldown_days' must be a whole number from 0 to 90"),
    ("exports_recipient_key: missing.pem\n", "'exports_recipient_key': cannot read"),
])
def test_bad_delivery_keys_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str,
                                        key: str) -> None:
    monkeypatch.delenv("DSR_POLICY", raising=False)
    policy_path = write_policy(tmp_path, INTAKE_POLICY + extra)
    out = dsr("--policy", str(policy_path), "request", "export", "u1")
    _one_error(out, "dsr: error: policy ")
    assert key in out.stderr
    assert not (tmp_path / "lake").exists()


def test_good_delivery_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _public_key(tmp_path / "team.pem")
    text = INTAKE_POLICY.replace("exports: ./exports", "exports: s3://exp/out") + (
        "exports_sse: aws:kms\nexports_kms_key_id: arn:aws:kms:eu-west-1:1:key/k\nexports_recipient_key: team.pem\n"
        "notify: {webhook: 'https://hooks.example/x', link: true}\nerase_cooldown_days: 7\n")
    policy = load_policy(write_policy(tmp_path, text))
    d = policy.delivery
    assert (d.sse, d.kms_key_id, policy.erase_cooldown_days) == ("aws:kms", "arn:aws:kms:eu-west-1:1:key/k", 7)
    assert d.recipient_key is not None and d.notify is not None and d.notify.link and d.notify.attempts == 3
