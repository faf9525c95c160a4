"""``dsr.steps.webhook.post_json`` over TLS, against a real local HTTPS server (a throw-away certificate for
127.0.0.1, trusted through ``SSL_CERT_FILE``): a 2xx is returned, a 3xx is raised and never followed, and a
server that answers a byte at a time is given up at the one deadline, the attempt's worker ended with it.
(The same over plain HTTP, through a whole run, is in test_delivery.py.)"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import ssl
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsr.steps.webhook import post_json
from tests.steps.test_delivery import _finished_within, _Hook, serving


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dsr test hook")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "hook.pem", folder / "hook.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture()
def tls_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    cert_file, key_file = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # the client trusts it; nothing else changes
    server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with serving(server, 200) as running:
        running.url = f"https://127.0.0.1:{server.server_address[1]}/hook"
        yield running


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dsr-webhook"]


def test_a_2xx_over_tls_is_the_status(tls_hook: Any) -> None:
    assert post_json(tls_hook.url, {"event": "probe"}, 5.0) == 200
    assert tls_hook.received == [b'{"event": "probe"}']


def test_a_3xx_over_tls_is_raised_with_its_status_and_never_followed(tls_hook: Any) -> None:
    tls_hook.status = 303  # "See Other": urllib would follow it with a GET
    with pytest.raises(urllib.error.HTTPError) as raised:
        post_json(tls_hook.url, {"event": "probe"}, 5.0)
    assert raised.value.code == 303 and tls_hook.gets == [] and len(tls_hook.received) == 1


def test_a_tls_answer_a_byte_at_a_time_is_given_up_at_the_deadline_and_its_worker_ends(tls_hook: Any) -> None:
    tls_hook.dribble = 0.25
    done, result = _finished_within(3.0, lambda: post_json(tls_hook.url, {"event": "probe"}, 1.0))
    assert done, "post_json still waiting for the answer after 3x its timeout"
    assert isinstance(result, TimeoutError) and str(result) == "no complete answer within 1 s", result
    limit = time.monotonic() + 3.0  # the connection was shut: the worker thread ends, it does not read on
    while _workers() and time.monotonic() < limit:
        time.sleep(0.05)
    assert _workers() == []
