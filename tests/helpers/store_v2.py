"""mmtools format 2, as it was before segments (kept only to write fixtures that upgrade tests read).

A FAISS index file plus its SQLite metadata beside it (``idx.faiss`` and ``idx.faiss.meta.sqlite``).

The metadata records which model made the vectors (its name and fingerprint), their dimension, the metric
and normalisation, the index kind and its parameters, and maps each FAISS id to the record's ``id`` and its
stored fields (the record without its embedding).

One write, one commit point. Every write gets a new *generation*, recorded in the metadata and in a short
trailer at the end of the FAISS file (after the index; FAISS never reads it). A writer builds both files
under temporary names, keeps a hard link to the current FAISS file as ``idx.faiss.prev``, renames the new
FAISS file into place, then the new metadata: that last rename commits. A reader takes the FAISS file whose
generation is the metadata's (``idx.faiss``, else ``idx.faiss.prev``), so it never pairs halves of two
writes, even when a writer is killed between the renames; the next writer puts ``.prev`` back if the
metadata never committed, and sweeps temporary files a killed writer left. A new index writes its
metadata first and its FAISS file last (no FAISS file means no index). A lock keeps writers in line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import sqlite3
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson

from mmtools import __version__
from mmtools.atomic import fsync_directory
from mmtools.errors import IndexFileError
from mmtools.index import filters, fulltext, kinds
from mmtools.index.locate import as_opened_from_here, record_location, root_fields, stored_root
from mmtools.records import (EMBEDDING, EMBEDDING_FINGERPRINT, EMBEDDING_MODEL, encode_vector,
                             replace_atomically, temp_path_beside)

FORMAT = "mmtools-index"
FORMAT_VERSION = 2  # 2: generations, item digests, vectors kept for ivfpq
METADATA_SUFFIX = ".meta.sqlite"
PREVIOUS_SUFFIX = ".prev"
LOCK_SUFFIX = ".lock"
ADD_CHUNK = 4096  # vectors handed to FAISS at once
COMPACT_FRACTION = 0.2  # rebuild without tombstones once they are this share of the vectors
TRAILER_MAGIC = b"\nmmtools-generation "
TRAILER_LENGTH = len(TRAILER_MAGIC) + 32 + 1
OPEN_ATTEMPTS = 40  # a reader that meets a commit in progress opens again (50 ms apart)

SCHEMA = """
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, record BLOB NOT NULL, digest BLOB,
                    vector BLOB);
