"""The client side: CLI commands hand their work to a running server, or learn that none runs.

Light by design: the standard library and mmtools' own light modules only (no torch, numpy, faiss or
transformers; not even orjson, whose import pulls dataclasses, uuid and datetime, unless the input is JSONL),
so that a command served remotely starts in milliseconds: records come back as bytes and are written as
they are, and only the rare problem or error message is parsed. Every function that may talk to a
server returns False when there is none (or it refuses the request) before anything was written, and the
caller then does the work in-process: using a server is never required.
"""

from __future__ import annotations

import _socket  # the C module: `socket` costs its enums and selectors at import
import os
import sys
TYPE_CHECKING = False  # not `from typing import ...`: typing costs milliseconds at start-up

from mmtools.serve import paths, protocol

if TYPE_CHECKING:  # imported lazily below: on the start-up path of a served command every import counts
    from typing import Any, BinaryIO, Callable, Iterable

    from mmtools.errors import MmtoolsError, ProblemHandler

CONNECT_TIMEOUT_S = 1.0
# A live server accepts a request at once (its socket thread answers "+" before any work); a stuck one (stopped,
# swapping) is passed by, the inputs unread, and not asked again by this process: a command pays this wait at
# most once, then works alone (README, "A server that does not answer").
ACCEPT_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 600.0  # the longest silence within an accepted request (a model loading for it included)
_passed_by: set[str] = set()  # the sockets whose server did not accept in time, in this process


class _Refused(Exception):
    pass


class _Connection:
    """A Unix stream socket with line reading and buffered writing, on the bare C socket module."""

    def __init__(self, sock: Any):
        self._sock = sock
        self._buffer = b""
        self._out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._out.append(data)

    def settimeout(self, seconds: float) -> None:
        self._sock.settimeout(seconds)

    def flush(self) -> None:
        if self._out:
            self._sock.sendall(b"".join(self._out))
            self._out.clear()

    def readline(self, limit: int) -> bytes:
        while b"\n" not in self._buffer and len(self._buffer) <= limit:
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                break
            self._buffer += chunk
        end = self._buffer.find(b"\n")
        cut = len(self._buffer) if end < 0 else end + 1
        line, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return line

    def close(self) -> None:
        self._sock.close()


def _encode(message: dict[str, Any]) -> bytes:
    if "orjson" in sys.modules:  # already loaded to read JSONL input: the faster encoder
        return sys.modules["orjson"].dumps(message) + b"\n"
    return (_json_text(message) + "\n").encode("utf-8", "surrogatepass")


def _json_text(value: Any) -> str:
    """JSON for the header's plain values, with the C string escaper (``import json`` pulls ``re``)."""
    from _json import encode_basestring

    if isinstance(value, str):
        return encode_basestring(value)
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, int) or value == value and abs(value) != float("inf") else "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{encode_basestring(str(k))}:{_json_text(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot send {type(value).__name__} to the server")


def _decode(body: bytes) -> Any:
    import json

    return json.loads(body)


def connect(path: str | os.PathLike[str] | None = None) -> _Connection | None:
    """A connection to the running server, or None (no server, disabled, a socket that is not ours, or a
    server that did not accept a request of this process in time)."""
    if path is None and paths.client_disabled():
        return None
    where = paths.socket_path(path)
    if where in _passed_by or not paths.usable_socket(where):
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT_S)
    try:
        sock.connect(where)
    except OSError:  # refused (stale socket), vanished, timed out: no server
        sock.close()
        return None
    return _Connection(sock)


def error_from(message: dict[str, Any]) -> MmtoolsError:
    """The server's error as the typed error the in-process command would have raised (same exit status)."""
    from mmtools.errors import EXIT_FATAL, EXIT_USAGE, MmtoolsError, UsageError

    code = message.get("code", EXIT_FATAL)
    kind = UsageError if code == EXIT_USAGE else MmtoolsError
    error = kind(str(message.get("message", "the server reported an error")), message.get("hint"))
    error.exit_code = code
    return error


def call(op: str, header: dict[str, Any], inputs: Iterable[dict[str, Any]] | None, out: BinaryIO | Callable[[], BinaryIO],
         on_problem: ProblemHandler, *, flush_each: bool = False, path: str | None = None,
         on_warning: Callable[[str], None] | None = None) -> bool:
    """Run ``op`` on the server, writing its records to ``out`` (a stream, or a function opening one on the
    first record). False when no server took the request (nothing was written, ``inputs`` not consumed).
    ``on_warning`` shows the server's warnings [default: standard error, after the command's name]."""
    connection = connect(path)
    if connection is None:
        return False
    try:
        _accepted(connection, op, header, inputs is None, path)
        return _converse(connection, op, inputs, out, on_problem, flush_each,
                         on_warning or (lambda text: sys.stderr.write(f"mmtools {op}: warning: {text}\n")))
    except _Refused:
        return False
    finally:
        connection.close()


