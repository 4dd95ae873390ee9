"""Creating and updating an index: a write costs what it changes.

A writer holds the lock, opens one SQLite transaction on the metadata (WAL mode, so readers keep the last
committed state meanwhile), records its changes there, writes the vectors it was given into one new segment
file (more past ``merging.segment_limit``), maybe merges a few segments (``merging``), and commits the
transaction: that commit is the only moment the index changes. Removed and replaced records only lose their
rows; their vectors stay in their segment until a merge leaves them out. The existing vectors are never
loaded, except the segments a merge rewrites.

A new index is built in a temporary metadata file renamed into place, then its index file is written: no
index file, no index. A format-2 index is upgraded first (``legacy.upgrade``).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable


from mmtools.atomic import fsync_directory
from mmtools.errors import IndexFileError
from mmtools.index import fulltext, kinds, legacy, merging, segments
from mmtools.index.info import (FORMAT_VERSION, SEGMENTED, IndexInfo, RecordRejected, WriteSummary,
                                canonical_item_id, metadata_path, model_mismatch, models_match, read_info,
                                segments_folder)
from mmtools.index.locate import root_fields, stored_root
from mmtools.index.locking import acquire_lock, release_lock
from mmtools.records import dumps_json, loads_json, replace_atomically, temp_path_beside

ADD_CHUNK = 4096  # vectors handed to FAISS at once


def commit_transaction(db: sqlite3.Connection) -> None:
    """The commit point of every write to an existing index (a function, so crash tests can stop here)."""
    db.execute("COMMIT")


class IndexWriter:
    """Creates or updates an index; nothing changes at ``path`` until ``commit``.

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
        self.folder = segments_folder(self.path)
        self.summary = WriteSummary()
        self._compact = compact
        self._db: sqlite3.Connection | None = None
        self._meta_tmp: Path | None = None  # a new index's metadata, until it is renamed into place
        self._changed = False
        self._trained_now = False
        self._trained: tuple[str, Any] | None = None  # (file name, index) of the trained index, once read
        self._pending_rows: list[int] = []
        self._pending_vectors: list[Any] = []
        self._building: Any = None  # the new segment being filled
        self._building_number: int | None = None
        self._written: list[str] = []  # files this write made (garbage unless it commits)
        self._lock = acquire_lock(self.path, lock_timeout, on_wait)
        try:
            if kind is not None and kind not in kinds.KINDS:
                raise IndexFileError(f"unknown index kind {kind!r}", hint=f"use one of {', '.join(kinds.KINDS)}")
            for key, value in (params or {}).items():
                if (reason := kinds.param_error(key, value)) is not None:
                    raise IndexFileError(f"parameter {key}={value}: {reason}")
            legacy.repair(self.path)
            existing = self._existing_format(rebuild)
            if existing is not None and existing < SEGMENTED and not rebuild:
                legacy.upgrade(self.path, _convert_legacy)
                existing = SEGMENTED
            if existing is not None and existing >= SEGMENTED:
                self._open_existing(model, fingerprint, kind, params or {}, rebuild)
            else:
                self._open_new(model, fingerprint, kind, params or {})
            self._fulltext = fulltext.FullTextWriter(self._db, list(text_fields), self.stored)  # full text
            self._changed |= self._fulltext.changed  # full text: new tables or fields to fill
            self.info.text_fields = list(self._fulltext.fields)  # shown by --info (the tables decide)
            self.previous_root = self.root  # what the index recorded before this write (--sync compares)
            if root is not None:
                self._set_root(root)
        except BaseException:
            self.abort()
            raise

    # -- setup
    def _existing_format(self, rebuild: bool) -> int | None:
        """The format of the index at ``path`` to update (or to rebuild in place), None for a new one."""
        if not self.path.exists():
            return self._without_index_file(rebuild)
        if not self.meta_path.exists():
            if rebuild:
                return None
            raise IndexFileError(f"{self.path} exists but has no mmtools metadata beside it",
                                 hint="use --rebuild to replace it, or write to another path")
        found = legacy.stored_format(self.meta_path)
        if found is None:
            if rebuild:
                return None
            raise IndexFileError(f"index metadata {self.meta_path} is unreadable",
                                 hint="rebuild the index with mmtools index --rebuild")
        if found > FORMAT_VERSION:
            raise IndexFileError(f"index {self.meta_path} was written by a newer mmtools (format {found}; this "
                                 f"mmtools reads up to {FORMAT_VERSION})", hint="upgrade mmtools")
        if rebuild and found < SEGMENTED:
            return None  # a format-2 file is replaced by renaming, as that format always was
        return found

    def _without_index_file(self, rebuild: bool) -> int | None:
        """No index file: a new index, unless metadata is there (the marker was deleted, or a new index's
        write was killed just before its last step). Metadata holding an index is never started over: the
        marker is written again from it (``_open_existing``), or the write is refused."""
        if rebuild or not self.meta_path.exists():
            return None
        found = legacy.stored_format(self.meta_path)
        if found is not None and SEGMENTED <= found <= FORMAT_VERSION:
            return found
        raise IndexFileError(f"index file {self.path} is missing but its metadata {self.meta_path} is still "
                             "there", hint=f"put {self.path.name} back, or use --rebuild to start a new index in "
                                           "its place")

    def _open_existing(self, model: str | None, fingerprint: str | None, kind: str | None,
                       params: dict[str, int], rebuild: bool) -> None:
        self._db = sqlite3.connect(self.meta_path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit that returned stays committed
        # No checkpoint while writing: the pages a write changed stay in the WAL (readers see them there)
        # until a reader closing last folds them into the file, or the WAL passes CHECKPOINT_BYTES.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.execute("BEGIN IMMEDIATE")
        self.info = read_info(self._db, str(self.meta_path))
        segments.add_checksum_column(self._db)
        marker = segments.read_marker(self.path)
        missing_marker = marker is None and not self.path.exists()
        if marker != self.info.index_id and not missing_marker:
            if marker is not None or not self.info.upgraded_from:
                raise IndexFileError(f"index {self.path} and its metadata are from different writes",
                                     hint="rebuild it with --rebuild")
        if not rebuild:
            self._check_files_present()
        if marker != self.info.index_id:
            # An upgrade killed before its last step, or a deleted index file: the metadata names the index.
            segments.write_marker(self.path, self.info.index_id)
        segments.sweep(self.folder, self._committed_files())  # what a killed writer or a merge left
        if rebuild:
            self._start_over(model, fingerprint, kind, params)
            return
        if not models_match(self.info.model, self.info.fingerprint, model, fingerprint):
            reason = (f"holds vectors from model {self.info.model}, not {model}" if model != self.info.model
                      else model_mismatch(self.info.model, self.info.fingerprint, model, fingerprint))
            raise IndexFileError(f"index {self.path} {reason}", hint="use --rebuild to start over with the new model")
        if kind is not None and kind != self.info.kind:
            raise IndexFileError(f"index {self.path} is a {self.info.kind} index, not {kind}",
                                 hint="use --rebuild to change its kind")
        self._update_params(params)

    def _start_over(self, model: str | None, fingerprint: str | None, kind: str | None,
                    params: dict[str, int]) -> None:
        """--rebuild of a segmented index: empty it inside the transaction (never rename over a WAL file)."""
        old = self.info
        for table in ("items", "segments"):
            self._db.execute(f"DELETE FROM {table}")
        for table in ("fulltext", "fulltext_docs", "fulltext_fields"):
            self._db.execute(f"DROP TABLE IF EXISTS {table}")
        self.info = self._fresh_info(model, fingerprint, kind, params)
        # Row and segment numbers go on: a reader of the old state never meets one of them reused.
        self.info.index_id, self.info.next_row, self.info.next_segment = old.index_id, old.next_row, old.next_segment
        self._changed = True

    def _open_new(self, model: str | None, fingerprint: str | None, kind: str | None,
                  params: dict[str, int]) -> None:
        self._meta_tmp = temp_path_beside(self.meta_path)
        self._meta_tmp.unlink()
        self._db = sqlite3.connect(self._meta_tmp, isolation_level=None)
        self._db.executescript(segments.ITEMS + segments.SCHEMA)
        # A temporary file, renamed into place once complete: no journal needed.
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("BEGIN")
        self.info = self._fresh_info(model, fingerprint, kind, params)
        self.info.index_id = uuid.uuid4().hex
        if self.path.exists():  # --rebuild of a format-2 index: say which old file readers may still meet
            self.info.upgraded_from = legacy.generation_of(self.path) or ""
        self._changed = True

    def _fresh_info(self, model: str | None, fingerprint: str | None, kind: str | None,
                    params: dict[str, int]) -> IndexInfo:
        kind = kind or "flat"
        merged = dict(kinds.DEFAULT_PARAMS[kind])
        unknown = sorted(set(params) - set(merged))
        if unknown:
            raise IndexFileError(f"parameter {unknown[0]!r} does not apply to a {kind} index",
                                 hint=f"{kind} takes: {', '.join(merged) or 'no parameters'}")
        merged.update(params)
        return IndexInfo(model=model or "", fingerprint=fingerprint or "", dim=0, kind=kind, params=merged,
                         created_at=time.time())

    def _check_files_present(self) -> None:
        """Refuse to write to an index whose segment files are gone (every later read would fail)."""
        for name in sorted(self._committed_files()):
            if not (self.folder / name).is_file():
                gone = self.folder if not self.folder.is_dir() else self.folder / name
                raise IndexFileError(
                    f"index {self.path} lacks {'its segment folder' if gone == self.folder else 'its segment file'}"
                    f" {gone}; nothing was written",
                    hint=f"an index is three things: {self.path.name}, {self.meta_path.name} and the folder "
                         f"{self.folder.name}; put the folder back, or use --rebuild to start over")

    def _committed_files(self) -> set[str]:
        names = {name for (name,) in self._db.execute("SELECT name FROM segments")}
        return names | ({self.info.quantizer} if self.info.quantizer else set())

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
        norm = float(np.linalg.norm(vector))
        # A vector already of unit length is kept as it is: dividing by a norm an ulp from 1 would move it a
        # little on every round trip (export, merge into itself), and it would count as changed each time.
        unit = vector if abs(norm - 1.0) <= 1e-6 else vector / max(norm, 1e-12)
        digest = hashlib.blake2b(unit.tobytes(), digest_size=16).digest()
        blob = dumps_json(record)
        item_id = canonical_item_id(item_id)
        existing = self._db.execute("SELECT row, digest, record, segment FROM items WHERE id = ?",
                                    (item_id,)).fetchone()
        if existing:
            row, old_digest, old_blob, segment = existing
            if old_digest == digest:  # same vector: at most the fields changed, no segment need be written
                if bytes(old_blob) == blob:
                    self.summary.unchanged += 1
                else:
                    self._db.execute("UPDATE items SET record = ? WHERE row = ?", (blob, row))
                    self._fulltext.put(item_id, record)  # full text
                    self.summary.replaced += 1
                    self._changed = True
                return
            self._forget_row(row, segment)
            self.summary.replaced += 1
        else:
            self.summary.added += 1
        row = self.info.next_row
        self.info.next_row += 1
        kept = unit.tobytes() if kinds.keeps_vectors_in_metadata(self.info.kind, self.info.params) else None
        self._db.execute("INSERT INTO items (row, id, record, digest, vector, segment) VALUES (?, ?, ?, ?, ?, ?)",
                         (row, item_id, blob, digest, kept, self._segment_number()))
        self._fulltext.put(item_id, record)  # full text
        self._pending_rows.append(row)
        self._pending_vectors.append(unit)
        if len(self._pending_rows) >= ADD_CHUNK:
            self._flush()

    def remove(self, item_ids: Iterable[str]) -> list[str]:
        """Remove records by id; returns the ids that were not in the index."""
        unknown = []
        for item_id in item_ids:
            existing = self._db.execute("SELECT row, segment FROM items WHERE id = ?",
                                        (canonical_item_id(item_id),)).fetchone()
            if existing:
                self._forget_row(*existing)
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
        return [(item_id, loads_json(record))
                for item_id, record in self._db.execute("SELECT id, record FROM items ORDER BY row").fetchall()]

    def _forget_row(self, row: int, segment: int | None) -> None:
        """The row goes; its vector stays in its segment, dead, until a merge leaves it out."""
        self._changed = True
        self._db.execute("DELETE FROM items WHERE row = ?", (row,))
        self._db.execute("UPDATE segments SET live = live - 1 WHERE number = ?", (segment,))

    # -- segments
    def _segment_number(self) -> int:
        if self._building_number is None:
            self._building_number = self._next_segment()
        return self._building_number

    def _next_segment(self) -> int:
        number = max(self.info.next_segment, 1)
        self.info.next_segment = number + 1
        return number

    def _flush(self, final: bool = False) -> None:
        """Hand the pending vectors to the segment being built (IVF: once there is a sample to train on)."""
        import numpy as np

        if not self._pending_rows:
            return
        if kinds.needs_training(self.info.kind) and not self.info.quantizer and self._stats():
            self._quantizer_from_segment()
        if kinds.needs_training(self.info.kind) and not self.info.quantizer:
            if not final and len(self._pending_rows) < kinds.training_size(self.info.params):
                return
            self._train(np.ascontiguousarray(np.stack(self._pending_vectors), dtype=np.float32))
        limit = merging.segment_limit(self.info.dim)
        while self._pending_rows:
            if self._building is None:
                self._building = self._empty_segment()
            room = limit - int(self._building.ntotal)
            rows, self._pending_rows = self._pending_rows[:room], self._pending_rows[room:]
            vectors, self._pending_vectors = self._pending_vectors[:room], self._pending_vectors[room:]
            self._building.add_with_ids(np.ascontiguousarray(np.stack(vectors), dtype=np.float32),
                                        np.asarray(rows, dtype=np.int64))
            if self._building.ntotal >= limit:
                following = None
                if self._pending_rows:  # a long write goes on in a new segment; its rows are the latest
                    following = self._next_segment()
                    self._db.execute("UPDATE items SET segment = ? WHERE row >= ?",
                                     (following, self._pending_rows[0]))
                self._seal()
                self._building_number = following

    def _train(self, sample: Any) -> None:
        """IVF kinds: one trained, empty index that every segment starts from, stored once."""
        empty, self.info.trained = kinds.build_empty(self.info.kind, self.info.dim, self.info.params,
                                                     merging.training_sample(sample,
                                                                             kinds.training_size(self.info.params)))
        name, _size = segments.write_index_file(empty, self.folder, prefix="trained-")
        self._written.append(name)
        self.info.quantizer = name
        self.info.quantizer_checksum = segments.checksum(self.folder / name)
        self._trained = (name, empty)
        self._trained_now = True

    def _quantizer_from_segment(self) -> None:
        """An index upgraded from format 2 has its training only inside its one file: keep it, emptied, as
        the trained index new segments copy (read once, on the first write after the upgrade)."""
        first = self._stats()[0]
        index = segments.read_segment(self.folder, first.name, mmap=False)
        index.reset()
        self.info.quantizer, _size = segments.write_index_file(index, self.folder, prefix="trained-")
        self._written.append(self.info.quantizer)
        self.info.quantizer_checksum = segments.checksum(self.folder / self.info.quantizer)
        self._trained = (self.info.quantizer, index)

    def _trained_index(self) -> Any:
        """The trained index as committed or last trained, read at most once: new segments copy it, and
        segments written without their centroids take its (merges read them before a retraining replaces it)."""
        if not self.info.quantizer:
            return None
        if self._trained is None or self._trained[0] != self.info.quantizer:
            self._trained = (self.info.quantizer, segments.read_trained(self.folder, self.info.quantizer))
        return self._trained[1]

    def _empty_segment(self) -> Any:
        import faiss

        if kinds.needs_training(self.info.kind):
            return faiss.clone_index(self._trained_index())
        return kinds.build_empty(self.info.kind, self.info.dim, self.info.params)[0]

    def _seal(self) -> None:
        """Write the segment being built, and name it in the manifest (of this uncommitted transaction)."""
        if self._building is None:
            return
        number = self._building_number if self._building_number is not None else self._next_segment()
        self._add_segment(number, self._building)
        self._building = None
        self._building_number = None

    def _add_segment(self, number: int, index: Any) -> None:
        name, size = segments.write_index_file(index, self.folder,
                                               share_centroids=kinds.needs_training(self.info.kind))
        self._written.append(name)
        live = self._db.execute("SELECT COUNT(*) FROM items WHERE segment = ?", (number,)).fetchone()[0]
        self._db.execute("INSERT INTO segments (number, name, vectors, live, bytes, checksum) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (number, name, int(index.ntotal), live, size, segments.checksum(self.folder / name)))
        self._changed = True

    # -- merging
    def _stats(self) -> list[merging.SegmentStat]:
        return [merging.SegmentStat(*row) for row in
                self._db.execute("SELECT number, name, vectors, live FROM segments ORDER BY number")]

    def _merge(self, count: int) -> None:
        """Drop dead segments, and merge what the policy says (everything on --compact or a retraining)."""
        retrain = kinds.should_retrain(self.info.kind, self.info.params, self.info.trained, count) and \
            (self.info.kind != "ivfpq" or kinds.keeps_vectors_in_metadata(self.info.kind, self.info.params))
        drop, group = merging.plan(self._stats(), merging.segment_limit(self.info.dim),
                                   everything=self._compact or retrain)
        for stat in drop:
            self._db.execute("DELETE FROM segments WHERE number = ?", (stat.number,))
            self._changed = True
        if retrain:
            group = [s for s in self._stats()]
        if not group:
            return
        numbers = [s.number for s in group]
        marks = ",".join("?" * len(numbers))
        rows_of = {n: [] for n in numbers}
        for row, number in self._db.execute(f"SELECT row, segment FROM items WHERE segment IN ({marks}) "
                                            "ORDER BY row", numbers):
            rows_of[number].append(row)
        merged = self._merged_index(group, rows_of, retrain)
        new = self._next_segment()
        self._db.execute(f"UPDATE items SET segment = ? WHERE segment IN ({marks})", (new, *numbers))
        self._db.execute(f"DELETE FROM segments WHERE number IN ({marks})", numbers)
        self._add_segment(new, merged)
        self.summary.merged += len(group)
        self.summary.compacted = True

    def _merged_index(self, group: list[merging.SegmentStat], rows_of: dict[int, list[int]], retrain: bool) -> Any:
        import numpy as np

        from mmtools.index.reader import Segment

        if self.info.kind == "ivfpq" and not retrain:  # codes move as they are: nothing is encoded again
            merged = self._empty_segment()
            for stat in group:
                index = segments.read_segment(self.folder, stat.name, mmap=False, trained=self._trained_index())
                merging.drop_dead_ids(index, np.asarray(rows_of[stat.number], dtype=np.int64))
                merged.merge_from(index, 0)
            return merged
        all_rows = np.asarray([r for s in group for r in rows_of[s.number]], dtype=np.int64)
        if self.info.kind == "ivfpq":  # exact vectors kept in the metadata
            vectors = np.empty((len(all_rows), self.info.dim), dtype=np.float32)
            at = 0
            for stat in group:
                for (blob,) in self._db.execute("SELECT vector FROM items WHERE segment = ? ORDER BY row",
                                                (stat.number,)):
                    vectors[at] = np.frombuffer(blob, dtype=np.float32)
                    at += 1
        else:
            parts = []
            for stat in group:
                rows = np.asarray(rows_of[stat.number], dtype=np.int64)
                if len(rows):
                    index = segments.read_segment(self.folder, stat.name, mmap=self.info.kind == "flat",
                                                  trained=self._trained_index())
                    parts.append(Segment(stat.number, index).vectors_at(rows))
            vectors = np.vstack(parts) if parts else np.zeros((0, self.info.dim), dtype=np.float32)
        if retrain and len(vectors):
            self._train(vectors)
        merged = self._empty_segment()
        for start in range(0, len(all_rows), ADD_CHUNK):
            merged.add_with_ids(np.ascontiguousarray(vectors[start:start + ADD_CHUNK]),
                                all_rows[start:start + ADD_CHUNK])
        return merged

    # -- finishing
    def commit(self) -> IndexInfo:
        """Write the new segment, merge if due, and commit the metadata's transaction (the commit point)."""
        try:
            self._flush(final=True)
            self._seal()
            info = self.info
            if self._meta_tmp is not None and not self._stats():
                raise IndexFileError(f"no embeddings to index; {self.path} was not written")
            info.count = self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            total, pieces = self._db.execute("SELECT COALESCE(SUM(vectors), 0), COUNT(*) FROM segments").fetchone()
            if not (self._changed or (self._compact and (total > info.count or pieces > 1))
                    or kinds.should_retrain(info.kind, info.params, info.trained, info.count)):
                self.abort()  # nothing changed: the index stays as it was, byte for byte
                return info
            self._merge(info.count)
            if self._trained_now and (note := kinds.training_note(info.kind, info.trained)):
                self.summary.notes.append(note)
            info.ntotal, size, info.segments = self._db.execute(
                "SELECT COALESCE(SUM(vectors), 0), COALESCE(SUM(bytes), 0), COUNT(*) FROM segments").fetchone()
            info.faiss_bytes = size + ((self.folder / info.quantizer).stat().st_size if info.quantizer else 0)
            info.format_version = FORMAT_VERSION
            info.updated_at = time.time()
            info.generation = uuid.uuid4().hex
            keep = self._committed_files()
            fsync_directory(self.folder)
            self._db.execute("DELETE FROM info")
            self._db.executemany("INSERT INTO info (key, value) VALUES (?, ?)", info.to_rows())
            if self._meta_tmp is not None:
                self._install_new()
            else:
                commit_transaction(self._db)
                self._written = []
                _close_without_checkpoint(self._db, self.meta_path)
                self._db = None
            segments.sweep(self.folder, keep)  # merged segments, an old quantizer: no longer named
        except BaseException:
            self.abort()
            raise
        self._release()
        _checkpoint_if_large(self.meta_path)  # committed and unlocked: readers and writers go on meanwhile
        return info

    def _install_new(self) -> None:
        """A new index: its metadata goes into place, then the index file, whose arrival is the commit."""
        self._db.execute("COMMIT")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.close()
        self._db = None
        for stale in ("-wal", "-shm"):  # of an unreadable file that --rebuild replaces: never pair them
            Path(f"{self.meta_path}{stale}").unlink(missing_ok=True)
        replace_atomically(self._meta_tmp, self.meta_path)
        self._meta_tmp = None
        fsync_directory(self.path.parent)
        segments.write_marker(self.path, self.info.index_id)
        self._written = []

    def abort(self) -> None:
        """Discard everything written so far; the index at ``path`` stays as it was."""
        if self._db is not None:
            try:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._db.close()
            self._db = None
        if self._meta_tmp is not None:
            self._meta_tmp.unlink(missing_ok=True)
            self._meta_tmp = None
        for name in self._written:  # no manifest names them
            (self.folder / name).unlink(missing_ok=True)
        self._written = []
        self._building = None
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            # No index here after all (refused, failed or empty): no lock file left beside nothing.
            release_lock(self._lock, remove=not self.meta_path.exists())
            self._lock = None

    def __enter__(self) -> "IndexWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


CHECKPOINT_BYTES = 32 << 20  # a WAL past this is folded into the metadata file after a write


def _close_without_checkpoint(db: sqlite3.Connection, meta: Path) -> None:
    """Close the writer's connection without the checkpoint SQLite does when the last connection to a WAL
    database closes (it would copy every page the write changed a second time, in the write's critical
    path): a read-only connection stays open over the close, and being read-only cannot checkpoint itself."""
    try:
        companion = sqlite3.connect(f"file:{meta}?mode=ro", uri=True, isolation_level=None)
        companion.execute("SELECT 1 FROM info LIMIT 1").fetchone()  # holds its shared lock from here
    except sqlite3.Error:
        db.close()
        return
    db.close()
    companion.close()


def _checkpoint_if_large(meta: Path) -> None:
    """Fold a WAL grown past CHECKPOINT_BYTES (many writes with no reader closing in between) into the file;
    passive: it waits for no reader and no writer."""
    try:
        if os.path.getsize(f"{meta}-wal") <= CHECKPOINT_BYTES:
            return
        db = sqlite3.connect(meta, isolation_level=None)
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()
    except (OSError, sqlite3.Error):
        pass  # a later write or reader folds it


def _convert_legacy(db: sqlite3.Connection, info: IndexInfo, name: str, size: int) -> None:
    """A format-1/2 metadata copy made segmented: its FAISS file is segment 1 of the manifest."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(items)")}
    for column in ("digest", "vector", "segment"):
        if column not in columns:
            db.execute(f"ALTER TABLE items ADD COLUMN {column} {'INTEGER' if column == 'segment' else 'BLOB'}")
    db.execute("UPDATE items SET segment = 1")
    for statement in segments.SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT INTO segments (number, name, vectors, live, bytes) VALUES (1, ?, ?, ?, ?)",
               (name, info.ntotal, info.count, size))
    info.upgraded_from = info.generation or "format-1"
    info.index_id = uuid.uuid4().hex
    info.next_segment = 2
    info.segments = 1
    info.format_version = FORMAT_VERSION
    db.execute("DELETE FROM info")
    db.executemany("INSERT INTO info (key, value) VALUES (?, ?)", info.to_rows())
