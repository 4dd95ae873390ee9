"""What keeps the HTTP server's answers to the people it is meant for, whatever a request or the disk says.

* ``HostCheck``: a server with no token answers only requests addressed to its own names (127.0.0.1,
  localhost, [::1], the name it was bound to); any other ``Host`` (a page of attacker.example that rebinds its
  DNS name to 127.0.0.1) gets 421. A server with a token is protected by the token instead, and one bound to
  every address with ``--insecure`` answers any name, as its user chose.
* ``PlainErrorsAsJson``: errors that frameworks answer as text (a bad ``Range``, 416) come back as
  ``{"error", "hint"}`` like every other error of the API.
* ``too_deep``: a JSON body nested past what the parser can follow is a 400, not a 500 RecursionError.
* ``served_file``: a record's picture is served only when it is a regular file that resolves inside the
  index's root or folder, or is the recorded absolute path itself with no link on the way (a photo replaced
  by ``ln -s /etc/passwd`` is not), and it decodes as an image.
* ``header_timeout_protocol``: uvicorn's HTTP protocol with a deadline for a request's headers, so a client
  that sends them a byte at a time (slowloris) is cut off.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

LOCAL_HOST_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]"})  # bound to every address (only with --insecure)
HEADER_TIMEOUT_S = 10.0
TOO_DEEP_HINT = "send a flat JSON object, e.g. {\"query\": \"xe hơi\"}"


def _host_name(value: str) -> str:
    """The name part of a Host header (``[::1]:8000`` -> ``[::1]``, ``Localhost.:80`` -> ``localhost``)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[:end + 1] if end > 0 else value
    return value.rsplit(":", 1)[0].rstrip(".") if value.count(":") <= 1 else value


class HostCheck:
    """ASGI middleware: 421 for a request whose ``Host`` is not one of ``names`` (lower case)."""

    def __init__(self, app: Any, names: Iterable[str]):
        self.app = app
        self.names = frozenset(name.lower() for name in names) | LOCAL_HOST_NAMES

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if _host_name(host) in self.names:
            await self.app(scope, receive, send)
            return
        from mmtools.serve.http import _send_json

        await _send_json(send, 421, {"error": f"this server does not answer for host {host or '(none)'!r}",
                                     "hint": "open it as http://127.0.0.1:PORT or http://localhost:PORT; to serve "
                                             "other names, start it with a --token"})


def own_names(host: str | None) -> set[str]:
    """The names a server bound to ``host`` answers for besides the loopback ones."""
    if not host:
        return set()
    name = host.strip().lower()
    return {name, f"[{name.strip('[]')}]"} if ":" in name else {name}


class PlainErrorsAsJson:
    """ASGI middleware: a 4xx/5xx answer sent as text/plain (Starlette's Range errors) is sent as
    ``{"error": text, "hint": ...}`` instead."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: dict | None = None
        body = b""

        async def rewriting(message: dict) -> None:
            nonlocal held, body
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if message["status"] >= 400 and headers.get(b"content-type", b"").startswith(b"text/plain"):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                body += message.get("body", b"")
                if message.get("more_body"):
                    return
                await _send_as_json(send, held, body)
                held = None
                return
            await send(message)

        await self.app(scope, receive, rewriting)


async def _send_as_json(send: Any, start: dict, body: bytes) -> None:
    import orjson

    status = start["status"]
    text = body.decode("utf-8", "replace").strip() or {416: "range not satisfiable"}.get(status, "request failed")
    hint = ("ask for a byte range inside the file (Range: bytes=START-END)" if status in (400, 416)
            else "see the server's log")
    payload = orjson.dumps({"error": text, "hint": hint})
    kept = [(k, v) for k, v in start.get("headers") or [] if k.lower() not in (b"content-type", b"content-length")]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *kept]})
    await send({"type": "http.response.body", "body": payload})


def install_error_answers(app: Any, answer: Any) -> None:
    """Error answers of this module's concern on the FastAPI ``app`` (``answer``: the JSON response class)."""

    async def too_deep(_request: Any, _exc: RecursionError) -> Any:
        return answer({"error": "request body is nested too deeply to read", "hint": TOO_DEEP_HINT},
                      status_code=400)

    app.add_exception_handler(RecursionError, too_deep)


# ---------------------------------------------------------------------------------------- files


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:
        return False


def served_file(candidate: str, roots: Iterable[str]) -> str | None:
    """``candidate`` if it may be served: a regular file that resolves inside one of ``roots`` (resolved
    too), or whose path has no link in it at all; else None."""
    try:
        real = os.path.realpath(candidate, strict=True)
    except (OSError, ValueError):
        return None
    if not os.path.isfile(real):
        return None
    if real == os.path.abspath(candidate):
        return candidate
    for root in roots:
        if root and _inside(real, os.path.realpath(root)):
            return candidate
    return None


def looks_like_image(path: str) -> bool:
    """Whether the file decodes as an image (its header, read by Pillow; videos are checked by their
    decoder when a frame is taken)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def header_timeout_protocol(timeout_s: float = HEADER_TIMEOUT_S) -> Any:
    """uvicorn's h11 protocol, closing a connection whose request headers have not all come within
    ``timeout_s`` (of connecting, or of the previous answer on a kept-alive connection)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeout(H11Protocol):
        _header_timer: Any = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(timeout_s, self._deadline)

        def _deadline(self) -> None:
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # still no whole request line and headers

    return HeaderTimeout
