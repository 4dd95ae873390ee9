"""The client side: CLI commands hand their work to a running server, or learn that none runs.

Light by design: the standard library, orjson and mmtools' own light modules only (no torch, numpy, faiss or
transformers), so that a command served remotely starts in milliseconds. Every function that may talk to a
server returns False when there is none (or it refuses the request) before anything was written, and the
caller then does the work in-process: using a server is never required.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

import orjson

from mmtools.errors import EXIT_FATAL, EXIT_USAGE, MmtoolsError, Problem, ProblemHandler, UsageError
from mmtools.serve import paths, protocol

CONNECT_TIMEOUT_S = 1.0


class _Refused(Exception):
    pass


def connect(path: str | os.PathLike[str] | None = None) -> socket.socket | None:
    """A connection to the running server, or None (no server, disabled, or a socket that is not ours)."""
    if path is None and paths.client_disabled():
        return None
    where = paths.socket_path(path)
    if not paths.usable_socket(where):
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(CONNECT_TIMEOUT_S)
    try:
        connection.connect(str(where))
    except OSError:  # refused (stale socket), vanished, timed out: no server
        connection.close()
        return None
    connection.settimeout(None)
    return connection


def error_from(message: dict[str, Any]) -> MmtoolsError:
    """The server's error as the typed error the in-process command would have raised (same exit status)."""
    code = message.get("code", EXIT_FATAL)
    kind = UsageError if code == EXIT_USAGE else MmtoolsError
    error = kind(str(message.get("message", "the server reported an error")), message.get("hint"))
    error.exit_code = code
    return error


def call(op: str, header: dict[str, Any], inputs: Iterable[dict[str, Any]] | None, out: BinaryIO | Callable[[], BinaryIO],
         on_problem: ProblemHandler, *, flush_each: bool = False, path: str | None = None) -> bool:
    """Run ``op`` on the server, writing its records to ``out`` (a stream, or a function opening one on the
    first record). False when no server took the request (nothing was written, ``inputs`` not consumed)."""
    connection = connect(path)
    if connection is None:
        return False
    try:
        return _converse(connection, op, header, inputs, out, on_problem, flush_each)
    except _Refused:
        return False
    finally:
        connection.close()


def _converse(connection: socket.socket, op: str, header: dict[str, Any], inputs, out, on_problem,
              flush_each: bool) -> bool:
    wfile = connection.makefile("wb")
    rfile = connection.makefile("rb")
    wfile.write(protocol.encode({"v": protocol.VERSION, "op": op, **header}))
    sender = None
    if inputs is None:
        wfile.write(protocol.encode({"end": True}))
        wfile.flush()
    else:
        wfile.flush()
        sender = _Sender(wfile, inputs)
        sender.start()
    stream = out if not callable(out) else None
    started = False
    try:
        while True:
            line = rfile.readline(protocol.MAX_LINE + 1)
            if not line:
                raise MmtoolsError("the mmtools server closed the connection before finishing",
                                   hint="see the server's log; MMTOOLS_SERVER=off works without it")
            kind, body = line[:1], line[1:]
            if kind == protocol.RECORD:
                if stream is None:
                    stream = out()
                stream.write(body)
                if flush_each:
                    stream.flush()
                started = True
            elif kind == protocol.PROBLEM:
                source, reason = orjson.loads(body)
                on_problem(Problem(source, reason))
                started = True
            elif kind == protocol.END:
                break
            elif kind == protocol.ERROR:
                raise error_from(orjson.loads(body))
            elif kind == protocol.REFUSED and not started and (sender is None or not sender.sent):
                raise _Refused()
            else:
                raise MmtoolsError("the mmtools server sent something this client does not understand",
                                   hint="restart the server with this version of mmtools")
    finally:
        if sender is not None:
            sender.stop()
    if sender is not None and sender.error is not None:
        raise sender.error
    return True


class _Sender(threading.Thread):
    """Streams input messages to the server while the main thread reads its answers (no deadlock on big input)."""

    def __init__(self, wfile: BinaryIO, inputs: Iterable[dict[str, Any]]):
        super().__init__(name="mmtools-send", daemon=True)
        self._wfile = wfile
        self._inputs = inputs
        self.sent = 0
        self.error: BaseException | None = None
        self._stopped = False

    def run(self) -> None:
        try:
            for message in self._inputs:
                if self._stopped:
                    return
                self._wfile.write(protocol.encode(message))
                self.sent += 1
            self._wfile.write(protocol.encode({"end": True}))
            self._wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError):
            pass  # the server stopped reading: its answer says why
        except BaseException as exc:  # e.g. an unreadable input file: reported after the answers
            self.error = exc

    def stop(self) -> None:
        self._stopped = True


# ------------------------------------------------------------------------------------------- commands


def search(*, texts: list[str], images: list[str], k: int, min_score: float | None, index: str, field: str,
           lines: bool, model: str | None, output: str | None, on_problem: ProblemHandler) -> bool:
    """``mmtools search`` through the server; False when none runs (then search in-process)."""
    from mmtools.records import read_records, read_text_lines

    use_stdin = not texts and not images
    if use_stdin and (sys.stdin is None or sys.stdin.isatty()):
        return False  # the in-process command explains the missing query
    header = {"index": index, "k": k, "min_score": min_score, "model": model, "field": field, "lines": lines,
              "texts": texts, "images": images, "cwd": os.getcwd(), "stdin": use_stdin}
    inputs = None
    if use_stdin:
        if lines:
            inputs = ({"line": text} for _where, text in read_text_lines(["-"], on_problem))
        else:
            inputs = ({"record": record} for record in read_records(["-"], on_problem))
    return _call_with_output("search", header, inputs, output, on_problem)


def embed_texts(items: Iterable[Any], *, model: str | None, batch_size: int, embedding_format: str,
                output: str | None, on_problem: ProblemHandler) -> bool:
    """``mmtools embed-texts`` through the server; ``items`` are mmtools.embed.TextItem."""
    header = {"model": _absolute_if_local(model), "batch_size": batch_size, "embedding_format": embedding_format}
    inputs = ({"id": item.id, "text": item.text, "record": item.record} for item in items)
    return _call_with_output("embed-texts", header, inputs, output, on_problem)


def _call_with_output(op: str, header: dict[str, Any], inputs, output: str | None, on_problem) -> bool:
    """Records to stdout, or to ``output`` written atomically (opened on the first record, so that a refused
    request leaves nothing behind; an error midway leaves the old file as it was)."""
    from contextlib import ExitStack

    from mmtools.records import open_output

    if output in (None, "-"):
        return call(op, header, inputs, sys.stdout.buffer, on_problem, flush_each=True)
    opened: list[BinaryIO] = []
    with ExitStack() as stack:
        def open_file() -> BinaryIO:
            opened.append(stack.enter_context(open_output(output)))
            return opened[0]

        handled = call(op, header, inputs, open_file, on_problem)
        if handled and not opened:  # no records at all: the output file is still written (empty)
            open_file()
        return handled


def _absolute_if_local(model: str | None) -> str:
    """A model directory named relative to the client's folder, made absolute for the server."""
    from mmtools.models.registry import DEFAULT_MODEL

    # Named here, not left to the server, whose MMTOOLS_MODEL may differ from this shell's.
    model = model or os.environ.get("MMTOOLS_MODEL") or DEFAULT_MODEL
    if model and (model.startswith((".", "/", "~")) or os.path.isdir(model)):
        return str(Path(model).expanduser().resolve())
    return model
