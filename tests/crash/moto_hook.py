"""moto's S3 server with a hook that sees every write before it is applied, and kills the purge at one of them.

Run as ``python -m tests.crash.moto_hook``: it prints its endpoint and serves until its stdin closes (as
``tests/moto_s3.py``'s server: in its own process, so delta-rs calls that hold the GIL never starve it). The
hook wraps moto's WSGI app. Between ``arm`` and ``disarm`` it records each PUT, POST and DELETE below the armed
roots as a :class:`tests.crash.events.FileEvent` (a multipart upload at its completion, a batch delete as one
event); when one is the target it SIGKILLs the armed process, waits until it is dead, and answers that request
and every later write with 503 without applying them: the write never happened, as when a process dies just
before it. Control (JSON over HTTP, on paths no bucket can have):

* ``POST /__crash__/arm`` ``{"roots": {"lake": "bucket/prefix", ...}, "target": [kind, rank] | null}``;
* ``POST /__crash__/pid`` ``{"pid": N}`` -- the process to kill (a target reached before it is set waits);
* ``POST /__crash__/disarm`` -> ``{"events": [...], "killed_at": event | null}``.

:class:`HookClient` is the test side.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from tests.crash.events import FileEvent, Recorder

__all__ = ["HookClient", "hooked_server"]

_CONTROL = "/__crash__/"


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


class _Armed:
    def __init__(self, roots: Mapping[str, str], target: tuple[str, int] | None) -> None:
        self.roots = {name: tuple(where.split("/", 1)) for name, where in roots.items()}
        self.pid: int | None = None
        self.requests: dict[str, int] = {}  # method -> how many, while armed
        self.recorder = Recorder(target=target, kill=self._kill)

    def _kill(self) -> None:
        deadline = time.monotonic() + 30
        while self.pid is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.pid is None:
            return
        os.kill(self.pid, signal.SIGKILL)
        while not _dead(self.pid) and time.monotonic() < deadline:
            time.sleep(0.005)

    def rel(self, bucket: str, key: str) -> str:
        for name, (b, prefix) in self.roots.items():
            if bucket == b and key.startswith(prefix + "/"):
                return f"{name}/{key[len(prefix) + 1:]}"
        return f"outside/{bucket}/{key}"


class _Hook:
    """The WSGI middleware."""

    def __init__(self, app: Callable[..., Iterable[bytes]], exists: Callable[[str, str], bool]) -> None:
        self.app = app
        self.exists = exists
        self.lock = threading.Lock()
        self.armed: _Armed | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(_CONTROL):
            return self._control(path[len(_CONTROL):], environ, start_response)
        armed = self.armed
        if armed is not None:
            armed.requests[environ["REQUEST_METHOD"]] = armed.requests.get(environ["REQUEST_METHOD"], 0) + 1
        if armed is not None and environ["REQUEST_METHOD"] in ("PUT", "POST", "DELETE") and self._refused(
                armed, path, environ):
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"the writer was killed before this request"]
        return self.app(environ, start_response)

    def _refused(self, armed: _Armed, path: str, environ: dict[str, Any]) -> bool:
        """Record the request's event; True when the writer is dead (killed now or before)."""
        method = environ["REQUEST_METHOD"]
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        raw = path.encode("latin-1").decode("utf-8", errors="replace").lstrip("/")
        bucket, _, key = raw.partition("/")
        changes: list[tuple[str, str, int]] = []  # (key, op, count)
        if method == "POST" and "delete" in query:
            body = _body(environ)
            keys = _keys_of(body)
            if keys:
                changes.append((keys[0], "delete", len(keys)))
        elif key and method == "DELETE" and "uploadId" not in query:
            changes.append((key, "delete", 1))
        elif key and ((method == "PUT" and "partNumber" not in query) or (method == "POST" and "uploadId" in query)):
            changes.append((key, "rewrite" if self.exists(bucket, key) else "write", 1))  # a PUT, an upload's end
        with self.lock:
            if armed.recorder.killed_at is not None:
                return True
            for k, op, count in changes:
                armed.recorder.add(armed.rel(bucket, k), op, count)
            return armed.recorder.killed_at is not None

    def _control(self, verb: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        data = json.loads(_body(environ) or b"{}")
        out: dict[str, Any] = {}
        with self.lock:
            if verb == "arm":
                target = data.get("target")
                self.armed = _Armed(data["roots"], tuple(target) if target else None)  # type: ignore[arg-type]
            elif verb == "pid" and self.armed is not None:
                self.armed.pid = int(data["pid"])
            elif verb == "disarm" and self.armed is not None:
                rec = self.armed.recorder
                out = {"events": [e.as_dict() for e in rec.events], "requests": self.armed.requests,
                       "killed_at": rec.killed_at.as_dict() if rec.killed_at else None}
                self.armed = None
        body = json.dumps(out).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put it back for moto."""
    import io

    length = int(environ.get("CONTENT_LENGTH") or 0)
    data = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(data)
    return data


def _keys_of(body: bytes) -> list[str]:
    """The keys of an S3 DeleteObjects request."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(body)
    return [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Key"]


def hooked_server() -> Any:
    """A started werkzeug server running moto's app behind the hook, on 127.0.0.1 and a free port."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
    from moto.s3.models import s3_backends
    from werkzeug.serving import make_server

    def exists(bucket: str, key: str) -> bool:
        found = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets.get(bucket)
        return found is not None and found.keys.get(key) is not None

    # moto's S3 app itself: the dispatcher in front of it looks for every service's module on disk per request
    app = _Hook(create_backend_app("s3"), exists)
    server = make_server("127.0.0.1", 0, app, True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class HookClient:
    """The test side of the hook."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.requests: dict[str, int] = {}  # the last armed run's requests by method

    def _post(self, verb: str, data: Mapping[str, Any]) -> dict[str, Any]:
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint}{_CONTROL}{verb}", data=json.dumps(data).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(json.loads(response.read() or b"{}"))

    def arm(self, roots: Mapping[str, str], target: tuple[str, int] | None) -> None:
        self._post("arm", {"roots": dict(roots), "target": list(target) if target else None})

    def pid(self, pid: int) -> None:
        self._post("pid", {"pid": pid})

    def disarm(self) -> tuple[list[FileEvent], FileEvent | None]:
        out = self._post("disarm", {})
        self.requests = dict(out.get("requests", {}))
        events = [FileEvent(**e) for e in out.get("events", [])]
        killed = FileEvent(**out["killed_at"]) if out.get("killed_at") else None
        return events, killed


def main() -> None:
    server = hooked_server()
    host, port = server.server_address[:2]
    print(f"http://{host}:{port}", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    server.shutdown()


if __name__ == "__main__":
    main()
