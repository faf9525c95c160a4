"""One POST of a JSON message to a webhook, within one overall deadline, never following a redirect.

A socket timeout bounds each read, not the answer: a server that sends a byte every few seconds would hold a
``dsr run`` (and the batch's lease) for ever. :func:`post_json` gives the whole attempt — connect, send, read
the status, the headers and the body — ``timeout`` seconds in all. The request runs in a worker thread; at the
deadline the caller gets ``TimeoutError`` and the connection is shut, which ends the worker.

A 2xx is success. Any other status raises ``urllib.error.HTTPError``, a 3xx too: following it would re-send the
POST as a GET without its body and report the redirect's target as the delivery. The environment's proxy
settings apply, as for any urllib request.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import urllib.request
from collections.abc import Mapping
from email.message import Message
from typing import IO, Any

__all__ = ["MAX_ANSWER_BYTES", "post_json"]

MAX_ANSWER_BYTES = 64 * 1024  # of an answer's body, read (within the deadline) and dropped


def post_json(url: str, body: Mapping[str, Any], timeout: float) -> int:
    """POST ``body`` as JSON and read the answer within ``timeout`` seconds in all; the HTTP status (2xx).

    Raises ``urllib.error.HTTPError`` for any other status (a 3xx is not followed), ``TimeoutError`` at the
    deadline, another ``OSError`` when the server cannot be reached."""
    data = json.dumps(body).encode("utf-8")
    attempt = _Attempt()
    outcome: list[int | BaseException] = []

    def work() -> None:
        try:
            outcome.append(attempt.post(url, data, timeout))
        except BaseException as exc:  # handed to the caller
            outcome.append(exc)

    worker = threading.Thread(target=work, name="dsr-webhook", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        attempt.abandon()
        raise TimeoutError(f"no complete answer within {timeout:g} s")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


class _Attempt:
    """The connections of one attempt, so that its deadline can shut them (the worker then fails at once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []
        self._abandoned = False
        self._opener = urllib.request.build_opener(_NoRedirect(), _Http(self), _Https(self))

    def post(self, url: str, data: bytes, timeout: float) -> int:
        req = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "dsr-lake"})
        with self._opener.open(req, timeout=timeout) as resp:  # timeout: each socket operation, as a backstop
            resp.read(MAX_ANSWER_BYTES)
            return int(resp.status)

    def connection(self, cls: type[http.client.HTTPConnection]) -> Any:
        """A factory of ``cls`` (the ``http_class`` of urllib's handlers) that keeps what it makes."""

        def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            conn = cls(host, **kwargs)
            with self._lock:
                if self._abandoned:
                    raise TimeoutError("the delivery attempt was given up")
                self._connections.append(conn)
            return conn

        return make

    def abandon(self) -> None:
        """Shut every socket of the attempt (shut, not closed: the worker may be reading it and closes it)."""
        with self._lock:
            self._abandoned = True
            connections = list(self._connections)
        for conn in connections:
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Message, newurl: str) -> urllib.request.Request | None:
        return None  # not followed: urllib raises HTTPError with the 3xx status


class _Http(urllib.request.HTTPHandler):
    def __init__(self, attempt: _Attempt) -> None:
        super().__init__()
        self._attempt = attempt

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._attempt.connection(http.client.HTTPConnection), req)


class _Https(urllib.request.HTTPSHandler):
    def __init__(self, attempt: _Attempt) -> None:
        self._ssl = ssl.create_default_context()
        super().__init__(context=self._ssl)
        self._attempt = attempt

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._attempt.connection(http.client.HTTPSConnection), req, context=self._ssl)
