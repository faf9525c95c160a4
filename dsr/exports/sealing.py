"""Client-side encryption of an export package to the recipient's public key (pyca ``cryptography``; nothing
home-made: standard primitives in their standard modes).

A sealed package (``<request_id>.zip.sealed``) is::

    b"DSR-SEALED-1\\n"
    one line of JSON, the header, then b"\\n":
      X25519: {"alg": "X25519-HKDF-SHA256/AES-256-GCM", "epk": base64(ephemeral public key), "nonce": base64(12)}
      RSA:    {"alg": "RSA-OAEP-SHA256/AES-256-GCM", "wrapped_key": base64(OAEP(data key)), "nonce": base64(12)}
    the zip, encrypted with AES-256-GCM (one message; the magic line and the header are its associated data)
    the 16-byte GCM tag

X25519: the data key is HKDF-SHA256(ECDH(ephemeral, recipient), salt = ephemeral public || recipient public,
info = b"dsr-lake export package v1"), 32 bytes. RSA: a random 32-byte data key wrapped with RSA-OAEP (MGF1 and
hash SHA-256). Every package has its own data key and nonce. Without the private key the file is noise; a
wrong key or any changed byte fails the tag check (:func:`unseal`, which removes what it wrote).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any, BinaryIO

__all__ = ["MAGIC", "SUFFIX", "Sealer", "unseal"]

MAGIC = b"DSR-SEALED-1\n"
SUFFIX = ".sealed"
_INFO = b"dsr-lake export package v1"
_TAG = 16
_X25519 = "X25519-HKDF-SHA256/AES-256-GCM"
_RSA = "RSA-OAEP-SHA256/AES-256-GCM"


def _kdf(shared: bytes, salt: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO).derive(shared)


def _raw(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _oaep() -> Any:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class Sealer:
    """A write-only stream that encrypts what it is given to ``out`` (closed by :meth:`close` too)."""

    def __init__(self, out: Any, recipient_pem: str) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa, x25519
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        recipient = serialization.load_pem_public_key(recipient_pem.encode("ascii"))
        nonce = os.urandom(12)
        header: dict[str, str]
        if isinstance(recipient, x25519.X25519PublicKey):
            eph = x25519.X25519PrivateKey.generate()
            epk = _raw(eph.public_key())
            key = _kdf(eph.exchange(recipient), epk + _raw(recipient))
            header = {"alg": _X25519, "epk": base64.b64encode(epk).decode()}
        elif isinstance(recipient, rsa.RSAPublicKey):
            key = os.urandom(32)
            header = {"alg": _RSA, "wrapped_key": base64.b64encode(recipient.encrypt(key, _oaep())).decode()}
        else:
            raise ValueError("the recipient key must be X25519 or RSA")
        header["nonce"] = base64.b64encode(nonce).decode()
        head = MAGIC + json.dumps(header, sort_keys=True).encode("ascii") + b"\n"
        self._enc = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
        self._enc.authenticate_additional_data(head)
        self._out = out
        self._out.write(head)

    def write(self, data: bytes) -> int:
        self._out.write(self._enc.update(bytes(data)))
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self._out.write(self._enc.finalize() + self._enc.tag)
        self._out.close()


def unseal(src: BinaryIO, dst_path: str, private_pem: bytes, password: bytes | None = None) -> None:
    """Decrypt a sealed package read from ``src`` into the file ``dst_path`` (the zip). ValueError when the key
    is not the recipient's or the file was changed; nothing is left at ``dst_path`` then."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa, x25519
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if src.read(len(MAGIC)) != MAGIC:
        raise ValueError("not a sealed dsr export package")
    line = src.readline(4096)
    header = json.loads(line)
    private = serialization.load_pem_private_key(private_pem, password)
    if header.get("alg") == _X25519 and isinstance(private, x25519.X25519PrivateKey):
        epk = base64.b64decode(header["epk"])
        key = _kdf(private.exchange(x25519.X25519PublicKey.from_public_bytes(epk)), epk + _raw(private.public_key()))
    elif header.get("alg") == _RSA and isinstance(private, rsa.RSAPrivateKey):
        key = private.decrypt(base64.b64decode(header["wrapped_key"]), _oaep())  # ValueError with a wrong key
    else:
        raise ValueError("the private key does not fit this package's algorithm")
    dec = Cipher(algorithms.AES(key), modes.GCM(base64.b64decode(header["nonce"]))).decryptor()
    dec.authenticate_additional_data(MAGIC + line)
    try:
        with open(dst_path, "wb") as out:
            held = b""
            while chunk := src.read(1 << 20):
                held += chunk
                out.write(dec.update(held[:-_TAG]))
                held = held[-_TAG:]
            out.write(dec.finalize_with_tag(held))
    except InvalidTag:
        os.unlink(dst_path)
        raise ValueError("the package does not decrypt with this key (wrong key, or the file was changed)") from None
    except BaseException:
        os.unlink(dst_path)
        raise
