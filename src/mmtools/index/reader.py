"""An index opened for search: the metadata at one committed state, and the segment files it names.

A reader keeps one SQLite read transaction open for its whole life, so the records, the texts and the list
of segments it sees are all of one commit, whatever writers commit meanwhile; it opens every segment file
of that list at once (a file a merge removes later stays readable while it is open).
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterable, Iterator


from mmtools.errors import IndexFileError
from mmtools.index import filters, fulltext, kinds, legacy, segments
from mmtools.index.info import (SEGMENTED, Hit, IndexInfo, canonical_item_id, metadata_path, read_info,
                                segments_folder)
from mmtools.index.locate import as_opened_from_here, record_location, stored_root
from mmtools.records import EMBEDDING, EMBEDDING_FINGERPRINT, EMBEDDING_MODEL, encode_vector, loads_json

OPEN_ATTEMPTS = 40  # a reader that meets a commit in progress opens again (50 ms apart)
RECONSTRUCT_CHUNK = 4096


@dataclass
class Segment:
    number: int  # 0 for a format-2 index's one file
    index: Any
    _ids: Any = None  # sorted FAISS ids and their positions, built when vectors are first asked for
    _positions: Any = None

    def vectors_at(self, rows: Any) -> Any:
        """Exact vectors of these rows of this segment (kinds whose file keeps them: not ivfpq)."""
        import faiss
        import numpy as np

        if self._ids is None:
            ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            order = np.argsort(ids, kind="stable")
            self._ids, self._positions = ids[order], order
        at = np.searchsorted(self._ids, rows)
        if np.any(at >= len(self._ids)) or np.any(self._ids[np.minimum(at, len(self._ids) - 1)] != rows):
            return None
        inner = faiss.downcast_index(self.index.index)
        return inner.reconstruct_batch(self._positions[at].astype(np.int64))


def _connect(meta: Path) -> sqlite3.Connection:
    """Read-only use of the metadata. Opened read-write where allowed (``query_only``), so that the last
    reader to close tidies SQLite's -wal and -shm files away; else read-only (``mode=ro``: a file or folder
    the user may not write); else, when no WAL is pending, as an immutable file (a read-only file system,
    where SQLite cannot even make its -shm file)."""
    from urllib.parse import quote

    uri = f"file:{quote(str(meta))}"
    attempts = [f"{uri}?mode=rw", f"{uri}?mode=ro"]
    wal = Path(f"{meta}-wal")
    if not wal.exists() or wal.stat().st_size == 0:
        attempts.append(f"{uri}?mode=ro&immutable=1")
    error: sqlite3.Error | None = None
    for target in attempts:
        try:
            db = sqlite3.connect(target, uri=True, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            error = exc
            continue
        try:
            if target.endswith("mode=rw"):
                db.execute("PRAGMA query_only=1")
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opens the WAL index too
            return db
        except sqlite3.Error as exc:
            db.close()
            error = exc
    raise IndexFileError(f"index metadata {meta} cannot be opened ({error})",
                         hint="check that the file and its folder can be read; on a read-only copy, first run "
                              "any `mmtools index -o` on the original so that no write-ahead log (-wal) is pending")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _mmap_kind(kind: str) -> bool:
    return kind in ("flat", "ivfpq")


def _different_writes(path: Path) -> IndexFileError:
    return IndexFileError(f"index {path} and its metadata are from different writes",
                          hint="any `mmtools index -o FILE` run repairs an interrupted write; or rebuild "
                               "with --rebuild")


class IndexReader:
    """An index opened for search. Cheap to keep open; safe for one thread."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        meta = metadata_path(self.path)
        opened_segments = None
        self._missing: Path | None = None
        for _attempt in range(OPEN_ATTEMPTS):
            if not self.path.exists() and meta.exists():
                raise IndexFileError(f"index file {self.path} is missing but its metadata {meta.name} is there",
                                     hint=f"the next `mmtools index -o {self.path}` run writes it again from the "
                                          "metadata (the records are kept)")
            if not self.path.exists():
                raise IndexFileError(f"no index at {self.path}",
                                     hint="build one with `mmtools embed-images DIR | mmtools index -o "
                                          f"{self.path}`, or name one with --index or MMTOOLS_INDEX")
            if not meta.exists():
                raise IndexFileError(f"index {self.path} has no metadata file {meta.name} beside it",
                                     hint="mmtools needs both files; rebuild with mmtools index --rebuild")
            opened = _identity(meta)
            self._db = _connect(meta)
            try:
                self._db.execute("BEGIN")  # one snapshot for the reader's life
                self.info = read_info(self._db, str(meta))
                opened_segments = self._open_segments()
            except BaseException:
                self._db.close()
                raise
            if opened_segments is not None:
                break
            self._db.close()
            if _identity(meta) == opened and self.info.format_version < SEGMENTED:
                break  # not a commit in progress: the files really are from two writes
            time.sleep(0.05)  # a writer committed meanwhile: look again
        if opened_segments is None and self._missing is not None:
            raise IndexFileError(f"index {self.path} lacks its segment file {self._missing}",
                                 hint=f"an index is three things: {self.path.name}, {meta.name} and the folder "
                                      f"{segments_folder(self.path).name}; copy or move them together")
        if opened_segments is None:
            raise _different_writes(self.path)
        self._segments: list[Segment] = opened_segments
        for segment in self._segments:
            kinds.set_search_params(segment.index, self.info.kind, self.info.params)
        if self.info.kind == "flat":  # exact search is what GPUs speed up most; a no-op without the GPU build
            from mmtools.gpu import gpu_search_index

            for segment in self._segments:
                segment.index = gpu_search_index(segment.index)
        self._segmented = self.info.format_version >= SEGMENTED

    def _open_segments(self) -> list[Segment] | None:
        """The segment files of the manifest read, opened; None when they are not there (yet, or any more)."""
        info = self.info
        mmap = _mmap_kind(info.kind)
        if info.format_version < SEGMENTED:
            index = legacy.open_vectors(self.path, info, mmap=mmap)
            return None if index is None else [Segment(0, index)]
        marker = segments.read_marker(self.path)
        if marker != info.index_id and not (marker is None and info.upgraded_from
                                            and legacy.generation_of(self.path) == info.upgraded_from):
            if marker is None and not info.upgraded_from:
                raise IndexFileError(f"{self.path} is not an mmtools index file",
                                     hint="rebuild it with mmtools index --rebuild")
            raise _different_writes(self.path)
        folder = segments_folder(self.path)
        opened = []
        trained = None
        if info.quantizer:  # IVF kinds: the centroids segments share, read once for all of them
            try:
                segments.verify(folder / info.quantizer, None, info.quantizer_checksum)
                trained = segments.read_trained(folder, info.quantizer)
            except FileNotFoundError:
                self._missing = folder / info.quantizer
                return None
        for number, name, vectors, size, checksum in self._manifest():
            try:
                segments.verify(folder / name, size, checksum)
                index = segments.read_segment(folder, name, mmap, trained)
            except FileNotFoundError:
                self._missing = folder / name
                return None
            if index.ntotal != vectors or index.d != info.dim:
                raise IndexFileError(
                    f"segment {folder / name} and the metadata disagree ({index.ntotal} vectors of {index.d} "
                    f"dimensions in the file, {vectors} of {info.dim} in the metadata); was it changed by "
                    "another program?", hint="rebuild it with mmtools index --rebuild")
            opened.append(Segment(number, index))
        return opened

    def _manifest(self) -> list[tuple[int, str, int, int, str | None]]:
        """``(number, name, vectors, bytes, checksum)`` of each live segment (checksum None before they were
        kept)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(segments)")}
        checksum = "checksum" if "checksum" in columns else "NULL"
        return self._db.execute(f"SELECT number, name, vectors, bytes, {checksum} FROM segments "
                                "ORDER BY number").fetchall()

    def check(self) -> list[str]:
        """Hash every file of the index against the checksums recorded when it was written; the names of the
        files checked. Raises IndexFileError naming the first damaged one."""
        folder = segments_folder(self.path)
        if self.info.format_version < SEGMENTED:
            return []
        checked = []
        if self.info.quantizer:
            segments.verify(folder / self.info.quantizer, None, self.info.quantizer_checksum, full=True)
            checked.append(self.info.quantizer)
        for _number, name, _vectors, size, checksum in self._manifest():
            segments.verify(folder / name, size, checksum, full=True)
            checked.append(name)
        return checked

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "IndexReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def _rerank_exactly(self) -> int:
        """ivfpq with kept vectors re-ranks ``k × rerank`` PQ candidates against the exact vectors."""
        if kinds.keeps_vectors_in_metadata(self.info.kind, self.info.params):
            return self.info.params.get("rerank", 0)
        return 0

    # -- search
    def search(self, vectors: Any, k: int = 10, min_score: float | None = None,
               among: Iterable[int] | None = None) -> list[list[Hit]]:
        """The ``k`` best records for each query vector (unit vectors; scores are cosine similarities);
        only among these rows when ``among`` is given (see ``scan``)."""
        import numpy as np

        queries = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.info.dim)
        if self.info.count == 0 or k <= 0 or not self._segments:
            return [[] for _ in range(len(queries))]
        if among is not None:
            ranked = self._rank_among(queries, list(among), k)
            found = self._records({row for hits in ranked for _, row in hits})
            return [[Hit(found[r][0], s, found[r][1], self.hit_path(found[r][0], found[r][1]))
                     for s, r in hits if min_score is None or s >= min_score] for hits in ranked]
        rerank = self._rerank_exactly
        tombstones = self.info.ntotal - self.info.count
        fetch = k if tombstones == 0 else 2 * k + 16
        largest = max(int(segment.index.ntotal) for segment in self._segments)
        while True:
            want = fetch * max(1, rerank)
            scores, rows, full = self._search_segments(queries, want)
            found = self._records({int(r) for r in rows.ravel() if r >= 0}, with_vectors=bool(rerank))
            results, short = [], False
            for query, query_scores, query_rows, query_full in zip(queries, scores, rows, full):
                live = [(float(s), int(r)) for s, r in zip(query_scores, query_rows) if int(r) in found]
                if rerank:
                    live = sorted(((float(np.dot(query, found[r][2])), r) for _, r in live), reverse=True)
                hits = [Hit(found[r][0], s, found[r][1], self.hit_path(found[r][0], found[r][1]))
                        for s, r in live[:k] if min_score is None or s >= min_score]
                # Tombstones crowded live records out of the candidates: fetch more.
                short |= len(live) < min(k, self.info.count) and query_full
                results.append(hits)
            if not short or want >= largest:
                return results
            fetch *= 4

    def _search_segments(self, queries: Any, want: int) -> tuple[Any, Any, Any]:
        """Each segment's ``want`` best, merged by score: ``(scores, rows, full)``, ``full`` per query saying
        whether some segment had more candidates than it gave."""
        import numpy as np

        all_scores, all_rows, full = [], [], np.zeros(len(queries), dtype=bool)
        for segment in self._segments:
            take = min(want, int(segment.index.ntotal))
            if take <= 0:
                continue
            scores, rows = segment.index.search(queries, take)
            full |= (np.count_nonzero(rows >= 0, axis=1) == take) & (take < segment.index.ntotal)
            all_scores.append(scores)
            all_rows.append(rows)
        if not all_scores:
            empty = np.zeros((len(queries), 0))
            return empty, empty.astype(np.int64), full
        scores, rows = np.hstack(all_scores), np.hstack(all_rows)
        if len(all_scores) > 1:
            scores = np.where(rows >= 0, scores, -np.inf)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :want]
            scores, rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
        return scores, rows, full

    def _rank_among(self, queries: Any, rows: list[int], k: int) -> list[list[tuple[float, int]]]:
        """Filters: rank only these rows (index/filters.py), segment by segment, best of all."""
        if len(self._segments) == 1:
            segment = self._segments[0]
            return filters.rank_among(segment.index, self.info.kind, self.info.params, queries, rows, k,
                                      self.vectors_of)
        best: list[list[tuple[float, int]]] = [[] for _ in range(len(queries))]
        for segment in self._segments:
            mine = self._rows_by_segment(rows).get(segment.number, [])
            if not mine:
                continue
            ranked = filters.rank_among(segment.index, self.info.kind, self.info.params, queries, mine, k,
                                        self.vectors_of)
            best = [sorted(b + r, reverse=True)[:k] for b, r in zip(best, ranked)]
        return best

    def _rows_by_segment(self, rows: Iterable[int]) -> dict[int, list[int]]:
        if not self._segmented:
            return {0: list(rows)}
        grouped: dict[int, list[int]] = {}
        ordered = sorted(int(r) for r in rows)
        for start in range(0, len(ordered), 500):  # stay under SQLite's parameter limit
            chunk = ordered[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row, number in self._db.execute(f"SELECT row, segment FROM items WHERE row IN ({marks})", chunk):
                grouped.setdefault(number, []).append(row)
        return grouped

    # -- records
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
                entry = (item_id, loads_json(record))
                if with_vectors:
                    entry += (np.frombuffer(vector[0], dtype=np.float32),)
                found[row] = entry
        return found

    def vectors_of(self, rows: Iterable[int]) -> Any:
        """The exact vectors of these live rows (see ``scan``), in that order, as an ``(n, dim)`` float32
        array; None when the index keeps no exact vectors (ivfpq built with keep_vectors=0)."""
        import numpy as np

        rows = np.asarray([int(r) for r in rows], dtype=np.int64)
        if self.info.kind == "ivfpq":
            if not kinds.keeps_vectors_in_metadata(self.info.kind, self.info.params):
                return None
            out = np.empty((len(rows), self.info.dim), dtype=np.float32)
            for start in range(0, len(rows), RECONSTRUCT_CHUNK):
                chunk = rows[start:start + RECONSTRUCT_CHUNK]
                found = self._records(set(chunk.tolist()), with_vectors=True)
                try:
                    out[start:start + len(chunk)] = [found[int(r)][2] for r in chunk]
                except KeyError as exc:
                    raise self._no_vector(exc.args[0]) from None
            return out
        out = np.empty((len(rows), self.info.dim), dtype=np.float32)
        by_number = {segment.number: segment for segment in self._segments}
        seen = 0
        for start in range(0, len(rows), RECONSTRUCT_CHUNK):
            chunk = rows[start:start + RECONSTRUCT_CHUNK]
            for number, mine in self._rows_by_segment(chunk.tolist()).items():
                mine = np.asarray(mine, dtype=np.int64)
                vectors = by_number[number].vectors_at(mine) if number in by_number else None
                if vectors is None:
                    raise self._no_vector(int(mine[0]))
                out[_positions_in(chunk, mine) + start] = vectors
                seen += len(mine)
        if seen != len(rows):
            raise self._no_vector(-1)
        return out

    def _no_vector(self, row: int) -> IndexFileError:
        return IndexFileError(f"index {self.path}: row {row} is no live record with a vector",
                              hint="ask only for rows that scan() gives, or rebuild it with mmtools index --rebuild")

    def sample_vectors(self, count: int) -> Any:
        """Up to ``count`` of the index's own vectors, spread over it; None when it keeps none."""
        import numpy as np

        rows = [row for (row,) in self._db.execute("SELECT row FROM items ORDER BY row")]
        if not rows:
            return None
        if len(rows) > count:
            rows = [rows[i] for i in np.linspace(0, len(rows) - 1, count).astype(np.int64)]
        return self.vectors_of(rows)

    @property
    def connection(self) -> sqlite3.Connection:
        """The metadata database, read-only, at the state this reader opened (full-text search reads it)."""
        return self._db

    # -- full text (the keyword channel; see mmtools.index.fulltext)
    def has_texts(self, file_names: bool = False) -> bool:
        """Whether the index holds texts for keyword search (file names count only with ``file_names``)."""
        return fulltext.has_texts(self._db, file_names)

    def texts_hint(self) -> str:
        """What to do when keyword search finds no texts to search."""
        return (f"update it with this mmtools (any `mmtools index -o {self.path}` run adds them), or search with "
                "--mode vector")

    def keyword_search(self, query: str, k: int, among: Collection[str] | None = None) -> list[fulltext.KeywordHit]:
        """The ``k`` best records for ``query`` (only ids in ``among``, when given): exact matches first."""
        return fulltext.search(self._db, query, k, among)

    def stored_texts(self) -> Iterator[str]:
        """Every indexed text, as written (e.g. to learn a collection's words)."""
        return fulltext.stored_texts(self._db)

    def scan(self) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """``(row, id, record)`` of every live record (what filters look at)."""
        for row, item_id, record in self._db.execute("SELECT row, id, record FROM items ORDER BY row"):
            yield row, item_id, loads_json(record)

    def ids(self) -> Iterator[str]:
        for (item_id,) in self._db.execute("SELECT id FROM items ORDER BY row"):
            yield item_id

    def get(self, item_id: str) -> dict[str, Any] | None:
        """The stored record with this id, or None."""
        row = self._db.execute("SELECT record FROM items WHERE id = ?", (canonical_item_id(item_id),)).fetchone()
        return loads_json(row[0]) if row else None

    def export(self, vector_format: str = "base64") -> Iterator[dict[str, Any]]:
        """Every stored record with its vector, as an embedding record (``mmtools index`` reads it back)."""
        info = self.info
        if info.kind == "ivfpq" and not kinds.keeps_vectors_in_metadata(info.kind, info.params):
            raise IndexFileError(f"index {self.path} keeps no exact vectors (an ivfpq index built with "
                                 "keep_vectors=0 holds only compressed codes), so they cannot be exported",
                                 hint="embed the inputs again, or build with --param keep_vectors=1")
        model_fields = {EMBEDDING_MODEL: info.model}
        if info.fingerprint:
            model_fields[EMBEDDING_FINGERPRINT] = info.fingerprint
        batch: list[tuple[int, str, bytes]] = []

        def flush() -> Iterator[dict[str, Any]]:
            vectors = self.vectors_of([row for row, _, _ in batch])
            for (_row, item_id, record), vector in zip(batch, vectors):
                yield {**loads_json(record), "id": item_id, EMBEDDING: encode_vector(vector, vector_format),
                       **model_fields}
            batch.clear()

        for entry in self._db.execute("SELECT row, id, record FROM items ORDER BY row"):
            batch.append(entry)
            if len(batch) >= RECONSTRUCT_CHUNK:
                yield from flush()
        if batch:
            yield from flush()


def _positions_in(chunk: Any, rows: Any) -> Any:
    """Where each of ``rows`` stands in ``chunk`` (rows are all in it)."""
    import numpy as np

    order = np.argsort(chunk, kind="stable")
    return order[np.searchsorted(chunk, rows, sorter=order)]
