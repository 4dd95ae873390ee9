"""Replacing files and whole directories so that a reader, or a process killed at any instant, sees the old
version or the new one and never a mixture.

A directory (a model, a training checkpoint) is built beside its target under a temporary name and then
swapped in. On Linux the swap is one ``renameat2(RENAME_EXCHANGE)`` call; elsewhere, two renames with the old
copy parked under a name that ``recover_directory`` puts back if the process died between them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
PARKED_SUFFIX = ".old"


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Make a rename inside ``path`` durable (a rename is only on disk once its directory is)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2; False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _parked(target: Path) -> Path:
    return target.with_name(f".{target.name}{PARKED_SUFFIX}")


def recover_directory(target: str | os.PathLike[str]) -> None:
    """Undo a swap that a killed process left half done: the parked old copy goes back if nothing replaced it."""
    target = Path(target)
    parked = _parked(target)
    if parked.exists():
        if target.exists():
            shutil.rmtree(parked, ignore_errors=True)
        else:
            os.replace(parked, target)


def replace_directory(new: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Put directory ``new`` in place of ``target`` (which may not exist); ``new`` is consumed."""
    new, target = Path(new), Path(target)
    _fsync_tree(new)
    recover_directory(target)
    if not target.exists():
        os.replace(new, target)
    elif _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the old contents
    else:
        parked = _parked(target)
        os.replace(target, parked)
        os.replace(new, target)
        shutil.rmtree(parked, ignore_errors=True)
    fsync_directory(target.parent)


@contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``target``; on success it replaces ``target``, on failure it
    is removed and ``target`` stays as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        replace_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sweep_temporaries(target: str | os.PathLike[str]) -> None:
    """Remove temporary directories a killed writer left beside ``target``."""
    target = Path(target)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _fsync_tree(directory: Path) -> None:
    for current, _dirs, files in os.walk(directory):
        for name in files:
            try:
                with open(os.path.join(current, name), "rb") as handle:
                    os.fsync(handle.fileno())
            except OSError:
                pass
        fsync_directory(current)
