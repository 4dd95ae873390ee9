"""One writer at a time: an exclusive ``flock`` on ``idx.faiss.lock``, waited for or given up on."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path
from typing import Any, Callable

from mmtools.errors import IndexFileError

LOCK_SUFFIX = ".lock"


def acquire_lock(path: Path, timeout: float | None, on_wait: Callable[[], None] | None) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = Path(f"{path}{LOCK_SUFFIX}")
    handle = open(lock_path, "a")  # created with the user's umask
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not _still_there(handle, lock_path):  # its holder removed it on release: lock the new one
                handle.close()
                handle = open(lock_path, "a")
                continue
            return handle
        except BlockingIOError:
            if deadline is not None and time.monotonic() >= deadline:
                handle.close()
                waited_for = f" (waited {timeout:g} s)" if timeout else ""
                raise IndexFileError(f"index {path} is being written by another mmtools process{waited_for}",
                                     hint="wait for it to finish and run again, or give --lock-timeout more "
                                          "seconds") from None
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            time.sleep(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
        except BaseException:
            handle.close()
            raise


def release_lock(handle: Any, remove: bool = False) -> None:
    """Unlock; ``remove``: delete the lock file first (a writer that leaves no index leaves no lock). A waiter
    that then gets the removed file's lock sees it is gone and locks the path anew."""
    if remove:
        Path(handle.name).unlink(missing_ok=True)
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


def _still_there(handle: Any, lock_path: Path) -> bool:
    import os

    try:
        return os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False
