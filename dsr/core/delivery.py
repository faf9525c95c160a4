"""How export packages are delivered, from the policy: server-side encryption on S3 (``exports_sse``,
``exports_kms_key_id``), a recipient public key for client-side encryption (``exports_recipient_key``, a PEM
file), and the notifier (``notify: {webhook: URL, link: bool, attempts: N}``). Also the export formats and the
check of a recipient public key (policy or per request). One-line PolicyError / InputError naming the key."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsr.errors import InputError, PolicyError

__all__ = ["DELIVERY_KEYS", "FORMATS", "SSE_MODES", "Delivery", "Notify", "check_format", "parse_delivery",
           "recipient_pem"]

FORMATS = ("json", "csv")
SSE_MODES = ("AES256", "aws:kms")
DELIVERY_KEYS = {"exports_sse", "exports_kms_key_id", "exports_recipient_key", "notify"}
_NOTIFY_KEYS = {"webhook", "link", "attempts", "timeout_seconds"}
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class Notify:
    webhook: str
    link: bool = False  # add a presigned link (S3 exports only) to the message
    attempts: int = 3
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class Delivery:
    sse: str | None = None
    kms_key_id: str | None = None
    recipient_key: str | None = None  # PEM of the policy's recipient public key
    notify: Notify | None = None


def check_format(value: Any, where: str) -> str:
    if value not in FORMATS:
        raise InputError(f"{where}: unknown export format (use one of: {', '.join(FORMATS)})")
    return str(value)


def recipient_pem(data: bytes, where: str) -> str:
    """The PEM text of an X25519 or RSA (>= 2048 bits) public key; InputError otherwise (the key not echoed)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa, x25519

    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise InputError(f"{where}: not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise InputError(f"{where}: an RSA key needs at least {MIN_RSA_BITS} bits")
    if not isinstance(key, (rsa.RSAPublicKey, x25519.X25519PublicKey)):
        raise InputError(f"{where}: use an X25519 or RSA public key")
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _url(value: Any, p: Path) -> str:
    """The webhook URL, checked on its raw text: ``urlsplit`` silently drops CR, LF and tab, and parses a space
    or an impossible port without a word (the URL itself is never echoed: it may carry a token)."""
    if isinstance(value, str) and any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise PolicyError(f"policy {p}: 'notify.webhook' must be an http(s) URL with no spaces or control "
                          "characters")
    parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise PolicyError(f"policy {p}: 'notify.webhook' must be an http(s) URL")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is not None and not 1 <= port <= 65535:
        raise PolicyError(f"policy {p}: 'notify.webhook': the port must be from 1 to 65535")
    return value


def _notify(raw: Any, p: Path) -> Notify | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or "webhook" not in raw:
        raise PolicyError(f"policy {p}: 'notify' must be a mapping with a 'webhook' URL")
    unknown = sorted(set(raw) - _NOTIFY_KEYS, key=str)
    if unknown:
        known = ", ".join(sorted(_NOTIFY_KEYS))
        raise PolicyError(f"policy {p}: 'notify': unknown key {unknown[0]!r} (known: {known})")
    link, attempts, timeout = raw.get("link", False), raw.get("attempts", 3), raw.get("timeout_seconds", 10)
    if not isinstance(link, bool):
        raise PolicyError(f"policy {p}: 'notify.link' must be true or false")
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 10:
        raise PolicyError(f"policy {p}: 'notify.attempts' must be a whole number from 1 to 10")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 120:
        raise PolicyError(f"policy {p}: 'notify.timeout_seconds' must be a number of seconds from 0 to 120")
    return Notify(_url(raw["webhook"], p), link, attempts, float(timeout))


def parse_delivery(raw: Mapping[str, Any], p: Path, exports: str) -> Delivery:
    """The delivery keys of a policy mapping (``p`` is the policy file; a key file is relative to it)."""
    sse, kms = raw.get("exports_sse"), raw.get("exports_kms_key_id")
    remote = exports.startswith(("s3://", "s3a://"))
    if sse is not None and sse not in SSE_MODES:
        raise PolicyError(f"policy {p}: 'exports_sse' must be one of: {', '.join(SSE_MODES)}")
    if sse is not None and not remote:
        raise PolicyError(f"policy {p}: 'exports_sse' applies to an s3:// exports location only (local files are "
                          "0600 in 0700 folders)")
    if kms is not None and (sse != "aws:kms" or not isinstance(kms, str) or not kms.strip()):
        raise PolicyError(f"policy {p}: 'exports_kms_key_id' needs exports_sse: aws:kms and a key id or ARN")
    key_file = raw.get("exports_recipient_key")
    pem = None
    if key_file is not None:
        if not isinstance(key_file, str) or not key_file.strip():
            raise PolicyError(f"policy {p}: 'exports_recipient_key' must be the path of a PEM public key file")
        path = p.resolve().parent / key_file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PolicyError(f"policy {p}: 'exports_recipient_key': cannot read {path} ({exc.strerror})") from None
        try:
            pem = recipient_pem(data, f"policy {p}: 'exports_recipient_key' {path}")
        except InputError as exc:
            raise PolicyError(str(exc)) from None
    return Delivery(sse=sse, kms_key_id=kms.strip() if isinstance(kms, str) else None, recipient_key=pem,
                    notify=_notify(raw.get("notify"), p))