"""


def metadata_path(index_path: str | os.PathLike[str]) -> Path:
    return Path(f"{index_path}{METADATA_SUFFIX}")


def previous_path(index_path: str | os.PathLike[str]) -> Path:
    return Path(f"{index_path}{PREVIOUS_SUFFIX}")


def canonical_item_id(item_id: str) -> str:
    """Ids compare in NFC, so a name typed on Linux finds the same name written by macOS (NFD)."""
    return unicodedata.normalize("NFC", item_id)


class RecordRejected(ValueError):
    """A record that does not fit this index (other model, other dimension); the message says why."""


@dataclass
class IndexInfo:
    model: str
    dim: int
    kind: str = "flat"
    params: dict[str, int] = field(default_factory=dict)
    metric: str = "inner_product"
    normalized: bool = True
    count: int = 0  # live records
    ntotal: int = 0  # vectors in the FAISS file, tombstones included
    next_row: int = 0
    faiss_bytes: int = 0
    fingerprint: str = ""  # of the model's weights and text rules; "" when unknown
    generation: str = ""  # of the write that made both files
    trained: dict[str, int] = field(default_factory=dict)  # IVF: vectors trained on, lists built...
    root: str = ""  # of a rooted index (--root), absolute; relative record paths are inside it
    root_from_index: str = ""  # ... and as seen from the index's folder, so the two can move together
    format_version: int = FORMAT_VERSION
    mmtools_version: str = __version__
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_rows(self) -> list[tuple[str, str]]:
        values = {"format": FORMAT, **self.__dict__}
        return [(key, json.dumps(value)) for key, value in values.items()]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str]], where: str) -> "IndexInfo":
        try:
            values = {key: json.loads(value) for key, value in rows}
        except ValueError:
            raise IndexFileError(f"index metadata {where} holds unreadable values",
                                 hint="rebuild the index with mmtools index --rebuild") from None
        if values.pop("format", None) != FORMAT:
            raise IndexFileError(f"{where} is not an mmtools index metadata file")
        version = values.get("format_version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise IndexFileError(f"index {where} was written by a newer mmtools (format {version}; this mmtools "
                                 f"reads up to {FORMAT_VERSION})", hint="upgrade mmtools")
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Hit:
    id: str
    score: float
    record: dict[str, Any]
    path: str | None = None  # the record's file, locatable from any working folder; None when unknown


# ------------------------------------------------------------------------------------------------ models


def models_match(index_model: str, index_fingerprint: str, model: str | None, fingerprint: str | None) -> bool:
    """Fingerprints decide when both sides have one (a moved model matches, a retrained one does not);
    otherwise names do. A side that names no model matches anything."""
    if not (model or fingerprint) or not (index_model or index_fingerprint):
        return True
    if fingerprint and index_fingerprint:
        return fingerprint == index_fingerprint
    return model == index_model


def model_mismatch(index_model: str, index_fingerprint: str, model: str | None, fingerprint: str | None) -> str:
    """The reason ``models_match`` said no, in words."""
    if model == index_model:
        return (f"model {model} has changed since the index was built (fingerprint {fingerprint}, the index "
                f"holds {index_fingerprint}): retrained or replaced in the same place?")
    return f"model {model}, but the index holds model {index_model}"


# ------------------------------------------------------------------------------------------------ generations


def _trailer(generation: str) -> bytes:
    return TRAILER_MAGIC + generation.encode("ascii") + b"\n"


def read_generation(fd: int) -> str | None:
    """The generation in the trailer of an open FAISS file, or None (no trailer: mmtools format 1)."""
    size = os.fstat(fd).st_size
    if size < TRAILER_LENGTH:
        return None
    tail = os.pread(fd, TRAILER_LENGTH, size - TRAILER_LENGTH)
    if not tail.startswith(TRAILER_MAGIC) or not tail.endswith(b"\n"):
        return None
    return tail[len(TRAILER_MAGIC):-1].decode("ascii", "replace")


def _generation_of(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return read_generation(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------ reading


def _read_info(connection: sqlite3.Connection, where: str) -> IndexInfo:
    try:
        rows = connection.execute("SELECT key, value FROM info").fetchall()
    except sqlite3.DatabaseError as exc:
        raise IndexFileError(f"index metadata {where} is unreadable ({exc})",
                             hint="rebuild the index with mmtools index --rebuild") from None
    return IndexInfo.from_rows(rows, where)


def _read_faiss(name: str, where: Path, info: IndexInfo, mmap: bool) -> Any:
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
            raise IndexFileError(f"index {where} is not a readable FAISS index ({_faiss_reason(exc)})",
                                 hint="rebuild it with mmtools index --rebuild") from None
    if index.ntotal != info.ntotal or index.d != info.dim:
        raise IndexFileError(
            f"index {where} and its metadata disagree ({index.ntotal} vectors of {index.d} dimensions in the "
            f"index, {info.ntotal} of {info.dim} in the metadata); was it changed by another program?",
            hint="rebuild it with mmtools index --rebuild")
    return index


def _matching_file(path: Path, info: IndexInfo) -> Path | None:
    """Which FAISS file holds the metadata's generation (``path`` or ``.prev``), without reading it."""
    for candidate in (path, previous_path(path)):
        if candidate.exists() and (not info.generation or _generation_of(candidate) == info.generation):
            return candidate
    return None


def _open_vectors(path: Path, info: IndexInfo, mmap: bool) -> Any:
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
            return _read_faiss(name, candidate, info, mmap)
        finally:
            os.close(fd)
        if not info.generation:
            break
    return None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _mmap_kind(kind: str) -> bool:
    return kind in ("flat", "ivfpq")


