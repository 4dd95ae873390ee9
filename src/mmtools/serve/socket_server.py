"""The server's Unix socket: one thread per connection, so a slow client holds up nobody else.

Start-up takes a lock beside the socket (``server.sock.lock``) for the server's whole life, and creates the
socket itself only when the models are loaded. Holding it proves
no other server uses this socket, so a socket file left by a killed server is stale and is replaced; a
second server finds the lock taken and refuses. The socket is created mode 0600 (umask), so only this user
can connect.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import socketserver
import stat
import threading
from pathlib import Path
from typing import Any, Iterator

from mmtools.errors import MmtoolsError, Problem
from mmtools.serve import paths, protocol
from mmtools.serve.argv import Declined, search_request
from mmtools.serve.engine import Engine

log = logging.getLogger("mmtools")

CLIENT_IDLE_S = 120.0  # a client that sends nothing for this long is dropped


class ServerRunning(MmtoolsError):
    """Another server already answers on this socket."""


def acquire_socket(path: Path) -> Any:
    """Take the socket's lock and clear a stale socket file; raise ServerRunning if another server has it."""
    if str(path.parent) == paths.runtime_dir():
        try:
            paths.ensure_private_dir(str(path.parent))
        except paths.UnsafeRuntimeDir as exc:
            raise MmtoolsError(f"cannot use {path.parent} for the server's socket: {exc}",
                               hint="remove that folder, or name a socket in a private folder with "
                                    "--socket or MMTOOLS_SERVER") from None
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(f"{path}.lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ServerRunning(f"another mmtools server is already running on {path}",
                            hint="stop it first (kill its pid, shown by its /health), or use another "
                                 "--socket") from None
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return lock
    if not stat.S_ISSOCK(info.st_mode):
        lock.close()
        raise MmtoolsError(f"{path} exists and is not a socket; not replacing it",
                           hint="remove it, or name another socket with --socket")
    log.info("replacing stale socket %s (left by a server that did not shut down)", path)
    path.unlink()
    return lock


class _Handler(socketserver.StreamRequestHandler):
    server: "_ThreadingServer"

    def setup(self) -> None:
        self.request.settimeout(CLIENT_IDLE_S)
        super().setup()

    def handle(self) -> None:
        try:
            header = protocol.read_message(self.rfile)
            if header is None:
                return
            op = header.get("op")
            if header.get("v") != protocol.VERSION or op not in protocol.OPS:
                self._send(f"this server speaks protocol {protocol.VERSION} ({', '.join(protocol.OPS)})",
                           protocol.REFUSED)
                return
            if op == "search":
                try:
                    request, accepted = _search_request(header)
                except Declined as exc:  # the command itself answers (and explains) this one
                    log.debug("search left to the client: %s", exc)
                    self._send(str(exc), protocol.REFUSED)
                    return
                self._send(accepted, protocol.ACCEPTED)
                records = _search(self.server.engine, request, self.rfile, self._problem, self._warn)
                for record in records:
                    self._send(record, protocol.RECORD)
                self._send(None, protocol.END)
                return
            self._send(None, protocol.ACCEPTED)
            if op == "ping":
                self._send(self.server.engine.health(), protocol.RECORD)
            else:
                records = _OPERATIONS[op](self.server.engine, header, self.rfile, self._problem, self._warn)
                for record in records:
                    self._send(record, protocol.RECORD)
            self._send(None, protocol.END)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            log.debug("client went away")
        except protocol.ProtocolError as exc:
            self._error(f"bad request: {exc}", None, 2)
        except MmtoolsError as exc:
            self._error(exc.message, exc.hint, exc.exit_code)
        except Exception as exc:  # a bug: the client says so, the server keeps serving
            log.exception("request failed")
            self._error(f"internal error in the server: {type(exc).__name__}: {exc}",
                        "see the server's log; run the command with MMTOOLS_SERVER=off to work without it", 3)

    def _send(self, message: Any, kind: bytes) -> None:
        self.wfile.write(protocol.encode(message, kind))
        self.wfile.flush()

    def _problem(self, problem: Problem) -> None:
        self._send([problem.source, problem.reason], protocol.PROBLEM)

    def _warn(self, text: str) -> None:
        self._send(text, protocol.WARNING)

    def _error(self, message: str, hint: str | None, code: int) -> None:
        try:
            self._send({"message": message, "hint": hint, "code": code}, protocol.ERROR)
        except OSError:
            pass


