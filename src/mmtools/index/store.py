"""A FAISS index file plus its SQLite metadata beside it (``idx.faiss`` and ``idx.faiss.meta.sqlite``).

The metadata records which model made the vectors, their dimension, the metric and normalisation, the index
kind and its parameters, and maps each FAISS id to the record's ``id`` and its stored fields (the record
without its embedding). Writers work on temporary copies of both files and rename them into place when
done, so whatever a user had stays whole if a run fails or is killed; a lock keeps two writers apart.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from mmtools import __version__
from mmtools.errors import IndexFileError
from mmtools.index import kinds
from mmtools.records import atomic_path, replace_atomically, temp_path_beside

FORMAT = "mmtools-index"
FORMAT_VERSION = 1
METADATA_SUFFIX = ".meta.sqlite"
LOCK_SUFFIX = ".lock"
ADD_CHUNK = 4096  # vectors handed to FAISS at once

SCHEMA = """
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, record BLOB NOT NULL);
"""


def metadata_path(index_path: str | os.PathLike[str]) -> Path:
    return Path(f"{index_path}{METADATA_SUFFIX}")


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
    format_version: int = FORMAT_VERSION
    mmtools_version: str = __version__
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_rows(self) -> list[tuple[str, str]]:
        values = {"format": FORMAT, **self.__dict__}
        return [(key, json.dumps(value)) for key, value in values.items()]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str]], where: str) -> "IndexInfo":
        values = {key: json.loads(value) for key, value in rows}
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


# ------------------------------------------------------------------------------------------------ reading


def _read_info(connection: sqlite3.Connection, where: str) -> IndexInfo:
    try:
        rows = connection.execute("SELECT key, value FROM info").fetchall()
    except sqlite3.DatabaseError as exc:
        raise IndexFileError(f"index metadata {where} is unreadable ({exc})",
                             hint="rebuild the index with mmtools index --rebuild") from None
    return IndexInfo.from_rows(rows, where)


def _read_faiss(path: Path, info: IndexInfo, mmap: bool) -> Any:
    import faiss

    index = None
    if mmap:  # large flat indexes open memory-mapped and read-only, without loading them whole
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            index = None
    if index is None:
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexFileError(f"index {path} is not a readable FAISS index ({_faiss_reason(exc)})",
                                 hint="rebuild it with mmtools index --rebuild") from None
    if index.ntotal != info.ntotal or index.d != info.dim:
        raise IndexFileError(
            f"index {path} and its metadata disagree ({index.ntotal} vectors of {index.d} dimensions in the "
            f"index, {info.ntotal} of {info.dim} in the metadata); was it changed by another program?",
            hint="rebuild it with mmtools index --rebuild")
    return index


class IndexReader:
    """An index opened for search. Cheap to keep open; safe for one thread."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        meta = metadata_path(self.path)
        if not self.path.exists():
            raise IndexFileError(f"no index at {self.path}",
                                 hint="build one with `mmtools embed-images DIR | mmtools index -o "
                                      f"{self.path}`, or name one with --index or MMTOOLS_INDEX")
        if not meta.exists():
            raise IndexFileError(f"index {self.path} has no metadata file {meta.name} beside it",
                                 hint="mmtools needs both files; rebuild with mmtools index --rebuild")
        self._db = sqlite3.connect(f"file:{meta}?mode=ro", uri=True, check_same_thread=False)
        self.info = _read_info(self._db, str(meta))
        self._faiss = _read_faiss(self.path, self.info, mmap=self.info.kind == "flat")
        kinds.set_search_params(self._faiss, self.info.kind, self.info.params)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "IndexReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(self, vectors: Any, k: int = 10, min_score: float | None = None) -> list[list[Hit]]:
        """The ``k`` best records for each query vector (unit vectors; scores are cosine similarities)."""
        import numpy as np

        queries = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.info.dim)
        if self.info.ntotal == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        tombstones = self.info.ntotal - self.info.count
        fetch = min(self.info.ntotal, k + tombstones)
        scores, rows = self._faiss.search(queries, fetch)
        wanted = {int(r) for r in rows.ravel() if r >= 0}
        found = self._records(wanted)
        results = []
        for query_scores, query_rows in zip(scores, rows):
            hits = []
            for score, row in zip(query_scores, query_rows):
                entry = found.get(int(row))
                if entry is None or (min_score is not None and score < min_score):
                    continue
                hits.append(Hit(entry[0], float(score), entry[1]))
                if len(hits) == k:
                    break
            results.append(hits)
        return results

    def _records(self, rows: set[int]) -> dict[int, tuple[str, dict[str, Any]]]:
        found: dict[int, tuple[str, dict[str, Any]]] = {}
        ordered = sorted(rows)
        for start in range(0, len(ordered), 500):  # stay under SQLite's parameter limit
            chunk = ordered[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row, item_id, record in self._db.execute(
                    f"SELECT row, id, record FROM items WHERE row IN ({marks})", chunk):
                found[row] = (item_id, orjson.loads(record))
        return found

    def ids(self) -> Iterator[str]:
        for (item_id,) in self._db.execute("SELECT id FROM items ORDER BY row"):
            yield item_id


# ------------------------------------------------------------------------------------------------ writing


@dataclass
class WriteSummary:
    added: int = 0
    replaced: int = 0
    removed: int = 0


class IndexWriter:
    """Creates or updates an index; nothing reaches ``path`` until ``commit`` renames the finished files.

    Use as a context manager: leaving the block normally commits, an exception discards everything.
    A record whose ``id`` is already in the index replaces the old one.
    """

    def __init__(self, path: str | os.PathLike[str], *, model: str | None = None, kind: str | None = None,
                 params: dict[str, int] | None = None, rebuild: bool = False):
        self.path = Path(path)
        self.meta_path = metadata_path(self.path)
        self.summary = WriteSummary()
        self._lock = _acquire_lock(self.path)
        self._db: sqlite3.Connection | None = None
        self._meta_tmp: Path | None = None
        self._pending_ids: list[int] = []
        self._pending_vectors: list[Any] = []
        self._rows_to_remove: list[int] = []
        try:
            self._open(model, kind, params or {}, rebuild)
        except BaseException:
            self.abort()
            raise

    # -- setup
    def _open(self, model: str | None, kind: str | None, params: dict[str, int], rebuild: bool) -> None:
        if kind is not None and kind not in kinds.KINDS:
            raise IndexFileError(f"unknown index kind {kind!r}", hint=f"use one of {', '.join(kinds.KINDS)}")
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
            self._faiss = _read_faiss(self.path, self.info, mmap=False)
            if model and model != self.info.model:
                raise IndexFileError(f"index {self.path} holds vectors from model {self.info.model}, "
                                     f"not {model}", hint="use --rebuild to start over with the new model")
            if kind is not None and kind != self.info.kind:
                raise IndexFileError(f"index {self.path} is a {self.info.kind} index, not {kind}",
                                     hint="use --rebuild to change its kind")
            self._update_params(params)
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
            self.info = IndexInfo(model=model or "", dim=0, kind=kind, params=merged, created_at=time.time())
            self._faiss = None
        self._db.execute("PRAGMA synchronous=OFF")  # atomicity comes from the rename, not the journal

    def _update_params(self, params: dict[str, int]) -> None:
        """Search-time parameters of an existing index can change; build-time ones need a rebuild."""
        for key, value in params.items():
            if key not in self.info.params:
                raise IndexFileError(f"parameter {key!r} does not apply to {self.info.kind} index {self.path}")
            if key not in kinds.SEARCH_PARAMS and value != self.info.params[key]:
                raise IndexFileError(f"parameter {key!r} of index {self.path} is fixed when the index is built",
                                     hint="use --rebuild to build it again with the new value")
            self.info.params[key] = value

    # -- adding and removing
    def check(self, model: str | None, dim: int) -> None:
        """Raise RecordRejected unless a vector of ``dim`` from ``model`` fits this index."""
        if model and self.info.model and model != self.info.model:
            raise RecordRejected(f"embedding from model {model}, but index {self.path} holds model "
                                 f"{self.info.model}")
        if self.info.dim and dim != self.info.dim:
            raise RecordRejected(f"embedding has {dim} dimensions, index {self.path} holds {self.info.dim}")

    def add(self, item_id: str, vector: Any, record: dict[str, Any], model: str | None = None) -> None:
        self.check(model, len(vector))
        if not self.info.model:
            if not model:
                raise RecordRejected("record names no embedding_model and the index has none yet; pass --model")
            self.info.model = model
        if not self.info.dim:
            self.info.dim = len(vector)
        existing = self._db.execute("SELECT row FROM items WHERE id = ?", (item_id,)).fetchone()
        if existing:
            self._forget_row(existing[0])
            self.summary.replaced += 1
        else:
            self.summary.added += 1
        row = self.info.next_row
        self.info.next_row += 1
        self._db.execute("INSERT INTO items (row, id, record) VALUES (?, ?, ?)", (row, item_id, orjson.dumps(record)))
        self._pending_ids.append(row)
        self._pending_vectors.append(vector)
        if len(self._pending_ids) >= ADD_CHUNK and (self._faiss is not None or not kinds.needs_training(
                self.info.kind) or len(self._pending_ids) >= kinds.training_size(self.info.params)):
            self._flush()

    def remove(self, item_ids: Iterable[str]) -> int:
        removed = 0
        for item_id in item_ids:
            existing = self._db.execute("SELECT row FROM items WHERE id = ?", (item_id,)).fetchone()
            if existing:
                self._forget_row(existing[0])
                removed += 1
        self.summary.removed += removed
        return removed

    def _forget_row(self, row: int) -> None:
        self._db.execute("DELETE FROM items WHERE row = ?", (row,))
        if kinds.supports_removal(self.info.kind):
            self._rows_to_remove.append(row)
        # Otherwise the vector stays as a tombstone: search skips rows that have no metadata.

    def _flush(self) -> None:
        import numpy as np

        if self._pending_ids:
            vectors = np.ascontiguousarray(np.stack(self._pending_vectors), dtype=np.float32)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            if self._faiss is None:
                self._faiss = kinds.build_empty(self.info.kind, self.info.dim, self.info.params, vectors)
            self._faiss.add_with_ids(vectors, np.asarray(self._pending_ids, dtype=np.int64))
            self._pending_ids.clear()
            self._pending_vectors.clear()
        # After adding, so that a record replaced within the same run loses its first vector too.
        if self._rows_to_remove and self._faiss is not None:
            self._faiss.remove_ids(np.asarray(self._rows_to_remove, dtype=np.int64))
            self._rows_to_remove.clear()

    # -- finishing
    def commit(self) -> IndexInfo:
        """Write both files under temporary names, then rename them into place (metadata first)."""
        import faiss

        try:
            self._flush()
            if self._faiss is None:
                raise IndexFileError(f"no embeddings to index; {self.path} was not written")
            info = self.info
            info.count = self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            info.ntotal = int(self._faiss.ntotal)
            info.updated_at = time.time()
            with atomic_path(self.path) as faiss_tmp:
                faiss.write_index(self._faiss, str(faiss_tmp))
                info.faiss_bytes = faiss_tmp.stat().st_size
                self._db.execute("DELETE FROM info")
                self._db.executemany("INSERT INTO info (key, value) VALUES (?, ?)", info.to_rows())
                self._db.commit()
                self._db.close()
                self._db = None
                replace_atomically(self._meta_tmp, self.meta_path)
                self._meta_tmp = None
        except BaseException:
            self.abort()
            raise
        self._release()
        return info

    def abort(self) -> None:
        """Discard everything written so far; the index at ``path`` stays as it was."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._meta_tmp is not None:
            self._meta_tmp.unlink(missing_ok=True)
            self._meta_tmp = None
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


def _acquire_lock(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(f"{path}{LOCK_SUFFIX}", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise IndexFileError(f"index {path} is being written by another mmtools process",
                             hint="wait for it to finish, then run again") from None
    return handle


def _faiss_reason(exc: RuntimeError) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else "unknown FAISS error"
