"""Where a record's file is, from any working folder.

`embed-images` writes ``path`` as typed (relative to the folder it ran in) and an ``id`` that is the file's
absolute path, or, with ``--root``, both relative to the root. The index records the root of a rooted index;
an absolute id says where a relative ``path`` was resolved. Either locates the file wherever a later command
runs; a relative path with neither is not guessed at against an unrelated working folder.
"""

from __future__ import annotations

import os
import unicodedata


def safe_path(path: object, root: str | os.PathLike[str] | None) -> str | None:
    """``path`` resolved against ``root``, or None if it is not a string or would lead outside ``root``."""
    if not isinstance(path, str) or not path or "\0" in path:
        return None
    if root is None:
        return path
    base = os.path.abspath(root)
    resolved = os.path.normpath(os.path.join(base, path))
    if os.path.commonpath([base, resolved]) != base:
        return None
    return resolved


def record_location(item_id: str, path: object, root: str | os.PathLike[str] | None) -> str | None:
    """The absolute path of a record's file, or None when it cannot be known for certain.

    With ``root`` (a rooted index), ``path`` is resolved against it and must stay inside it. Otherwise an
    absolute ``path`` is itself, and a relative one is located through an absolute ``id`` that ends with it
    (the base folder is the id's beginning; the name keeps the path's own bytes, NFD included).
    """
    if not isinstance(path, str) or not path or "\0" in path:
        return None
    if root is not None:
        return safe_path(path, root)
    if os.path.isabs(path):
        return path
    if not isinstance(item_id, str) or not os.path.isabs(item_id):
        return None
    tail = unicodedata.normalize("NFC", os.path.normpath(path))
    canonical = unicodedata.normalize("NFC", item_id)
    if tail.startswith(os.pardir) or not canonical.endswith(os.sep + tail):
        return None
    return os.path.join(canonical[:-len(tail)], os.path.normpath(path))


def stored_root(index_path: str | os.PathLike[str], absolute: str, from_index: str) -> str | None:
    """The root a rooted index recorded: beside the index where it was (it may have moved with its folder),
    else where it was when recorded; None for an index built without a root."""
    if from_index:
        moved = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(index_path)), from_index))
        if os.path.isdir(moved):
            return moved
    return absolute or None


def root_fields(index_path: str | os.PathLike[str], root: str | os.PathLike[str]) -> tuple[str, str]:
    """What an index records of its root: the absolute path, and the path from the index's folder."""
    absolute = os.path.abspath(root)
    try:
        from_index = os.path.relpath(absolute, os.path.dirname(os.path.abspath(index_path)))
    except ValueError:  # another drive: no relative path
        from_index = ""
    return absolute, from_index


def as_opened_from_here(location: str) -> str:
    """A located file as short as it can be and still open from the current folder: relative to it when the
    file is inside it, else absolute."""
    try:
        relative = os.path.relpath(location)
    except (ValueError, OSError):  # another drive, or no current folder any more
        return location
    return location if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative
