"""Indexes written before segments (formats 1 and 2): one FAISS file plus its metadata, replaced whole on
every write. mmtools reads them as they are and upgrades them on their next write (``upgrade``).

Format 2 commits by renaming: every write gets a *generation*, recorded in the metadata and in a short trailer
after the index in the FAISS file; a writer keeps the current FAISS file as ``idx.faiss.prev`` while it
renames the new one and then the new metadata into place. A reader takes the FAISS file whose generation is
the metadata's; ``repair`` puts ``.prev`` back when a killed writer never committed its metadata.
"""

from __future__ import annotations

import os
import re
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from mmtools.atomic import fsync_directory
from mmtools.errors import IndexFileError
from mmtools.index.info import IndexInfo, metadata_path, read_info, segments_folder

PREVIOUS_SUFFIX = ".prev"
TRAILER_MAGIC = b"\nmmtools-generation "
TRAILER_LENGTH = len(TRAILER_MAGIC) + 32 + 1


def previous_path(index_path: str | os.PathLike[str]) -> Path:
    return Path(f"{index_path}{PREVIOUS_SUFFIX}")


def read_generation(fd: int) -> str | None:
    """The generation in the trailer of an open FAISS file, or None (no trailer: mmtools format 1)."""
    size = os.fstat(fd).st_size
    if size < TRAILER_LENGTH:
        return None
    tail = os.pread(fd, TRAILER_LENGTH, size - TRAILER_LENGTH)
    if not tail.startswith(TRAILER_MAGIC) or not tail.endswith(b"\n"):
        return None
    return tail[len(TRAILER_MAGIC):-1].decode("ascii", "replace")