def _search_request(header: dict) -> tuple[Any, Any]:
    """The request a client sent (built by the command's parser), or the one its forwarded command line
    makes (mmtools.serve.argv); and what the client is told on acceptance. Declined: the client searches."""
    from mmtools.search_plan import SearchRequest

    if "argv" in header:
        return search_request(header)
    try:
        return SearchRequest.from_json(header.get("request")), None
    except (MmtoolsError, TypeError) as exc:
        raise Declined(f"not a search request: {exc}") from None


def _search(engine: Engine, request: Any, rfile: Any, on_problem, warn) -> Iterator[dict]:
    """`mmtools search` for a client: the same plan as in-process (mmtools.search_plan) over the engine's
    warm indexes and models; hit paths written for the client's folder."""
    from mmtools.cli.search import none_selected, where_error
    from mmtools.index.filters import FilterError
    from mmtools.search_plan import search_hits
    from mmtools.serve.engine import EngineResources

    messages = protocol.read_inputs(rfile)
    if request.inputs is None:
        for _ in messages:  # the end of the (empty) input
            pass
        inputs = None
    elif request.inputs == "lines":
        inputs = (str(message.get("line", "")) for message in messages)
    else:
        inputs = (message.get("record") or {} for message in messages)
    hits = search_hits(request, EngineResources(engine), inputs, on_problem=on_problem,
                       on_none_selected=lambda name, where: warn(none_selected(name, where)))
    try:  # the first hit, so that a bad condition is an error before anything is sent (the client is the CLI)
        first = next(hits, None)
    except FilterError as exc:
        raise where_error(exc) from None
    return iter(()) if first is None else _chain(first, hits)


def _chain(first: dict, rest: Iterator[dict]) -> Iterator[dict]:
    yield first
    yield from rest


def _embed_texts(engine: Engine, header: dict, rfile: Any, on_problem, warn) -> Iterator[dict]:
    from mmtools.embed import TextItem

    items = (TextItem(str(m["id"]), str(m["text"]), m.get("record") or {}) for m in protocol.read_inputs(rfile))
    return engine.embed_texts(items, model=header.get("model"), batch_size=int(header.get("batch_size") or 64),
                              vector_format=header.get("embedding_format") or "base64", on_problem=on_problem)


def _tag(engine: Engine, header: dict, rfile: Any, on_problem, warn) -> Iterator[dict]:
    """`mmtools tag`: records in, tagged records out; image paths resolved where the client runs."""
    records = (m.get("record") or {} for m in protocol.read_inputs(rfile))
    root = header.get("root") or header.get("cwd")
    if root and header.get("cwd") and not os.path.isabs(root):
        root = os.path.join(header["cwd"], root)
    return engine.tag_records(records, model=header.get("model"), labels=header.get("labels"),
                              templates=header.get("templates"), top_k=header.get("top_k"),
                              threshold=header.get("threshold"), per_label=header.get("thresholds"),
                              text_fields=header.get("fields"), root=root,
                              batch_size=int(header.get("batch_size") or 32), use_cache=bool(header.get("use_cache", True)),
                              on_problem=on_problem)


_OPERATIONS = {"embed-texts": _embed_texts, "tag": _tag}


class _ThreadingServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # clients starting together wait in the backlog, not in a refused connect
    engine: Engine


class SocketServer:
    """Serves ``engine`` on the Unix socket at ``path`` from a background thread, from ``start`` to ``close``.

    Made, it holds the socket's lock (a second server refuses before loading anything); only ``start``
    creates the socket, once the models are loaded: until then clients find no server and work alone.
    """

    def __init__(self, engine: Engine, path: str | os.PathLike[str] | None = None):
        self.path = Path(paths.socket_path(path))
        self._engine = engine
        self._lock = acquire_socket(self.path)
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "SocketServer":
        old_umask = os.umask(0o177)  # the socket file is born 0600: no window where others could connect
        try:
            server = _ThreadingServer(str(self.path), _Handler)
        except OSError as exc:
            raise MmtoolsError(f"cannot listen on {self.path}: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        server.engine = self._engine
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="mmtools-socket", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:  # shutdown() waits for a serve_forever that must have started
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            try:
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    self.path.unlink()
            except FileNotFoundError:
                pass
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
