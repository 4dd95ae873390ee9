"""A collection opened for search: the same interface as ``IndexReader``, keyword channel included."""

from __future__ import annotations

import os
import threading
from typing import Any, Iterable, Iterator

from mmtools.errors import IndexFileError
from mmtools.index import fulltext
from mmtools.index.info import Hit, canonical_item_id
from mmtools.index.milvus import texts as milvus_texts
from mmtools.index.milvus.collection import (count_records, describe, full_text_version, iterate_rows,
                                             load_collection, search_params)
from mmtools.index.milvus.connection import connect, disconnect, talking_to
from mmtools.index.milvus.location import ids_expression, parse_location
from mmtools.records import EMBEDDING, EMBEDDING_FINGERPRINT, EMBEDDING_MODEL, encode_vector
from mmtools.text.normalize import normalize_text

MAX_TOP_K = 16_384  # Milvus's limit for one search
AMONG_CHUNK = 5_000  # ids named in one filtered search (--where's selection)
READER_WAIT_S = 30.0  # a reader waits this long for a Milvus Lite file another process holds


class MilvusReader:
    """A Milvus collection opened for search; the same interface as ``IndexReader``. Searches see the
    collection as it is now (Milvus's strong consistency), not as it was when it was opened."""

    def __init__(self, location: str, *, wait: float | None = READER_WAIT_S):
        self.location = parse_location(location)
        self.path = location
        self._client = None
        self._scanned: dict[int, str] = {}  # scan's rows -> ids, for search(among=...)
        self._rows: dict[str, int] = {}
        self._numbering = threading.Lock()
        if self.location.lite and not os.path.isdir(self.location.uri):  # connecting would create it
            raise IndexFileError(f"no index at {location} (there is no Milvus Lite file {self.location.uri})",
                                 hint=f"build one with `mmtools embed-images DIR | mmtools index -o {location}`")
        self._client = connect(self.location, wait, None)
        try:
            described = describe(self._client, self.location)
            if described is None:
                raise IndexFileError(f"no index at {location} (the Milvus collection does not exist)",
                                     hint=f"build one with `mmtools embed-images DIR | mmtools index -o {location}`")
            self.collection, self.info, self.keeps_texts = described
            self._old_server = None if self.keeps_texts else full_text_version(self._client, self.location)
            load_collection(self._client, self.location, self.collection)
            self.info.count = self.info.ntotal = count_records(self._client, self.location, self.collection)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._client is not None:
            disconnect(self.location, self._client)
            self._client = None

    def __enter__(self) -> "MilvusReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def signature(self) -> tuple:
        """What changes when a write changed the info or a rebuild replaced the collection."""
        described = describe(self._client, self.location)
        return (described.physical, described.info.generation) if described else ()

    def search(self, vectors: Any, k: int = 10, min_score: float | None = None, *,
               where: Any = None, among: Iterable[int] | None = None) -> list[list[Hit]]:
        """The ``k`` best records for each query vector (unit vectors; scores are cosine similarities).
        ``where``: a Milvus boolean expression over ``record[...]`` (or an object with ``to_milvus()``);
        ``among``: only these rows of ``scan`` (what --where's filters select, as for a FAISS index)."""
        import numpy as np

        queries = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.info.dim)
        if k <= 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        expression = where.to_milvus() if hasattr(where, "to_milvus") else (where or "")
        if among is None:
            return self._search(queries, k, min_score, expression)
        ids = [self._scanned[row] for row in among if row in self._scanned]
        merged: list[list[Hit]] = [[] for _ in range(len(queries))]
        for start in range(0, len(ids), AMONG_CHUNK):  # an id list per search stays a modest expression
            chunk = ids_expression(ids[start:start + AMONG_CHUNK])
            found = self._search(queries, k, min_score, f"({expression}) and {chunk}" if expression else chunk)
            merged = [sorted(a + b, key=lambda hit: -hit.score)[:k] for a, b in zip(merged, found)]
        return merged

    def _search(self, queries: Any, k: int, min_score: float | None, expression: str) -> list[list[Hit]]:
        with talking_to(self.location, "search"):
            results = self._client.search(self.collection, data=queries.tolist(), anns_field="vector",
                                          limit=min(k, MAX_TOP_K), filter=expression, output_fields=["record"],
                                          search_params=search_params(self.info, k))
        return [[Hit(hit["id"], float(hit["distance"]), hit["entity"]["record"]) for hit in hits
                 if min_score is None or hit["distance"] >= min_score] for hits in results]

    # -- full text (the keyword channel; see mmtools.index.milvus.texts)
    def has_texts(self, file_names: bool = False) -> bool:
        """Whether the collection holds texts for keyword search (file names count only with ``file_names``)."""
        if not self.keeps_texts:
            return False
        with talking_to(self.location, "looking for texts"):
            return bool(self._client.query(self.collection, filter=milvus_texts.has_texts_condition(file_names),
                                           output_fields=["id"], limit=1))

    def texts_hint(self) -> str:
        """What to do when keyword search finds no texts to search."""
        if self._old_server is not None:
            return (f"this Milvus ({self._old_server}) keeps no full text (Milvus 2.5 or later does); search with "
                    "--mode vector")
        return (f"update it with this mmtools (any `mmtools index -o {self.path}` run adds them), or search with "
                "--mode vector")

    def keyword_search(self, query: str, k: int, among: Iterable[str] | None = None) -> list[fulltext.KeywordHit]:
        """The ``k`` best records for ``query`` (only ids in ``among``, when given): those holding every
        term as typed first, then the folded matches, each group in BM25 order (as ``fulltext.search``)."""
        parsed = fulltext.KeywordQuery.parse(query)
        if not parsed or k <= 0 or not self.keeps_texts:
            return []
        chunks: list[str | None] = [None]
        if among is not None:
            ids = sorted(set(among))
            chunks = [ids_expression(ids[start:start + AMONG_CHUNK]) for start in range(0, len(ids), AMONG_CHUNK)]
        hits: dict[str, fulltext.KeywordHit] = {}
        for exact in (True, False):
            found: list[fulltext.KeywordHit] = []
            for chunk in chunks:
                found.extend(self._matching(parsed, exact, k, chunk, skip=hits))
            for hit in sorted(found, key=lambda hit: -hit.score)[:k - len(hits)]:
                hits[hit.id] = hit
            if len(hits) >= k:
                break
        return list(hits.values())

    def _matching(self, parsed: fulltext.KeywordQuery, exact: bool, k: int, ids: str | None,
                  skip: dict[str, Any]) -> list[fulltext.KeywordHit]:
        """Up to ``k`` records (not in ``skip``) matching in the exact or folded column, best first. Milvus
        ranks by BM25 and each candidate is checked against its texts. A record scores the same whether or
        not the others are filtered away, so the first ``k`` of the plain ranking that pass the check are the
        answer; only when too few of them pass are the candidates narrowed to the rows holding every word
        (``TEXT_MATCH``: exact but slower, ~15 ms a word in Milvus Lite), asking for more while the check
        turns too many away."""
        column = milvus_texts.column_for(exact)
        wanted = k + len(skip)
        limit = min(MAX_TOP_K, 4 * wanted)
        kept, complete = self._checked(parsed, exact, column, ids or "", limit, skip)
        if len(kept) >= k or complete:
            return kept[:k]
        narrowed = milvus_texts.condition(parsed, exact) + (f" and {ids}" if ids else "")
        limit = min(MAX_TOP_K, wanted)
        while True:
            kept, complete = self._checked(parsed, exact, column, narrowed, limit, skip)
            if len(kept) >= k or complete or limit >= MAX_TOP_K:
                return kept[:k]
            limit = min(MAX_TOP_K, limit * 4)

    def _checked(self, parsed: fulltext.KeywordQuery, exact: bool, column: str, expression: str, limit: int,
                 skip: dict[str, Any]) -> tuple[list[fulltext.KeywordHit], bool]:
        """The BM25 ranking's first ``limit`` rows under ``expression`` that pass the check, and whether
        that was every row with a word of the query."""
        with talking_to(self.location, "keyword search"):
            results = self._client.search(self.collection, data=[milvus_texts.query_text(parsed, exact)],
                                          anns_field=milvus_texts.SPARSE[column], limit=limit,
                                          filter=expression, output_fields=["record"],
                                          search_params={"metric_type": "BM25"})[0]
        kept = []
        for hit in results:
            record = hit["entity"]["record"]
            if hit["id"] in skip:
                continue
            matched = fulltext.matching_text(fulltext.texts_of(record, self.info.text_fields), parsed, exact)
            if matched is not None:
                snippet = fulltext.snippet(normalize_text(matched[1]), parsed)
                # Milvus Lite reports BM25 negated (best first either way); the score is the BM25 value.
                kept.append(fulltext.KeywordHit(hit["id"], abs(float(hit["distance"])), matched[0], snippet,
                                                exact, record))
        return kept, len(results) < limit

    def stored_texts(self) -> Iterator[str]:
        """Every indexed text, as written (e.g. to learn a collection's words)."""
        for row in iterate_rows(self._client, self.location, self.collection, ["record"]):
            for _field, text in fulltext.texts_of(row["record"], self.info.text_fields):
                yield normalize_text(text)

    def scan(self) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """``(row, id, record)`` of every record (what --where's filters look at); rows are this reader's
        numbers for the ids, and ``search(among=...)`` takes them back."""
        for found in iterate_rows(self._client, self.location, self.collection, ["id", "record"]):
            yield self._row_of(found["id"]), found["id"], found["record"]

    def _row_of(self, item_id: str) -> int:
        """The id's row number, kept for the reader's life, so that scans running at once in a warm server
        never renumber the rows another request searches among."""
        row = self._rows.get(item_id)
        if row is None:
            with self._numbering:
                row = self._rows.setdefault(item_id, len(self._rows))
                self._scanned[row] = item_id
        return row

    def ids(self) -> Iterator[str]:
        for row in iterate_rows(self._client, self.location, self.collection, ["id"]):
            yield row["id"]

    def get(self, item_id: str) -> dict[str, Any] | None:
        """The stored record with this id, or None."""
        with talking_to(self.location, "get"):
            rows = self._client.query(self.collection, filter=ids_expression([canonical_item_id(item_id)]),
                                      output_fields=["record"])
        return rows[0]["record"] if rows else None

    def export(self, vector_format: str = "base64") -> Iterator[dict[str, Any]]:
        """Every stored record with its vector, as an embedding record (``mmtools index`` reads it back)."""
        import numpy as np

        model_fields = {EMBEDDING_MODEL: self.info.model}
        if self.info.fingerprint:
            model_fields[EMBEDDING_FINGERPRINT] = self.info.fingerprint
        for row in iterate_rows(self._client, self.location, self.collection, ["id", "vector", "record"]):
            vector = np.asarray(row["vector"], dtype=np.float32)
            yield {**row["record"], "id": row["id"], EMBEDDING: encode_vector(vector, vector_format), **model_fields}

    # -- what search and the int8 agreement check ask every backend (mmtools.index.backends.IndexBackend)
    root = None  # a collection's records name their files by absolute path or id

    def hit_path(self, item_id: str, record: dict[str, Any]) -> str | None:
        """The record's file: its absolute ``path``, or found through its absolute id; else the stored path."""
        from mmtools.index.locate import record_location

        path = record.get("path")
        located = record_location(item_id, path, None)
        return located if located is not None else path if isinstance(path, str) else None

    def sample_vectors(self, count: int) -> Any:
        """Up to ``count`` of the collection's own vectors (its first ones); None when it is empty."""
        import itertools

        import numpy as np

        rows = itertools.islice(iterate_rows(self._client, self.location, self.collection, ["vector"]), count)
        vectors = [np.asarray(row["vector"], dtype=np.float32) for row in rows]
        return np.stack(vectors) if vectors else None