def generation_of(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return read_generation(fd)
    finally:
        os.close(fd)


def read_faiss(name: str, where: Path, info: IndexInfo, mmap: bool) -> Any:
    """A FAISS file, memory-mapped when asked and possible; checked against what the metadata says."""
    import faiss

    index = None
    if mmap:  # large indexes open memory-mapped and read-only, without loading them whole
        try:
            index = faiss.read_index(name, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            index = None
    if index is None:
        try:
            index = faiss.read_index(name)
        except RuntimeError as exc:
            raise IndexFileError(f"index {where} is not a readable FAISS index ({faiss_reason(exc)})",
                                 hint="rebuild it with mmtools index --rebuild") from None
    if index.d != info.dim:
        raise IndexFileError(
            f"index {where} holds vectors of {index.d} dimensions, its metadata {info.dim}; was it changed by "
            "another program?", hint="rebuild it with mmtools index --rebuild")
    return index


def faiss_reason(exc: RuntimeError) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else "unknown FAISS error"


def matching_file(path: Path, info: IndexInfo) -> Path | None:
    """Which FAISS file holds the metadata's generation (``path`` or ``.prev``), without reading it."""
    for candidate in (path, previous_path(path)):
        if candidate.exists() and (not info.generation or generation_of(candidate) == info.generation):
            return candidate
    return None


def open_vectors(path: Path, info: IndexInfo, mmap: bool) -> Any:
    """The FAISS index of the metadata's generation (``path``, else the kept previous file), or None."""
    for candidate in (path, previous_path(path)):
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise IndexFileError(f"cannot read index {candidate}: {exc.strerror}") from None
        try:
            if info.generation and read_generation(fd) != info.generation:
                continue
            # Read the very file checked (a writer may rename another into place meanwhile).
            name = f"/proc/self/fd/{fd}" if os.path.isdir("/proc/self/fd") else str(candidate)
            index = read_faiss(name, candidate, info, mmap)
            if index.ntotal != info.ntotal:
                raise IndexFileError(
                    f"index {candidate} and its metadata disagree ({index.ntotal} vectors in the index, "
                    f"{info.ntotal} in the metadata); was it changed by another program?",
                    hint="rebuild it with mmtools index --rebuild")
            return index
        finally:
            os.close(fd)
        if not info.generation:
            break
    return None


def in_wal_mode(meta: Path) -> bool:
    """Whether this SQLite file is in WAL mode (its -wal file then holds committed data: never sweep it)."""
    try:
        with open(meta, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return False
    return len(header) == 20 and header[18] == 2


def repair(path: str | os.PathLike[str]) -> None:
    """Undo what a killed writer left (call holding the lock): put ``.prev`` back when the metadata never
    committed its new FAISS file, and remove temporary files and stray rollback journals."""
    path = Path(path)
    meta = metadata_path(path)
    previous = previous_path(path)
    if previous.exists():
        committed = committed_generation(meta)
        if committed and generation_of(path) != committed and generation_of(previous) == committed:
            os.replace(previous, path)
            fsync_directory(path.parent)
        else:
            previous.unlink(missing_ok=True)
    names = "|".join(re.escape(p.name) for p in (path, meta, previous))
    leftover = re.compile(rf"^\.(?:{names})\.[a-z0-9_]{{8}}\.tmp(?:-journal|-wal|-shm)?$")
    stray = {f"{meta.name}-journal"}
    if not in_wal_mode(meta):  # format 2 never used WAL: these can only be strays
        stray |= {f"{meta.name}-wal", f"{meta.name}-shm"}
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        if leftover.match(entry.name) or entry.name in stray:
            Path(entry.path).unlink(missing_ok=True)


def committed_generation(meta: Path) -> str | None:
    import json

    if not meta.exists():
        return None
    try:
        connection = sqlite3.connect(f"file:{meta}?mode=ro", uri=True)
        try:
            row = connection.execute("SELECT value FROM info WHERE key = 'generation'").fetchone()
        finally:
            connection.close()
    except sqlite3.DatabaseError:
        return None
    return json.loads(row[0]) if row else None


def stored_format(meta: Path) -> int | None:
    """The format version of the metadata file (None when there is none or it is unreadable)."""
    import json

    if not meta.exists():
        return None
    try:
        connection = sqlite3.connect(f"file:{meta}?mode=ro", uri=True)
        try:
            row = connection.execute("SELECT value FROM info WHERE key = 'format_version'").fetchone()
        finally:
            connection.close()
    except sqlite3.DatabaseError:
        return None
    return int(json.loads(row[0])) if row else 0


def upgrade(path: Path, convert: Any) -> None:
    """Turn a format-1/2 index into a segmented one without copying its vectors: its FAISS file becomes the
    first segment (a hard link), and a converted copy of its metadata is renamed into place (the commit).
    ``convert(db, info, segment_name, segment_bytes)`` rewrites the copy's schema (the writer's job).
    Killed anywhere, the index stays the old one or becomes the new one; the next write sweeps the rest."""
    from mmtools.records import replace_atomically, temp_path_beside

    meta = metadata_path(path)
    source = sqlite3.connect(f"file:{meta}?mode=ro", uri=True)
    try:
        info = read_info(source, str(meta))
        faiss_file = matching_file(path, info)
        if faiss_file is None:
            raise IndexFileError(f"index {path} and its metadata are from different writes",
                                 hint="rebuild it with --rebuild")
        folder = segments_folder(path)
        if folder.exists():  # nothing in it is committed yet: an earlier upgrade was killed
            for entry in os.scandir(folder):
                os.unlink(entry.path)
        folder.mkdir(exist_ok=True)
        name = f"{uuid.uuid4().hex}.faiss"
        try:
            os.link(faiss_file, folder / name)
        except OSError:
            import shutil

            shutil.copy2(faiss_file, folder / name)
        fsync_directory(folder)
        tmp = temp_path_beside(meta)
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            source.backup(db)
            db.execute("PRAGMA journal_mode=OFF")  # a temporary file: the rename below is the commit
            db.execute("BEGIN")
            convert(db, info, name, (folder / name).stat().st_size)
            db.execute("COMMIT")
            db.execute("PRAGMA journal_mode=WAL")
        finally:
            db.close()
    finally:
        source.close()
    replace_atomically(tmp, meta)
    fsync_directory(path.parent)
    previous_path(path).unlink(missing_ok=True)
