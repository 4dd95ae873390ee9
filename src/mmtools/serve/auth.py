"""A bearer token in front of the HTTP API, and the rule for when one is needed.

With a token, every request needs ``Authorization: Bearer TOKEN`` except ``GET /health`` (for load
balancers and monitors) and the web page's shell (``GET /`` and ``/static/...``): those hold no photos,
captions or results, and the page must load before it can ask for the token. Everything that reads data
(search, tag, embed, images, thumbnails, the API description) is refused with 401 and
``{"error", "hint"}`` otherwise. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

OPEN_PATHS = frozenset({"/health", "/", "/favicon.ico"})
OPEN_PREFIXES = ("/static/",)
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


class TokenAuth:
    """ASGI middleware: 401 for a request to a protected path without ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, token: str):
        if not token:
            raise ValueError("an empty token protects nothing")
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not needs_token(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        from mmtools.serve.http import _send_json

        message = "this server needs a token" if not given else "the token is not this server's"
        await _send_json(send, 401, {"error": message,
                                    "hint": "send the header 'Authorization: Bearer TOKEN' with the token the "
                                            "server was started with"},
                        headers=[(b"www-authenticate", b'Bearer realm="mmtools"')])
