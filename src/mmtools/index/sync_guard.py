"""When ``--sync`` must not remove what it found gone: a missing, empty or other folder, or most of the index.

An unmounted drive, a moved photo folder or a mistyped ``--root`` all look, to a sync, like files deleted by
the user. Removing records is only done without asking when it looks like ordinary tidying: the root is
there, holds something, is the one the index recorded, and the removal leaves at least half the index.
Anything else is refused (the whole write: nothing changes) naming the folder and what would go, unless
the caller allows removal explicitly.
"""

from __future__ import annotations

import os
from typing import Sequence

from mmtools.errors import IndexFileError

MAX_SHARE = 0.5  # a sync may remove up to this share of the index without being told to
LISTED = 10  # ids named in the message


class SyncRefused(IndexFileError):
    """A sync that would remove records in a situation that looks like a mistake."""


def check_removal(index: str, gone: Sequence[str], count: int, root: str | None, previous_root: str | None,
                  allowed: bool) -> None:
    """Raise SyncRefused unless removing ``gone`` (ids whose file is gone) from an index of ``count`` records
    looks safe; ``root``: the folder files are located in, ``previous_root``: the one the index recorded."""
    if not gone or allowed:
        return
    reason = _reason(len(gone), count, root, previous_root)
    if reason is None:
        return
    shown = ", ".join(gone[:LISTED]) + (f" and {len(gone) - LISTED} more" if len(gone) > LISTED else "")
    raise SyncRefused(f"sync of {index} refused: {reason}; it would remove {len(gone)} of {count} records "
                      f"({shown}); nothing was changed",
                      hint="check that the folder is there (mounted, not moved) and is the right --root; to "
                           "remove those records anyway, run again with --allow-removal")


def _reason(removing: int, count: int, root: str | None, previous_root: str | None) -> str | None:
    if root is not None:
        if not os.path.isdir(root):
            return f"the folder {root} is missing (unmounted or moved?)"
        try:
            empty = not any(os.scandir(root))
        except OSError as exc:
            return f"the folder {root} cannot be read ({exc.strerror})"
        if empty:
            return f"the folder {root} is empty (unmounted?)"
        if previous_root and os.path.normpath(previous_root) != os.path.normpath(root):
            return f"the folder {root} is not the one the index was built from ({previous_root})"
    if removing >= count:
        return "every record's file is missing" + (f" from {root}" if root else " (a folder unmounted or moved?)")
    if removing > MAX_SHARE * count:
        return (f"more than half the records' files are missing" + (f" from {root}" if root else ""))
    return None
