"""The files of a segmented index and the manifest that names the live ones.

Layout, for ``-o idx.faiss``:

* ``idx.faiss``: a short text file naming the index (its ``index_id``); it exists once the index does.
* ``idx.faiss.meta.sqlite``: SQLite in WAL mode: the records, the full-text tables, ``info`` and the
  manifest (table ``segments``). One transaction of it is the one commit point of every write.
* ``idx.faiss.segments/``: immutable FAISS files, written once and never changed (``<uuid>.faiss``; FAISS ids
  are the records' rows), plus, for IVF kinds, the trained empty index all segments copy (``trained-*``).

A file in the folder that the committed manifest does not name is garbage (a killed write's or a merged
segment's) and is deleted by the next writer.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Iterable

from mmtools.atomic import fsync_directory
from mmtools.errors import IndexFileError
from mmtools.index.legacy import faiss_reason

MARKER = b"mmtools segmented index "
SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (number INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                                     vectors INTEGER NOT NULL, live INTEGER NOT NULL, bytes INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS items_by_segment ON items (segment);
"""
ITEMS = """
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, record BLOB NOT NULL, digest BLOB,
                    vector BLOB, segment INTEGER);
"""


def marker_text(index_id: str) -> bytes:
    return (MARKER + index_id.encode("ascii") + b"\n"
            b"The records and the list of live segments are in the .meta.sqlite file beside this one, the "
            b"vectors in the .segments folder; keep the three together. Open it with mmtools.\n")


def read_marker(path: Path) -> str | None:
    """The index id in an index file, or None when the file is no marker (a format-2 FAISS file, garbage)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(MARKER) + 64)
    except OSError:
        return None
    if not head.startswith(MARKER):
        return None
    return head[len(MARKER):].split(b"\n", 1)[0].decode("ascii", "replace")


def write_marker(path: Path, index_id: str) -> None:
    from mmtools.records import replace_atomically, temp_path_beside

    tmp = temp_path_beside(path)
    tmp.write_bytes(marker_text(index_id))
    replace_atomically(tmp, path)
    fsync_directory(path.parent)


def new_name(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex}.faiss"


def write_index_file(index: Any, folder: Path, prefix: str = "") -> tuple[str, int]:
    """Write a FAISS index as a new file of the folder, flushed to disk; its name and size. Until a manifest
    names it, it is garbage, so a write killed half-way leaves nothing that counts."""
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    name = new_name(prefix)
    target = folder / name
    faiss.write_index(index, str(target))
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return name, target.stat().st_size


def read_segment(folder: Path, name: str, mmap: bool) -> Any:
    """A segment file, memory-mapped where the kind allows (flat, ivfpq); FileNotFoundError when it is gone
    (a merge removed it after this reader's manifest was read: the reader opens again)."""
    import faiss

    target = folder / name
    if not target.exists():
        raise FileNotFoundError(target)
    if mmap:
        try:
            return faiss.read_index(str(target), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            pass
    try:
        return faiss.read_index(str(target))
    except RuntimeError as exc:
        if not target.exists():
            raise FileNotFoundError(target) from None
        raise IndexFileError(f"segment {target} is not a readable FAISS index ({faiss_reason(exc)})",
                             hint="rebuild the index with mmtools index --rebuild") from None


def sweep(folder: Path, keep: Iterable[str]) -> int:
    """Delete the files of the folder the manifest does not name; how many."""
    keep = set(keep)
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name not in keep:
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    if removed:
        fsync_directory(folder)
    return removed
