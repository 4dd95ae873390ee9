"""A bearer token in front of the HTTP API, and the rule for when one is needed.

With a token, every request needs ``Authorization: Bearer TOKEN`` (the scheme in any case) except
``GET /health`` (for load balancers and monitors, which without the token learn only that the server is up:
no paths, pid or counts) and the web page's shell (``GET /`` and ``/static/...``): those hold no photos,
captions or results, and the page must load before it can ask for the token. Everything that reads data
(search, tag, embed, images, thumbnails, the API description) is refused with 401 and
``{"error", "hint"}`` otherwise. Tokens are compared in constant time.

A ``<video>`` element cannot send a header, and a video is too big to fetch whole into a blob as the page
does pictures; so ``/video/...`` also opens with a signed URL (``UrlSigner``), which the page asks for with
its token: it names one video's path and the index asked for, expires, and is worth nothing for any other
route or index.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

OPEN_PATHS = frozenset({"/", "/favicon.ico"})  # and /health without an Authorization header (up or not)
OPEN_PREFIXES = ("/static/",)
SIGNED_PREFIXES = ("/video/",)  # may open with a signed URL instead of the header
SIGNED_URL_TTL_S = 6 * 3600  # long enough to watch a long video; its Range requests reuse the URL
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only (127.0.0.0/8, ::1, localhost).

    Any other name counts as reachable from outside: we do not resolve names to decide."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def needs_token(path: str) -> bool:
    return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES)


class UrlSigner:
    """Signs a path (``/video/ID``) with a key made from the server's token, until a time."""

    def __init__(self, token: str):
        self._key = hmac.new(token.encode(), b"mmtools signed URLs", hashlib.sha256).digest()

    def _signature(self, path: str, expires: int, index: str | None) -> str:
        message = f"{path}\0{expires}\0{index or ''}".encode("utf-8", "surrogateescape")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, path: str, ttl_s: float = SIGNED_URL_TTL_S, index: str | None = None) -> str:
        """The query string (``[index=...&]expires=...&sig=...``) that opens ``path`` (as the server decodes
        it) in ``index`` (the default index when None) and nowhere else."""
        expires = int(time.time() + ttl_s)
        fields = {"index": index} if index else {}
        return urlencode({**fields, "expires": expires, "sig": self._signature(path, expires, index)})

    def valid(self, path: str, query: bytes) -> bool:
        values = parse_qs(query.decode("utf-8", "surrogateescape"), keep_blank_values=True)
        try:
            expires = int(values["expires"][0])
            signature = values["sig"][0]
        except (KeyError, IndexError, ValueError):
            return False
        indexes = values.get("index", [])
        if len(indexes) > 1:
            return False
        index = indexes[0] if indexes else None
        return expires >= time.time() and hmac.compare_digest(signature, self._signature(path, expires, index))


class TokenAuth:
    """ASGI middleware: 401 for a request to a protected path without ``Authorization: Bearer <token>``
    (or, for a path ``signer`` may open, without a valid signed URL)."""

    def __init__(self, app: Any, token: str, signer: UrlSigner | None = None):
        if not token:
            raise ValueError("an empty token protects nothing")
        self.app = app
        self._expected = token.encode()
        self._signer = signer

    def _authorized(self, given: bytes) -> bool:
        """``Bearer TOKEN``, the scheme in any case (RFC 7235), the token compared in constant time."""
        scheme, _, credentials = given.strip().partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._expected)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        given = dict(scope.get("headers") or []).get(b"authorization", b"") if scope["type"] == "http" else b""
        if scope["type"] == "http" and path == "/health" and not given:  # a wrong token is a 401 below
            from mmtools.serve.http import _send_json

            await _send_json(send, 200, {"status": "ok", "detail": "send the token for the served models and "
                                                                   "indexes"})
            return
        if scope["type"] != "http" or not needs_token(path):
            await self.app(scope, receive, send)
            return
        if self._authorized(given) or (
                self._signer is not None and path.startswith(SIGNED_PREFIXES)
                and self._signer.valid(path, scope.get("query_string", b""))):
            await self.app(scope, receive, send)
            return
        from mmtools.serve.http import _send_json

        message = "this server needs a token" if not given else "the token is not this server's"
        await _send_json(send, 401, {"error": message,
                                    "hint": "send the header 'Authorization: Bearer TOKEN' with the token the "
                                            "server was started with"},
                        headers=[(b"www-authenticate", b'Bearer realm="mmtools"')])
