"""The socket protocol: JSON lines both ways, one connection per command run.

The client sends a header line ``{"v": VERSION, "op": ...}`` with the command's options and waits for the
server to accept it; then it sends zero or more input lines (``{"record": ...}`` or ``{"line": ...}``), then
``{"end": true}``. The server answers, streaming, one line per message, its first byte saying what it is (so
that records pass through the client untouched):

* ``+`` (+ JSON): the server took the request and is working on it (sent at once: a client that hears nothing
  within a few seconds knows the server is stuck, and works alone, its inputs still unread); for a search sent
  as a command line, what the client is to do: ``{"inputs": "records"|"lines"|null, "output": PATH|null}``;
* ``r`` + record: an output record, written by the client as is;
* ``p`` + ``[source, reason]``: one input was skipped (the client reports it; exit status 1);
* ``w`` + text: a warning for the user (the client shows it; the exit status stays 0);
* ``e`` + ``{"message", "hint", "code"}``: the operation failed (the client raises; exit status ``code``);
* ``.``: the operation finished;
* ``!`` + reason: the server does not do this (another protocol version, an unknown operation, a command line
  it leaves to the command: help, a bad option, a table or picture to draw); the client then does the work
  itself, as it does when no server runs.

The server encodes with orjson (imported when first needed); the client (mmtools.serve.client) with json.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import ...`: typing costs milliseconds at start-up

if TYPE_CHECKING:  # typing itself is not imported at run time: this module is on the client's start-up path
    from typing import Any, BinaryIO, Iterator

VERSION = 4  # 2: the server accepts a request ("+") before the client sends its inputs; 3: search takes
# mode, where and no_restore; 4: search takes the request itself (mmtools.search_plan.SearchRequest), or the
# command line as typed, which the server parses with the command's own parser
MAX_LINE = 64 * 1024 * 1024  # one message; an embedding record is a few KB
OPS = ("ping", "search", "embed-texts", "tag")


class ProtocolError(Exception):
    """The other side sent something that is not a protocol message."""


RECORD, PROBLEM, ERROR, END, REFUSED, ACCEPTED, WARNING = b"r", b"p", b"e", b".", b"!", b"+", b"w"


def encode(message: Any, kind: bytes = b"") -> bytes:
    """One line: ``kind`` (empty for client messages) followed by the JSON of ``message``."""
    import orjson

    return kind + orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)


def read_message(stream: BinaryIO) -> dict[str, Any] | None:
    """The next message, or None at end of stream."""
    line = stream.readline(MAX_LINE + 1)
    if not line:
        return None
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        raise ProtocolError("message too long or cut off")
    import orjson

    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise ProtocolError("message is not a JSON object")
    return message


def read_inputs(stream: BinaryIO) -> Iterator[dict[str, Any]]:
    """Input messages until ``{"end": true}``; a connection that ends before that is a ProtocolError."""
    while True:
        message = read_message(stream)
        if message is None:
            raise ProtocolError("the client went away before the end of its input")
        if message.get("end"):
            return
        yield message
