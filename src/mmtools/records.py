"""JSONL records in and out.

Every mmtools command reads and writes one JSON object per line (schema: docs/records.md). Each record
has a stable ``id``; a command adds its own fields and passes every other field through untouched.

Reading is forgiving: a line that is not valid UTF-8, not valid JSON or not an object is reported through
``on_problem`` (naming ``file:line``) and skipped, and the rest of the input is read.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import sys
import tempfile
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO, Iterable, Iterator

import orjson

from mmtools.errors import MmtoolsError, Problem, ProblemHandler, raise_problem

Record = dict[str, Any]

STDIN = "-"
# A longer line is skipped rather than read into memory whole.
MAX_LINE_BYTES = 256 * 1024 * 1024

# Fields that mmtools writes on embedding records (see docs/records.md).
EMBEDDING = "embedding"
EMBEDDING_MODEL = "embedding_model"
EMBEDDING_FINGERPRINT = "embedding_fingerprint"
EMBEDDING_KIND = "embedding_kind"

EMBEDDING_FORMATS = ("base64", "list")

# orjson reads integers past 64 bits as floats (10**40 becomes 1e+40) and cannot write them; a line with
# such a long run of digits is read again by the standard library, which keeps every integer exact.
_LONG_DIGITS = re.compile(rb"\d{19,}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_json(data: bytes | str) -> Any:
    """One JSON value; integers of any size come back exact. Raises ValueError (orjson's
    JSONDecodeError is one) on invalid JSON."""
    value = orjson.loads(data)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if _LONG_DIGITS.search(raw):
        value = json.loads(raw, parse_constant=_no_constant)
    return value


def dumps_json(value: Any, newline: bool = False) -> bytes:
    """Compact JSON bytes (numpy values allowed); integers past 64 bits are written exactly."""
    try:
        return orjson.dumps(value, option=(orjson.OPT_APPEND_NEWLINE if newline else 0)
                            | orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_plain)
        return (text + "\n" if newline else text).encode("utf-8")


def _plain(value: Any) -> Any:
    """What json.dumps cannot write itself (numpy values, as orjson writes them)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# ---------------------------------------------------------------------------------------------- reading


def _open_input(source: str) -> tuple[BinaryIO, bool]:
    if source == STDIN:
        return sys.stdin.buffer, False
    try:
        return open(source, "rb"), True
    except FileNotFoundError:
        raise MmtoolsError(f"input file {source} does not exist") from None
    except IsADirectoryError:
        raise MmtoolsError(f"input {source} is a directory, not a JSONL file") from None
    except OSError as exc:
        raise MmtoolsError(f"cannot read input file {source}: {exc.strerror}") from None