class IndexReader:
    """An index opened for search. Cheap to keep open; safe for one thread."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        meta = metadata_path(self.path)
        for _attempt in range(OPEN_ATTEMPTS):
            if not self.path.exists():
                raise IndexFileError(f"no index at {self.path}",
                                     hint="build one with `mmtools embed-images DIR | mmtools index -o "
                                          f"{self.path}`, or name one with --index or MMTOOLS_INDEX")
            if not meta.exists():
                raise IndexFileError(f"index {self.path} has no metadata file {meta.name} beside it",
                                     hint="mmtools needs both files; rebuild with mmtools index --rebuild")
            opened = _identity(meta)
            self._db = sqlite3.connect(f"file:{meta}?mode=ro", uri=True, check_same_thread=False)
            try:
                self.info = _read_info(self._db, str(meta))
                self._faiss = _open_vectors(self.path, self.info, mmap=_mmap_kind(self.info.kind))
            except BaseException:
                self._db.close()
                raise
            if self._faiss is not None:
                break
            self._db.close()
            if _identity(meta) == opened:
                break  # not a commit in progress: the files really are from two writes
            time.sleep(0.05)  # a writer committed meanwhile: look again
        if self._faiss is None:
            raise IndexFileError(f"index {self.path} and its metadata are from different writes",
                                 hint="any `mmtools index -o FILE` run repairs an interrupted write; or rebuild "
                                      "with --rebuild")
        kinds.set_search_params(self._faiss, self.info.kind, self.info.params)
        if self.info.kind == "flat":  # exact search is what GPUs speed up most; a no-op without the GPU build
            from mmtools.gpu import gpu_search_index

            self._faiss = gpu_search_index(self._faiss)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "IndexReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _rerank_exactly(self) -> int:
        """ivfpq with kept vectors re-ranks ``k × rerank`` PQ candidates against the exact vectors."""
        if kinds.keeps_vectors_in_metadata(self.info.kind, self.info.params):
            return self.info.params.get("rerank", 0)
        return 0

    def search(self, vectors: Any, k: int = 10, min_score: float | None = None,
               among: Iterable[int] | None = None) -> list[list[Hit]]:
        """The ``k`` best records for each query vector (unit vectors; scores are cosine similarities);
        only among these rows when ``among`` is given (see ``scan``)."""
        import numpy as np

        queries = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.info.dim)
        if self.info.count == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        if among is not None:  # filters: rank only the matching rows (index/filters.py)
            ranked = filters.rank_among(self._faiss, self.info.kind, self.info.params, queries, list(among), k,
                                        self._vectors_of)
            found = self._records({row for hits in ranked for _, row in hits})
            return [[Hit(found[r][0], s, found[r][1]) for s, r in hits if min_score is None or s >= min_score]
                    for hits in ranked]
        rerank = self._rerank_exactly
        tombstones = self.info.ntotal - self.info.count
        fetch = k if tombstones == 0 else 2 * k + 16
        while True:
            want = min(self.info.ntotal, fetch * max(1, rerank))
            scores, rows = self._faiss.search(queries, want)
            found = self._records({int(r) for r in rows.ravel() if r >= 0}, with_vectors=bool(rerank))
            results, short = [], False
            for query, query_scores, query_rows in zip(queries, scores, rows):
                live = [(float(s), int(r)) for s, r in zip(query_scores, query_rows) if int(r) in found]
                if rerank:
                    live = sorted(((float(np.dot(query, found[r][2])), r) for _, r in live), reverse=True)
                hits = [Hit(found[r][0], s, found[r][1], self.hit_path(found[r][0], found[r][1]))
                        for s, r in live[:k] if min_score is None or s >= min_score]
                # Tombstones crowded live records out of the candidates: fetch more.
                short |= len(live) < min(k, self.info.count) and np.count_nonzero(query_rows >= 0) == want
                results.append(hits)
            if not short or want >= self.info.ntotal:
                return results
            fetch *= 4

    @property
    def root(self) -> str | None:
        """The root folder of a rooted index (where it is now), else None."""
        return stored_root(self.path, self.info.root, self.info.root_from_index)

    def hit_path(self, item_id: str, record: dict[str, Any]) -> str | None:
        """The record's file as a path that opens from the current folder, else its stored ``path``."""
        path = record.get("path")
        located = record_location(item_id, path, self.root)
        if located is not None:
            return as_opened_from_here(located)
        return path if isinstance(path, str) else None

    def _records(self, rows: set[int], with_vectors: bool = False) -> dict[int, tuple]:
        import numpy as np

        found: dict[int, tuple] = {}
        ordered = sorted(rows)
        columns = "row, id, record, vector" if with_vectors else "row, id, record"
        for start in range(0, len(ordered), 500):  # stay under SQLite's parameter limit
            chunk = ordered[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row, item_id, record, *vector in self._db.execute(
                    f"SELECT {columns} FROM items WHERE row IN ({marks})", chunk):
                entry = (item_id, orjson.loads(record))
                if with_vectors:
                    entry += (np.frombuffer(vector[0], dtype=np.float32),)
                found[row] = entry
        return found

    def _vectors_of(self, rows: Any) -> Any:
        """Exact vectors of these rows, from the FAISS file or, for ivfpq, the metadata; None if not kept."""
        import numpy as np

        if self.info.kind != "ivfpq":
            return np.stack([self._faiss.reconstruct(int(row)) for row in rows])
        if not kinds.keeps_vectors_in_metadata(self.info.kind, self.info.params):
            return None
        found = self._records({int(row) for row in rows}, with_vectors=True)
        return np.stack([found[int(row)][2] for row in rows])

    @property
    def connection(self) -> sqlite3.Connection:
        """The metadata database, read-only (full-text search reads it)."""
        return self._db

    def scan(self) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """``(row, id, record)`` of every live record (what filters look at)."""
        for row, item_id, record in self._db.execute("SELECT row, id, record FROM items ORDER BY row"):
            yield row, item_id, orjson.loads(record)

    def ids(self) -> Iterator[str]:
        for (item_id,) in self._db.execute("SELECT id FROM items ORDER BY row"):
            yield item_id

    def get(self, item_id: str) -> dict[str, Any] | None:
        """The stored record with this id, or None."""
        row = self._db.execute("SELECT record FROM items WHERE id = ?", (canonical_item_id(item_id),)).fetchone()
        return orjson.loads(row[0]) if row else None

    def export(self, vector_format: str = "base64") -> Iterator[dict[str, Any]]:
        """Every stored record with its vector, as an embedding record (``mmtools index`` reads it back)."""
        import numpy as np

        info = self.info
        model_fields = {EMBEDDING_MODEL: info.model}
        if info.fingerprint:
            model_fields[EMBEDDING_FINGERPRINT] = info.fingerprint
        stored = kinds.stored_vectors(self._faiss, info.kind)
        if stored is None:
            if not kinds.keeps_vectors_in_metadata(info.kind, info.params):
                raise IndexFileError(f"index {self.path} keeps no exact vectors (an ivfpq index built with "
                                     "keep_vectors=0 holds only compressed codes), so they cannot be exported",
                                     hint="embed the inputs again, or build with --param keep_vectors=1")
            for item_id, record, vector in self._db.execute("SELECT id, record, vector FROM items ORDER BY row"):
                yield {**orjson.loads(record), "id": item_id,
                       EMBEDDING: encode_vector(np.frombuffer(vector, dtype=np.float32), vector_format),
                       **model_fields}
            return
        ids, vectors = stored
        order = np.argsort(ids)
        sorted_ids = ids[order]
        for row, item_id, record in self._db.execute("SELECT row, id, record FROM items ORDER BY row"):
            at = int(np.searchsorted(sorted_ids, row))
            if at >= len(sorted_ids) or sorted_ids[at] != row:
                raise IndexFileError(f"index {self.path}: record {item_id} has no vector in the FAISS file",
                                     hint="rebuild it with mmtools index --rebuild")
            yield {**orjson.loads(record), "id": item_id,
                   EMBEDDING: encode_vector(vectors[order[at]], vector_format), **model_fields}


# ------------------------------------------------------------------------------------------------ writing


@dataclass
class WriteSummary:
    added: int = 0
    replaced: int = 0
    removed: int = 0
    unchanged: int = 0
    compacted: bool = False
    notes: list[str] = field(default_factory=list)  # what the user should know (e.g. a small IVF sample)


class IndexWriter:
    """Creates or updates an index; nothing reaches ``path`` until ``commit`` renames the finished files.

    Use as a context manager: leaving the block normally commits, an exception discards everything.
    A record whose ``id`` is already in the index replaces the old one; one with the same vector and fields
    changes nothing. ``lock_timeout``: seconds to wait for another writer (None: as long as it takes; 0:
    not at all); ``on_wait`` is called once if the writer has to wait.
    """

    def __init__(self, path: str | os.PathLike[str], *, model: str | None = None, fingerprint: str | None = None,
                 kind: str | None = None, params: dict[str, int] | None = None, rebuild: bool = False,
                 compact: bool = False, lock_timeout: float | None = None,
                 on_wait: Callable[[], None] | None = None, text_fields: Iterable[str] = (),
                 root: str | os.PathLike[str] | None = None):
        self.path = Path(path)
        self.meta_path = metadata_path(self.path)
        self.summary = WriteSummary()
        self._compact = compact
        self._lock = _acquire_lock(self.path, lock_timeout, on_wait)
        self._db: sqlite3.Connection | None = None
        self._meta_tmp: Path | None = None
        self._faiss_tmp: Path | None = None
        self._faiss: Any = None
        self._on_disk: Path | None = None  # the existing FAISS file, until it is loaded
        self._changed = False  # anything to write at all
        self._installing = False
        self._trained_now = False
        self._pending_ids: list[int] = []
        self._pending_vectors: list[Any] = []
        self._rows_to_remove: list[int] = []
        try:
            repair_interrupted_write(self.path)
            self._open(model, fingerprint, kind, params or {}, rebuild)
            self._fulltext = fulltext.FullTextWriter(self._db, list(text_fields), self.stored)  # full text
            self._changed |= self._fulltext.changed  # full text: new tables or fields to fill
            if root is not None:
                self._set_root(root)
        except BaseException:
            self.abort()
            raise

    # -- setup
    def _open(self, model: str | None, fingerprint: str | None, kind: str | None, params: dict[str, int],
              rebuild: bool) -> None:
        if kind is not None and kind not in kinds.KINDS:
            raise IndexFileError(f"unknown index kind {kind!r}", hint=f"use one of {', '.join(kinds.KINDS)}")
        for key, value in params.items():
            if (reason := kinds.param_error(key, value)) is not None:
                raise IndexFileError(f"parameter {key}={value}: {reason}")
        exists = self.path.exists() and not rebuild
        if exists and not self.meta_path.exists():
            raise IndexFileError(f"{self.path} exists but has no mmtools metadata beside it",
                                 hint="use --rebuild to replace it, or write to another path")
        self._meta_tmp = temp_path_beside(self.meta_path)
        if exists:
            source = sqlite3.connect(f"file:{self.meta_path}?mode=ro", uri=True)
            try:
                self.info = _read_info(source, str(self.meta_path))
                self._db = sqlite3.connect(self._meta_tmp)
                source.backup(self._db)
            finally:
                source.close()
            # FAISS is read (and imported) only when the write needs it: a no-op re-run never does.
            self._faiss = None
            self._on_disk = _matching_file(self.path, self.info)
            if self._on_disk is None:
                raise IndexFileError(f"index {self.path} and its metadata are from different writes",
                                     hint="rebuild it with --rebuild")
            if not models_match(self.info.model, self.info.fingerprint, model, fingerprint):
                reason = (f"holds vectors from model {self.info.model}, not {model}" if model != self.info.model
                          else model_mismatch(self.info.model, self.info.fingerprint, model, fingerprint))
                raise IndexFileError(f"index {self.path} {reason}",
                                     hint="use --rebuild to start over with the new model")
            if kind is not None and kind != self.info.kind:
                raise IndexFileError(f"index {self.path} is a {self.info.kind} index, not {kind}",
                                     hint="use --rebuild to change its kind")
            self._update_params(params)
            self._upgrade_schema()
        else:
            self._meta_tmp.unlink()
            self._db = sqlite3.connect(self._meta_tmp)
            self._db.executescript(SCHEMA)
            kind = kind or "flat"
            merged = dict(kinds.DEFAULT_PARAMS[kind])
            unknown = sorted(set(params) - set(merged))
            if unknown:
                raise IndexFileError(f"parameter {unknown[0]!r} does not apply to a {kind} index",
                                     hint=f"{kind} takes: {', '.join(merged) or 'no parameters'}")
            merged.update(params)
            self.info = IndexInfo(model=model or "", fingerprint=fingerprint or "", dim=0, kind=kind,
                                  params=merged, created_at=time.time())
            self._faiss = None
            self._changed = True
        # Atomicity comes from the renames, not from SQLite's journal: keep it in memory, leave no files.
        self._db.execute("PRAGMA journal_mode=MEMORY")
        self._db.execute("PRAGMA synchronous=OFF")

    def _set_root(self, root: str | os.PathLike[str]) -> None:
        absolute, from_index = root_fields(self.path, root)
        if (self.info.root, self.info.root_from_index) != (absolute, from_index):
            self.info.root, self.info.root_from_index = absolute, from_index
            self._changed = True

    @property
    def root(self) -> str | None:
        """The root folder of a rooted index, else None."""
        return stored_root(self.path, self.info.root, self.info.root_from_index)

    def _update_params(self, params: dict[str, int]) -> None:
        """Search-time parameters of an existing index can change; build-time ones need a rebuild."""
        for key, value in params.items():
            if key not in self.info.params:
                raise IndexFileError(f"parameter {key!r} does not apply to {self.info.kind} index {self.path}")
            if key not in kinds.SEARCH_PARAMS and value != self.info.params[key]:
                raise IndexFileError(f"parameter {key!r} of index {self.path} is fixed when the index is built",
                                     hint="use --rebuild to build it again with the new value")
            self._changed |= self.info.params[key] != value
            self.info.params[key] = value

    def _upgrade_schema(self) -> None:
        """Format 1 metadata lacks the digest and vector columns; they are added (empty) on the first write."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(items)")}
        for column in ("digest", "vector"):
            if column not in columns:
                self._db.execute(f"ALTER TABLE items ADD COLUMN {column} BLOB")
        self.info.format_version = FORMAT_VERSION

    # -- adding and removing
    def check(self, model: str | None, dim: int, fingerprint: str | None = None) -> None:
        """Raise RecordRejected unless a vector of ``dim`` from ``model`` fits this index."""
        if not models_match(self.info.model, self.info.fingerprint, model, fingerprint):
            if model == self.info.model:
                reason = model_mismatch(self.info.model, self.info.fingerprint, model, fingerprint)
                raise RecordRejected(f"embedding from {reason}")
            raise RecordRejected(f"embedding from model {model}, but index {self.path} holds model "
                                 f"{self.info.model}")
        if self.info.dim and dim != self.info.dim:
            raise RecordRejected(f"embedding has {dim} dimensions, index {self.path} holds {self.info.dim}")

    def add(self, item_id: str, vector: Any, record: dict[str, Any], model: str | None = None,
            fingerprint: str | None = None) -> None:
        import numpy as np

        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        self.check(model, len(vector), fingerprint)
        if not self.info.model:
            if not model:
                raise RecordRejected("record names no embedding_model and the index has none yet; pass --model")
            self.info.model = model
        elif model and model != self.info.model:
            self.info.model = model  # same fingerprint, new place: the model moved; remember where it is now
            self._changed = True
        if fingerprint and not self.info.fingerprint:
            self.info.fingerprint = fingerprint
            self._changed = True
        if not self.info.dim:
            self.info.dim = len(vector)
        unit = vector / max(float(np.linalg.norm(vector)), 1e-12)
        digest = hashlib.blake2b(unit.tobytes(), digest_size=16).digest()
        blob = orjson.dumps(record)
        item_id = canonical_item_id(item_id)
        existing = self._db.execute("SELECT row, digest, record FROM items WHERE id = ?", (item_id,)).fetchone()
        if existing:
            row, old_digest, old_blob = existing
            if old_digest == digest:  # same vector: at most the fields changed, the FAISS file need not
                if bytes(old_blob) == blob:
                    self.summary.unchanged += 1
                else:
                    self._db.execute("UPDATE items SET record = ? WHERE row = ?", (blob, row))
                    self._fulltext.put(item_id, record)  # full text
                    self.summary.replaced += 1
                    self._changed = True
                return
            self._forget_row(row)
            self.summary.replaced += 1
        else:
            self.summary.added += 1
        row = self.info.next_row
        self.info.next_row += 1
        kept = unit.tobytes() if kinds.keeps_vectors_in_metadata(self.info.kind, self.info.params) else None
        self._db.execute("INSERT INTO items (row, id, record, digest, vector) VALUES (?, ?, ?, ?, ?)",
                         (row, item_id, blob, digest, kept))
        self._fulltext.put(item_id, record)  # full text
        self._pending_ids.append(row)
        self._pending_vectors.append(unit)
        if len(self._pending_ids) >= ADD_CHUNK and (self._has_vectors or not kinds.needs_training(
                self.info.kind) or len(self._pending_ids) >= kinds.training_size(self.info.params)):
            self._flush()

    def remove(self, item_ids: Iterable[str]) -> list[str]:
        """Remove records by id; returns the ids that were not in the index."""
        unknown = []
        for item_id in item_ids:
            existing = self._db.execute("SELECT row FROM items WHERE id = ?",
                                        (canonical_item_id(item_id),)).fetchone()
            if existing:
                self._forget_row(existing[0])
                self._fulltext.drop(canonical_item_id(item_id))  # full text
                self.summary.removed += 1
            else:
                unknown.append(item_id)
        return unknown

    def has(self, item_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM items WHERE id = ?", (canonical_item_id(item_id),)).fetchone() \
            is not None

    def stored(self) -> list[tuple[str, dict[str, Any]]]:
        """``(id, record)`` of every record in the index as it stands in this write."""
        return [(item_id, orjson.loads(record))
                for item_id, record in self._db.execute("SELECT id, record FROM items ORDER BY row").fetchall()]

    @property
    def _has_vectors(self) -> bool:
        return self._faiss is not None or self._on_disk is not None

    def _load(self) -> None:
        if self._faiss is None and self._on_disk is not None:
            self._faiss = _open_vectors(self.path, self.info, mmap=False)
            self._on_disk = None
            if self._faiss is None:
                raise IndexFileError(f"index {self.path} changed while it was locked for writing",
                                     hint="another program writes it; run again")

    def _forget_row(self, row: int) -> None:
        self._changed = True
        self._db.execute("DELETE FROM items WHERE row = ?", (row,))
        if kinds.supports_removal(self.info.kind):
            self._rows_to_remove.append(row)
        # Otherwise the vector stays as a tombstone: search skips rows that have no metadata.

    def _flush(self) -> None:
        import numpy as np

        if self._pending_ids or self._rows_to_remove:
            self._load()
        if self._pending_ids:
            self._changed = True
            vectors = np.ascontiguousarray(np.stack(self._pending_vectors), dtype=np.float32)
            if self._faiss is None:
                self._faiss, self.info.trained = kinds.build_empty(self.info.kind, self.info.dim,
                                                                   self.info.params, vectors)
                self._trained_now = True
            self._faiss.add_with_ids(vectors, np.asarray(self._pending_ids, dtype=np.int64))
            self._pending_ids.clear()
            self._pending_vectors.clear()
        # After adding, so that a record replaced within the same run loses its first vector too.
        if self._rows_to_remove and self._faiss is not None:
            self._faiss.remove_ids(np.asarray(self._rows_to_remove, dtype=np.int64))
            self._rows_to_remove.clear()

    def _maybe_compact(self, count: int) -> None:
        """Rebuild the FAISS index from the live vectors when tombstones pile up, when asked, or when an IVF
        index has outgrown its training (then it is trained again on a sample of what it holds now)."""
        import numpy as np

        tombstones = int(self._faiss.ntotal) - count
        retrain = kinds.should_retrain(self.info.kind, self.info.params, self.info.trained, count)
        if not retrain and not (tombstones > 0 and (self._compact or tombstones > COMPACT_FRACTION
                                                    * self._faiss.ntotal)):
            return
        live = self._live_vectors()
        if live is None or len(live[0]) == 0:
            return
        rows, vectors = live
        if retrain:
            sample = vectors
            if len(vectors) > kinds.training_size(self.info.params):
                chosen = np.random.default_rng(0).choice(len(vectors), kinds.training_size(self.info.params),
                                                         replace=False)
                sample = vectors[np.sort(chosen)]
            self._faiss, self.info.trained = kinds.build_empty(self.info.kind, self.info.dim, self.info.params,
                                                               np.ascontiguousarray(sample))
            self._trained_now = True
        else:
            self._faiss.reset()  # keeps what training learnt (IVF lists), drops every vector
        for start in range(0, len(rows), ADD_CHUNK):
            self._faiss.add_with_ids(np.ascontiguousarray(vectors[start:start + ADD_CHUNK]),
                                     rows[start:start + ADD_CHUNK])
        self.summary.compacted = True

    def _live_vectors(self) -> tuple[Any, Any] | None:
        import numpy as np

        stored = kinds.stored_vectors(self._faiss, self.info.kind)
        if stored is None:
            if not kinds.keeps_vectors_in_metadata(self.info.kind, self.info.params):
                return None
            pairs = self._db.execute("SELECT row, vector FROM items WHERE vector IS NOT NULL ORDER BY row").fetchall()
            rows = np.asarray([row for row, _ in pairs], dtype=np.int64)
            vectors = np.frombuffer(b"".join(v for _, v in pairs), dtype=np.float32).reshape(len(pairs), -1)
            return rows, vectors
        ids, vectors = stored
        live_rows = np.asarray([row for (row,) in self._db.execute("SELECT row FROM items")], dtype=np.int64)
        keep = np.isin(ids, live_rows)
        return ids[keep], vectors[keep]

    # -- finishing
    def commit(self) -> IndexInfo:
        """Write both files under temporary names, then rename them into place (the metadata commits)."""
        import faiss

        try:
            self._flush()
            if not self._has_vectors:
                raise IndexFileError(f"no embeddings to index; {self.path} was not written")
            info = self.info
            info.count = self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            if not (self._changed or (self._compact and info.ntotal > info.count)
                    or kinds.should_retrain(info.kind, info.params, info.trained, info.count)):
                self.abort()  # nothing changed: the index stays as it was, byte for byte
                return info
            self._load()
            self._maybe_compact(info.count)
            info.ntotal = int(self._faiss.ntotal)
            if self._trained_now and (note := kinds.training_note(info.kind, info.trained)):
                self.summary.notes.append(note)
            info.updated_at = time.time()
            info.generation = uuid.uuid4().hex
            self._faiss_tmp = temp_path_beside(self.path)
            faiss.write_index(self._faiss, str(self._faiss_tmp))
            with open(self._faiss_tmp, "ab") as handle:
                handle.write(_trailer(info.generation))
            info.faiss_bytes = self._faiss_tmp.stat().st_size
            self._db.execute("DELETE FROM info")
            self._db.executemany("INSERT INTO info (key, value) VALUES (?, ?)", info.to_rows())
            self._db.commit()
            self._db.close()
            self._db = None
            self._install()
        except BaseException:
            self.abort()
            raise
        self._release()
        return info

    def _install(self) -> None:
        folder = self.path.parent
        self._installing = True
        if self.path.exists():
            _keep_previous(self.path)
            replace_atomically(self._faiss_tmp, self.path)  # readers still pair the old metadata with .prev
            self._faiss_tmp = None
            fsync_directory(folder)
            replace_atomically(self._meta_tmp, self.meta_path)  # the commit point
            self._meta_tmp = None
            fsync_directory(folder)
            previous_path(self.path).unlink(missing_ok=True)
        else:  # a new index: metadata first; until the FAISS file is there, there is no index
            replace_atomically(self._meta_tmp, self.meta_path)
            self._meta_tmp = None
            fsync_directory(folder)
            replace_atomically(self._faiss_tmp, self.path)  # the commit point
            self._faiss_tmp = None
            fsync_directory(folder)
        self._installing = False

    def abort(self) -> None:
        """Discard everything written so far; the index at ``path`` stays as it was."""
        if self._db is not None:
            self._db.close()
            self._db = None
        for tmp in (self._meta_tmp, self._faiss_tmp):
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        self._meta_tmp = self._faiss_tmp = None
        if self._installing:  # interrupted between the renames: put the committed state back
            self._installing = False
            repair_interrupted_write(self.path)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "IndexWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _keep_previous(path: Path) -> None:
    """Hard-link the current FAISS file as ``.prev`` (a copy where links are not supported)."""
    previous = previous_path(path)
    tmp = temp_path_beside(previous)
    tmp.unlink()
    try:
        os.link(path, tmp)
    except OSError:
        import shutil

        shutil.copy2(path, tmp)
    os.replace(tmp, previous)
    fsync_directory(path.parent)


def repair_interrupted_write(path: str | os.PathLike[str]) -> None:
    """Undo what a killed writer left (call holding the lock): put ``.prev`` back when the metadata never
    committed its new FAISS file, and remove temporary files and stray SQLite journals."""
    path = Path(path)
    meta = metadata_path(path)
    previous = previous_path(path)
    if previous.exists():
        committed = _committed_generation(meta)
        if committed and _generation_of(path) != committed and _generation_of(previous) == committed:
            os.replace(previous, path)
            fsync_directory(path.parent)
        else:
            previous.unlink(missing_ok=True)
    names = "|".join(re.escape(p.name) for p in (path, meta, previous))
    leftover = re.compile(rf"^\.(?:{names})\.[a-z0-9_]{{8}}\.tmp(?:-journal|-wal|-shm)?$")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        if leftover.match(entry.name) or entry.name in (f"{meta.name}-journal", f"{meta.name}-wal",
                                                        f"{meta.name}-shm"):
            Path(entry.path).unlink(missing_ok=True)


def _committed_generation(meta: Path) -> str | None:
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


def _acquire_lock(path: Path, timeout: float | None, on_wait: Callable[[], None] | None) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(f"{path}{LOCK_SUFFIX}", "a")  # created with the user's umask
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
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


def _faiss_reason(exc: RuntimeError) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else "unknown FAISS error"


def build(path, records, kind="flat", params=None):
    """A format-2 index of these embedding records, written as mmtools did before segments."""
    from mmtools.records import decode_vector

    with IndexWriter(path, kind=kind, params=params) as writer:
        for record in records:
            stored = {k: v for k, v in record.items() if k not in (EMBEDDING, EMBEDDING_MODEL, EMBEDDING_FINGERPRINT)}
            writer.add(record["id"], decode_vector(record[EMBEDDING]), stored, model=record.get(EMBEDDING_MODEL))
    return writer.info