def _accepted(connection: _Connection, op: str, header: dict[str, Any], no_inputs: bool,
              path: str | os.PathLike[str] | None = None) -> Any:
    """Send the request's header; the server's acceptance (what it said with "+"), or _Refused."""
    wfile = rfile = connection
    wfile.write(_encode({"v": protocol.VERSION, "op": op, **header}))
    if no_inputs:
        wfile.write(_encode({"end": True}))
    wfile.flush()
    # Inputs (perhaps standard input, which cannot be read twice) are sent only once the server has taken the
    # request: a server that is stuck, or that speaks another protocol, leaves them to the in-process command.
    connection.settimeout(ACCEPT_TIMEOUT_S)
    try:
        accepted = rfile.readline(protocol.MAX_LINE + 1)
    except TimeoutError:
        _passed_by.add(paths.socket_path(path))  # stuck: not asked again by this process
        raise _Refused() from None
    except ConnectionResetError:
        raise _Refused() from None
    if accepted[:1] != protocol.ACCEPTED:
        raise _Refused()  # "!" (another protocol version, an unknown operation, a request it leaves to us)
    connection.settimeout(REPLY_TIMEOUT_S)
    body = accepted[1:].strip()
    return _decode(body) if body not in (b"", b"null") else None


def _converse(connection: _Connection, op: str, inputs, out, on_problem, flush_each: bool,
              on_warning: Callable[[str], None]) -> bool:
    wfile = rfile = connection
    sender = None
    if inputs is not None:
        sender = _sender(wfile, inputs)
        sender.start()
    stream = out if not callable(out) else None
    try:
        while True:
            try:
                line = rfile.readline(protocol.MAX_LINE + 1)
            except TimeoutError:
                from mmtools.errors import MmtoolsError

                raise MmtoolsError(f"the mmtools server sent nothing for {REPLY_TIMEOUT_S:.0f} s",
                                   hint="see the server's log; MMTOOLS_SERVER=off works without it") from None
            if not line:
                from mmtools.errors import MmtoolsError

                raise MmtoolsError("the mmtools server closed the connection before finishing",
                                   hint="see the server's log; MMTOOLS_SERVER=off works without it")
            kind, body = line[:1], line[1:]
            if kind == protocol.RECORD:
                if stream is None:
                    stream = out()
                stream.write(body)
                if flush_each:
                    stream.flush()
            elif kind == protocol.PROBLEM:
                from mmtools.errors import Problem

                source, reason = _decode(body)
                on_problem(Problem(source, reason))
            elif kind == protocol.WARNING:
                on_warning(str(_decode(body)))
            elif kind == protocol.END:
                break
            elif kind == protocol.ERROR:
                raise error_from(_decode(body))
            else:
                from mmtools.errors import MmtoolsError

                raise MmtoolsError("the mmtools server sent something this client does not understand",
                                   hint="restart the server with this version of mmtools")
    finally:
        if sender is not None:
            sender.stop()
    if sender is not None and sender.error is not None:
        raise sender.error
    return True


def _sender(wfile: BinaryIO, inputs: Iterable[dict[str, Any]]) -> Any:
    """A thread streaming input messages to the server while the main thread reads its answers (no deadlock
    on big input). Its ``error`` is an exception reading the inputs, raised after the answers."""
    import threading

    class Sender(threading.Thread):
        def __init__(self) -> None:
            super().__init__(name="mmtools-send", daemon=True)
            self.sent = 0
            self.error: BaseException | None = None
            self._stopped = False

        def run(self) -> None:
            try:
                for message in inputs:
                    if self._stopped:
                        return
                    wfile.write(_encode(message))
                    self.sent += 1
                    if self.sent % 64 == 0:
                        wfile.flush()
                wfile.write(_encode({"end": True}))
                wfile.flush()
            except (BrokenPipeError, ConnectionResetError, ValueError):
                pass  # the server stopped reading: its answer says why
            except BaseException as exc:  # e.g. an unreadable input file
                self.error = exc

        def stop(self) -> None:
            self._stopped = True

    return Sender()


# ------------------------------------------------------------------------------------------- commands


def search(request: Any, *, output: str | None, on_problem: ProblemHandler,
           on_warning: Callable[[str], None] | None = None) -> bool:
    """``mmtools search`` through the server: the request itself (mmtools.search_plan.SearchRequest, built
    by the command's option parser); False when no server takes it (then search in-process)."""
    return _call_with_output("search", {"request": request.to_json()}, _search_inputs(request.inputs, on_problem),
                             output, on_problem, on_warning)


def _search_inputs(kind: str | None, on_problem: ProblemHandler) -> Iterable[dict[str, Any]] | None:
    """Standard input as the server's input messages: plain lines, or records (queries, or steps in order)."""
    if kind is None:
        return None
    from mmtools.records import read_records, read_text_lines

    if kind == "lines":
        return ({"line": text} for _where, text in read_text_lines(["-"], on_problem))
    return ({"record": record} for record in read_records(["-"], on_problem))


