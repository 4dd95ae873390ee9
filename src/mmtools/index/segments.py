"""The files of a segmented index and the manifest that names the live ones.

Layout, for ``-o idx.faiss``:

* ``idx.faiss``: a short text file naming the index (its ``index_id``); it exists once the index does.
* ``idx.faiss.meta.sqlite``: SQLite in WAL mode: the records, the full-text tables, ``info`` and the
  manifest (table ``segments``). One transaction of it is the one commit point of every write.
* ``idx.faiss.segments/``: immutable FAISS files, written once and never changed (``<uuid>.faiss``; FAISS ids
  are the records' rows), plus, for IVF kinds, the trained empty index all segments copy (``trained-*``).
  An IVF segment is written without its coarse centroids (an empty stand-in takes their place) and gets the
  trained index's when opened, so a small write does not repeat nlist x d floats.

A file in the folder that the committed manifest does not name is garbage (a killed write's or a merged
segment's) and is deleted by the next writer.
"""

from __future__ import annotations

import contextlib
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
                                     vectors INTEGER NOT NULL, live INTEGER NOT NULL, bytes INTEGER NOT NULL,
                                     checksum TEXT);
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


# A segment up to this size has its hash checked whenever it is opened; a larger one only its size (it is
# memory-mapped, and reading it whole would cost what mapping saves); ``mmtools index --check`` hashes all.
VERIFY_ON_OPEN_BYTES = 16 << 20
HASH_CHUNK = 1 << 20


def checksum(path: Path) -> str:
    """``blake2b:<hex>`` of a file's bytes (its size is kept beside it, in the manifest's ``bytes``)."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return f"blake2b:{digest.hexdigest()}"


def verify(path: Path, size: int | None, expected: str | None, full: bool = False) -> None:
    """Raise IndexFileError naming ``path`` when it is not the file the manifest recorded: another size, or
    (when ``full``, or small enough to hash at every open) other bytes. FileNotFoundError when it is gone."""
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(path) from None
    hint = "the file was damaged or changed after it was written; rebuild the index with mmtools index --rebuild"
    if size is not None and actual != size:
        raise IndexFileError(f"segment {path} is damaged: {actual} bytes, the manifest recorded {size}", hint=hint)
    if expected and (full or actual <= VERIFY_ON_OPEN_BYTES) and checksum(path) != expected:
        raise IndexFileError(f"segment {path} is damaged: its bytes do not match the checksum recorded when it "
                             "was written", hint=hint)


def add_checksum_column(db: Any) -> None:
    """Manifests written before checksums get the column (their segments, NULL there, go unchecked)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(segments)")}
    if columns and "checksum" not in columns:
        db.execute("ALTER TABLE segments ADD COLUMN checksum TEXT")


def new_name(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex}.faiss"


def write_index_file(index: Any, folder: Path, prefix: str = "", share_centroids: bool = False) -> tuple[str, int]:
    """Write a FAISS index as a new file of the folder, flushed to disk; its name and size. Until a manifest
    names it, it is garbage, so a write killed half-way leaves nothing that counts. ``share_centroids``: an
    IVF segment, written without the coarse centroids it shares with the trained index."""
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    name = new_name(prefix)
    target = folder / name
    with _centroids_left_out(index) if share_centroids else contextlib.nullcontext():
        faiss.write_index(index, str(target))
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return name, target.stat().st_size


def read_segment(folder: Path, name: str, mmap: bool, trained: Any = None) -> Any:
    """A segment file, memory-mapped where the kind allows (flat, ivfpq); FileNotFoundError when it is gone
    (a merge removed it after this reader's manifest was read: the reader opens again). ``trained``: the IVF
    kinds' trained index, whose centroids a segment written without them takes."""
    import faiss

    target = folder / name
    if not target.exists():
        raise FileNotFoundError(target)
    index = None
    if mmap:
        try:
            index = faiss.read_index(str(target), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            pass
    if index is None:
        try:
            index = faiss.read_index(str(target))
        except RuntimeError as exc:
            if not target.exists():
                raise FileNotFoundError(target) from None
            raise IndexFileError(f"segment {target} is not a readable FAISS index ({faiss_reason(exc)})",
                                 hint="rebuild the index with mmtools index --rebuild") from None
    _take_centroids(index, trained, target)
    return index


def read_trained(folder: Path, name: str) -> Any:
    """The IVF kinds' trained, empty index (its centroids and codebooks), read whole."""
    return read_segment(folder, name, mmap=False)


def _ivf_of(index: Any) -> Any:
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:  # not an IVF kind
        return None


@contextlib.contextmanager
def _centroids_left_out(index: Any):
    """For the time of a write, an empty stand-in in place of the IVF's coarse quantizer (the index itself
    keeps its own and owns it as before)."""
    import faiss

    ivf = _ivf_of(index)
    if ivf is None:
        yield
        return
    real, owned = ivf.quantizer, ivf.own_fields
    stand_in = faiss.IndexFlat(ivf.d, ivf.metric_type)
    ivf.own_fields = False  # the stand-in is Python's: the index must not free it
    ivf.quantizer = stand_in
    try:
        yield
    finally:
        ivf.quantizer = real
        ivf.own_fields = owned


def _take_centroids(index: Any, trained: Any, target: Path) -> None:
    """A segment written without its centroids gets the trained index's (kept alive by the segment)."""
    ivf = _ivf_of(index)
    if ivf is None or ivf.quantizer.ntotal == ivf.nlist:
        return  # not IVF, or a segment that carries its own centroids (written before they were shared)
    shared = _ivf_of(trained) if trained is not None else None
    if shared is None or shared.quantizer.ntotal != ivf.nlist or shared.d != ivf.d:
        raise IndexFileError(f"segment {target} has no centroids of its own and the index's trained file does "
                             f"not fit it ({ivf.nlist} lists)",
                             hint="rebuild the index with mmtools index --rebuild")
    # The segment must not own the shared quantizer (FAISS would free it with the segment); the empty
    # stand-in read from the file (a few hundred bytes) is not freed, as handing it to Python is unsafe.
    ivf.own_fields = False
    ivf.quantizer = shared.quantizer
    index.referenced_objects = [trained]


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
