"""Crash-safe file replacement helpers.

Stand-in for the lead's ``mmtools.atomic`` (same names): only ``fsync_directory`` is used by this branch.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Make renames and new names in ``path`` (a folder) durable: without it a power cut can undo them."""
    try:
        fd = os.open(Path(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some platforms (and some file systems) cannot open folders; nothing more can be done
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