def forward_search(args: list[str], *, on_problem: ProblemHandler, on_warning: Callable[[str], None]) -> bool:
    """``mmtools search ARGS`` as typed, for the server to parse with the command's own parser (the fast
    path, before typer loads here). False when no server takes it: one that is not running, or that leaves
    this command line to the typer command (help, a bad option, a table for a terminal, a picture to draw)."""
    def tty(stream: Any) -> bool:
        try:
            return stream is None or stream.isatty()
        except (AttributeError, ValueError):
            return False

    connection = connect()
    if connection is None:
        return False
    header = {"argv": list(args), "cwd": os.getcwd(),
              "env": {name: os.environ[name] for name in ("MMTOOLS_INDEX", "MMTOOLS_DEVICE", "MMTOOLS_RUNTIME")
                      if os.environ.get(name)},
              "stdin_tty": tty(sys.stdin), "stdout_tty": tty(sys.stdout)}
    try:
        try:
            accepted = _accepted(connection, "search", header, False) or {}
        except _Refused:
            return False
        inputs = _search_inputs(accepted.get("inputs"), on_problem)
        if inputs is None:
            inputs = iter(())
        output = accepted.get("output")
        if output in (None, "-"):
            return _converse(connection, "search", inputs, sys.stdout.buffer, on_problem, True, on_warning)
        from contextlib import ExitStack

        from mmtools.records import open_output

        opened: list[BinaryIO] = []
        with ExitStack() as stack:
            def open_file() -> BinaryIO:
                opened.append(stack.enter_context(open_output(output)))
                return opened[0]

            _converse(connection, "search", inputs, open_file, on_problem, False, on_warning)
            if not opened:
                open_file()
        return True
    finally:
        connection.close()


class RecordCount:
    """How many records a served command wrote (the server sends each in one line, written in one call)."""

    def __init__(self) -> None:
        self.records = 0


class _Counted:
    def __init__(self, stream: BinaryIO, count: RecordCount):
        self._stream, self._count = stream, count

    def write(self, data: bytes) -> int:
        self._count.records += 1
        return self._stream.write(data)

    def flush(self) -> None:
        self._stream.flush()


def embed_texts(items: Iterable[Any], *, model: str | None, batch_size: int, embedding_format: str,
                output: str | None, on_problem: ProblemHandler, count: RecordCount | None = None) -> bool:
    """``mmtools embed-texts`` through the server; ``items`` are mmtools.embed.TextItem; ``count`` learns how
    many records were written."""
    header = {"model": _absolute_if_local(model), "batch_size": batch_size, "embedding_format": embedding_format}
    inputs = ({"id": item.id, "text": item.text, "record": item.record} for item in items)
    return _call_with_output("embed-texts", header, inputs, output, on_problem, count=count)


def tag(sources: list[str], *, model: str | None, labels: list[str] | None, templates: list[str] | None,
        top_k: int | None, threshold: float | None, thresholds: dict[str, float] | None, fields: list[str],
        root: str | None, batch_size: int, use_cache: bool, output: str | None,
        on_problem: ProblemHandler) -> bool:
    """``mmtools tag`` through the server (a trained tagger, or zero-shot with ``labels``); False when none runs.
    The inputs are read here (records, image files, folders), so bad ones are named as in-process."""
    from mmtools.tag.inputs import records_from_inputs

    header = {"model": _absolute_if_local(model), "labels": labels, "templates": templates, "top_k": top_k,
              "threshold": threshold, "thresholds": thresholds, "fields": fields, "root": root,
              "cwd": os.getcwd(), "batch_size": batch_size, "use_cache": use_cache}
    inputs = ({"record": record} for record in records_from_inputs(sources, on_problem))
    return _call_with_output("tag", header, inputs, output, on_problem)


def _call_with_output(op: str, header: dict[str, Any], inputs, output: str | None, on_problem,
                      on_warning: Callable[[str], None] | None = None, count: RecordCount | None = None) -> bool:
    """Records to stdout, or to ``output`` written atomically (opened on the first record, so that a refused
    request leaves nothing behind; an error midway leaves the old file as it was)."""
    def counted(stream: BinaryIO) -> BinaryIO:
        return stream if count is None else _Counted(stream, count)  # type: ignore[return-value]

    if output in (None, "-"):
        return call(op, header, inputs, counted(sys.stdout.buffer), on_problem, flush_each=True,
                    on_warning=on_warning)
    from contextlib import ExitStack

    from mmtools.records import open_output

    opened: list[BinaryIO] = []
    with ExitStack() as stack:
        def open_file() -> BinaryIO:
            opened.append(counted(stack.enter_context(open_output(output))))
            return opened[0]

        handled = call(op, header, inputs, open_file, on_problem, on_warning=on_warning)
        if handled and not opened:  # no records at all: the output file is still written (empty)
            open_file()
        return handled


def _absolute_if_local(model: str | None) -> str:
    """A model directory named relative to the client's folder, made absolute for the server."""
    from mmtools.models.registry import DEFAULT_MODEL

    # Named here, not left to the server, whose MMTOOLS_MODEL may differ from this shell's.
    model = model or os.environ.get("MMTOOLS_MODEL") or DEFAULT_MODEL
    if model and (model.startswith((".", "/", "~")) or os.path.isdir(model)):
        return os.path.realpath(os.path.expanduser(model))
    return model
