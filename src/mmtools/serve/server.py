"""Running the server: socket (always) and HTTP (optional), until SIGTERM or SIGINT; then a clean stop.

The socket's lock is taken first, so a second server refuses before loading anything. Models and indexes
are loaded before the socket and the HTTP port open, and a start-up error ends the server at once. On SIGTERM/SIGINT the HTTP server finishes the requests
in flight, the socket file is removed, and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from mmtools.errors import MmtoolsError, UsageError
from mmtools.serve.engine import Engine
from mmtools.serve.socket_server import SocketServer

log = logging.getLogger("mmtools")

HTTP_START_TIMEOUT_S = 30.0


@dataclass
class Ready:
    socket: str
    http: str | None  # http://HOST:PORT as bound (port 0 becomes the real one)


def parse_host_port(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``PORT``, ``:PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``."""
    text = value.strip()
    host, _, port = text.rpartition(":") if ":" in text else ("", "", text)
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--http {value!r} is not HOST:PORT", hint="e.g. --http 127.0.0.1:8000 or --http 8000")
    return host, int(port)


class _Stop(Exception):
    pass


def serve(engine: Engine, *, socket: str | None = None, http: tuple[str, int] | None = None,
          max_body_bytes: int | None = None, token: str | None = None,
          on_ready: Callable[[Ready], None] | None = None, stop: threading.Event | None = None) -> None:
    """Serve until ``stop`` is set (by SIGTERM/SIGINT when run in the main thread).

    A model or index that cannot be loaded raises at once (nothing listens yet); the socket and the HTTP port
    open only when everything named is loaded. With ``token``, HTTP requests need it (mmtools.serve.auth).
    """
    stop = stop or threading.Event()
    loading = threading.Event()
    loading.set()
    previous = _install_signals(stop, loading)
    sockets = web = None
    try:
        sockets = SocketServer(engine, socket)  # the lock first: a second server refuses before loading
        app = None
        if http is not None:
            from mmtools.serve.http import DEFAULT_MAX_BODY, create_app

            app = create_app(engine, max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY, token=token, host=http[0])
        engine.warm_up()
        sockets.start()
        address = None
        if app is not None:
            web, address = _start_http(app, *http)
        loading.clear()
        if on_ready is not None:
            on_ready(Ready(str(sockets.path), address))
        while not stop.wait(0.5):
            if web is not None and not web[1].is_alive():
                raise MmtoolsError("the HTTP server stopped unexpectedly")
    except _Stop:
        pass
    finally:
        loading.clear()  # a signal during the clean-up below no longer interrupts it
        if web is not None:
            web[0].should_exit = True
            web[1].join(timeout=10)
        if sockets is not None:
            sockets.close()
        engine.close()
        _restore_signals(previous)


def _start_http(app: Any, host: str, port: int) -> tuple[tuple[Any, threading.Thread], str]:
    import uvicorn

    from mmtools.serve.security import header_timeout_protocol

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False,
                            timeout_keep_alive=5, http=header_timeout_protocol())
    server = uvicorn.Server(config)
    # In a thread, uvicorn leaves signals alone (they are ours: see _install_signals).
    thread = threading.Thread(target=server.run, name="mmtools-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + HTTP_START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise MmtoolsError(f"cannot listen on http://{host}:{port} (is the port in use?)",
                               hint="choose another port with --http HOST:PORT")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return (server, thread), f"http://{shown}:{bound[1]}"


def _install_signals(stop: threading.Event, loading: threading.Event) -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handle(signum: int, _frame: Any) -> None:
        stop.set()
        if loading.is_set():  # still loading models: stop now, cleaning up on the way out
            raise _Stop()

    return {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}


def _restore_signals(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