def iter_lines(stream: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(line_number, bytes)``; ``bytes`` is None for a line longer than ``limit`` (skipped)."""
    number = 0
    while True:
        chunk = stream.readline(limit + 1)
        if not chunk:
            return
        number += 1
        if len(chunk) > limit and not chunk.endswith(b"\n"):
            # Discard the rest of the oversized line without holding it.
            while chunk and not chunk.endswith(b"\n"):
                chunk = stream.readline(1024 * 1024)
            yield number, None
            continue
        yield number, chunk


def _lines_of(sources: Iterable[str], on_problem: ProblemHandler,
              max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[str, bytes]]:
    """``(file:line, bytes)`` for every line of every source, oversized lines reported and skipped."""
    for source in sources:
        stream, owned = _open_input(source)
        name = "<stdin>" if source == STDIN else source
        try:
            for number, line in iter_lines(stream, max_line_bytes):
                where = f"{name}:{number}"
                if line is None:
                    on_problem(Problem(where, f"line longer than {_size(max_line_bytes)}, skipped"))
                else:
                    yield where, line
        finally:
            if owned:
                stream.close()


def read_records(
    sources: Iterable[str] = (STDIN,), on_problem: ProblemHandler = raise_problem,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[Record]:
    """Yield the JSON objects of JSONL files (``-`` is stdin), skipping blank lines and reporting bad ones."""
    for where, line in _lines_of(sources, on_problem, max_line_bytes):
        if not line.strip():
            continue
        try:
            record = loads_json(line)
        except orjson.JSONDecodeError as exc:
            on_problem(Problem(where, _json_reason(line, exc)))
            continue
        if not isinstance(record, dict):
            on_problem(Problem(where, f"expected a JSON object, got {type(record).__name__}"))
            continue
        yield record


def read_text_lines(
    sources: Iterable[str] = (STDIN,), on_problem: ProblemHandler = raise_problem
) -> Iterator[tuple[str, str]]:
    """Yield ``(where, text)`` for each non-blank line of plain text files (``-`` is stdin)."""
    for where, line in _lines_of(sources, on_problem):
        try:
            text = line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            on_problem(Problem(where, f"not valid UTF-8 (byte {exc.start + 1}), skipped"))
            continue
        if text.strip():
            yield where, text


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit:,} bytes"


def _json_reason(line: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"not valid UTF-8 (byte {err.start + 1}), skipped"
    return f"not valid JSON ({exc.msg} at column {exc.colno}), skipped"


# ---------------------------------------------------------------------------------------------- ids


def text_id(text: str) -> str:
    """A stable id for a text with no id of its own: the same text (in any Unicode form) gives the same id."""
    digest = hashlib.sha1(unicodedata.normalize("NFC", text).encode("utf-8")).hexdigest()
    return f"t:{digest[:16]}"


def record_id(record: Record, fallback: str) -> str:
    """The record's own ``id`` as a string, or ``fallback`` when it has none."""
    value = record.get("id")
    if value is None or value == "":
        return fallback
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # e.g. an integer past 64 bits, which orjson does not write
        return json.dumps(value, ensure_ascii=False, default=str)


def field_texts(value: Any) -> list[str] | None:
    """The texts of a text field: a string gives one, a non-empty list of strings its items, anything else None."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return list(value)
    return None


# ---------------------------------------------------------------------------------------------- vectors


def encode_vector(vector: Any, fmt: str = "base64") -> str | list[float]:
    """Encode one float vector for a record: base64 of little-endian float32, or a plain list of floats."""
    import numpy as np

    array = np.asarray(vector, dtype="<f4").reshape(-1)
    if fmt == "base64":
        return base64.b64encode(array.tobytes()).decode("ascii")
    if fmt == "list":
        return [float(x) for x in array]
    raise ValueError(f"unknown embedding format {fmt!r}; expected one of {', '.join(EMBEDDING_FORMATS)}")


def decode_vector(value: Any) -> "Any":
    """Decode an ``embedding`` field (either encoding) into a float32 numpy vector; ValueError if malformed."""
    import numpy as np

    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            raise ValueError("embedding is neither valid base64 nor a list of numbers") from None
        if len(raw) % 4:
            raise ValueError(f"base64 embedding holds {len(raw)} bytes, not a whole number of float32 values")
        array = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    elif isinstance(value, list):
        try:
            with np.errstate(over="ignore"):  # numbers past float32's range become inf, refused below
                array = np.asarray(value, dtype=np.float32)
        except (ValueError, TypeError, OverflowError):
            raise ValueError("embedding list holds something other than numbers") from None
        if array.ndim != 1:
            raise ValueError("embedding list must be flat")
    else:
        raise ValueError("record has no embedding (expected a base64 string or a list of numbers)")
    if array.size == 0:
        raise ValueError("embedding is empty")
    if not np.isfinite(array).all():
        raise ValueError("embedding contains NaN or infinite values")
    return array


# ---------------------------------------------------------------------------------------------- writing


class RecordWriter:
    """Writes records as JSONL to a stream; ``flush_each`` keeps pipes moving record by record."""

    def __init__(self, stream: IO[bytes], flush_each: bool = False):
        self._stream = stream
        self._flush_each = flush_each
        self.count = 0

    def write(self, record: Record) -> None:
        self._stream.write(dumps_json(record, newline=True))
        self.count += 1
        if self._flush_each:
            self._stream.flush()

    def write_all(self, records: Iterable[Record]) -> int:
        for record in records:
            self.write(record)
        return self.count

    def flush(self) -> None:
        self._stream.flush()


def temp_path_beside(path: str | os.PathLike[str], suffix: str = "") -> Path:
    """A new, empty temporary file in ``path``'s folder (so a rename onto ``path`` is atomic)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f"{suffix}.tmp", dir=target.parent)
    os.close(fd)
    return Path(tmp_name)


def replace_atomically(tmp: Path, path: str | os.PathLike[str]) -> None:
    """Flush ``tmp`` to disk and rename it over ``path``, keeping ``path``'s permissions if it existed."""
    target = Path(path)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.chmod(tmp, target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_umask())
    os.replace(tmp, target)


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``, on failure removed.

    Whatever was at ``path`` before stays whole until the new file is complete.
    """
    tmp = temp_path_beside(path, suffix)
    try:
        yield tmp
        replace_atomically(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def open_output(path: str | None) -> Iterator[IO[bytes]]:
    """stdout (``None`` or ``-``) or a file written atomically."""
    if path in (None, STDIN):
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        yield handle


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux: /proc/self/status):
    setting it to find it out would let a file another thread creates meanwhile (a warm server writes
    thumbnails while it answers) be born open to everyone. Elsewhere, once, under a lock, and kept."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        if not _UMASK_KNOWN:
            mask = os.umask(0o077)  # never 0: a file made meanwhile is private, not open to all
            os.umask(mask)
            _UMASK_KNOWN.append(mask)
        return _UMASK_KNOWN[0]


_UMASK_LOCK = threading.Lock()
_UMASK_KNOWN: list[int] = []
