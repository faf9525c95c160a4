"""One POST of a JSON message to a webhook, never following a redirect.

A 2xx is success. Any other status raises ``urllib.error.HTTPError``, a 3xx too: following it would re-send the
POST as a GET without its body and report the redirect's target as the delivery. The environment's proxy
settings apply, as for any urllib request.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from email.message import Message
from typing import IO, Any

__all__ = ["MAX_ANSWER_BYTES", "post_json"]

MAX_ANSWER_BYTES = 64 * 1024  # of an answer's body, read and dropped


def post_json(url: str, body: Mapping[str, Any], timeout: float) -> int:
    """POST ``body`` as JSON and read the answer; the HTTP status (2xx).

    Raises ``urllib.error.HTTPError`` for any other status (a 3xx is not followed), another ``OSError`` when
    the server cannot be reached."""
    req = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "dsr-lake"})
    with urllib.request.build_opener(_NoRedirect()).open(req, timeout=timeout) as resp:
        resp.read(MAX_ANSWER_BYTES)
        return int(resp.status)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Message, newurl: str) -> urllib.request.Request | None:
        return None  # not followed: urllib raises HTTPError with the 3xx status
