"""Clients for a location: a Milvus server, or Milvus Lite's embedded server, which one process holds at a time
(in-process users are counted so that the last one lets the file go); Milvus's errors as IndexFileError."""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from mmtools.errors import IndexFileError, MissingDependencyError
from mmtools.index.milvus.location import TOKEN_VARIABLE, MilvusLocation

CONNECT_TIMEOUT_S = 10.0
INSTALL_HINT = "install the Milvus extra: pip install 'mmtools[milvus]'"
MANY_WRITERS_HINT = ("for many processes at once, serve the file (milvus-lite server --data-dir PATH.db) and "
                     "use milvus://127.0.0.1:19530/COLLECTION, or a Milvus server")

_lite_lock = threading.Lock()
lite_users: dict[str, int] = {}  # Milvus Lite folder -> open readers and writers in this process


def import_pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError:
        raise MissingDependencyError("Milvus indexes need the pymilvus package", hint=INSTALL_HINT) from None
    # pymilvus and Milvus Lite log every failed call with its traceback; mmtools says what failed itself.
    for name in ("pymilvus", "milvus_lite"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return pymilvus


def milvus_exception() -> type[BaseException]:
    return import_pymilvus().MilvusException


@contextmanager
def talking_to(where: MilvusLocation, doing: str) -> Iterator[None]:
    """Milvus's errors as one IndexFileError naming the collection."""
    error = milvus_exception()
    try:
        yield
    except error as exc:
        message = getattr(exc, "message", "") or str(exc)
        if "connect" in message.lower() or "unavailable" in message.lower():
            raise _unreachable(where) from None
        raise IndexFileError(f"Milvus {where.text}: {doing} failed: {message}",
                             hint="check the collection with `mmtools index --info -o "
                                  f"{where.text}`") from None


def _unreachable(where: MilvusLocation) -> IndexFileError:
    return IndexFileError(f"cannot reach the Milvus server at {where.uri.removeprefix('http://')} for {where.text}",
                          hint="start Milvus there (README: Past one machine) or check the address; credentials "
                               f"go in {TOKEN_VARIABLE}")


def connect(where: MilvusLocation, wait: float | None, on_wait: Callable[[], None] | None) -> Any:
    """A client for the location; for Milvus Lite, waits up to ``wait`` seconds (None: as long as it takes)
    for the file while another process has it open."""
    pymilvus = import_pymilvus()
    if not where.lite:
        try:
            return pymilvus.MilvusClient(where.uri, token=os.environ.get(TOKEN_VARIABLE, ""),
                                         timeout=CONNECT_TIMEOUT_S)
        except pymilvus.MilvusException:
            raise _unreachable(where) from None
    try:
        import milvus_lite  # noqa: F401  (pymilvus's own message for a missing Milvus Lite is less clear)
    except ImportError:
        raise MissingDependencyError(f"{where.text} needs Milvus Lite", hint=INSTALL_HINT) from None
    deadline = None if wait is None else time.monotonic() + wait
    waited = False
    while True:
        with _lite_lock:
            try:
                client = pymilvus.MilvusClient(where.uri)
            except pymilvus.MilvusException:
                client = None
                if not _held_elsewhere(where.uri):
                    raise IndexFileError(f"cannot open Milvus Lite file {where.uri} for {where.text}",
                                         hint=f"is it a Milvus Lite folder? ({INSTALL_HINT})") from None
            if client is not None:
                lite_users[where.uri] = lite_users.get(where.uri, 0) + 1
                return client
        if deadline is not None and time.monotonic() >= deadline:
            waited_for = f" (waited {wait:g} s)" if wait else ""
            raise IndexFileError(f"Milvus Lite file {where.uri} is open in another process{waited_for}; Milvus "
                                 "Lite serves one process at a time",
                                 hint=f"wait for it to finish and run again; {MANY_WRITERS_HINT}")
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))


def _held_elsewhere(folder: str) -> bool:
    """Whether another process holds the Milvus Lite folder's lock."""
    import fcntl

    try:
        fd = os.open(os.path.join(folder, "LOCK"), os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def disconnect(where: MilvusLocation, client: Any) -> None:
    """Close the client; Milvus Lite's in-process server (and the file's lock) go with the last user."""
    client.close()
    if not where.lite:
        return
    with _lite_lock:
        users = lite_users.get(where.uri, 1) - 1
        if users > 0:
            lite_users[where.uri] = users
            return
        lite_users.pop(where.uri, None)
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(where.uri)
