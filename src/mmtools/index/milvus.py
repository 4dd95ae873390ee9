"""Milvus collections behind the reader and writer interface of the FAISS index (``mmtools.index.store``).

Locations: ``milvus://HOST:PORT/COLLECTION`` (a Milvus server or cluster; credentials, if any, come from
``MMTOOLS_MILVUS_TOKEN``: ``user:password`` or an API key) and ``milvus-lite://PATH.db/COLLECTION`` (Milvus
Lite: embedded, a local folder, the same API).

A collection holds one row a record: ``id`` (the primary key), ``vector`` (the unit vector), ``record`` (the
stored fields, JSON), ``digest`` (of both, so that a re-run leaves unchanged records alone) and the record's
texts for the keyword channel (``mmtools.index.milvus_fulltext``: analysed text, BM25 sparse vectors). What the FAISS
index keeps in its metadata (model name and fingerprint, dimension, kind, parameters...) is the collection's
``mmtools_info`` property. The name users give is an *alias*: the collection behind it is ``NAME__xxxxxxxx``,
so that ``--rebuild`` fills a new collection and switches the alias once it is complete (the old one stays
searchable until then), and a new collection only appears once it holds everything.

Writes: records are spooled to a private temporary SQLite file while the input is read (nothing reaches
Milvus before the whole stream was read, as with FAISS), then upserted by id at ``commit``. Milvus has no
transactions: a commit that is killed halfway leaves some records upserted and others not, each whole and
from the right model; running the same write again completes it. Many processes may write into one
collection of a Milvus server at once (upserts by id; the last write of an id wins). Milvus Lite serves one
process at a time: a second one waits for the file like a second FAISS writer waits for the lock.

Filters: ``search(..., where=...)`` takes a Milvus boolean expression over the stored fields, which live in
the JSON field ``record`` (``record["tags"]``; see ``field_expression``), or an object with a ``to_milvus()``
method that returns one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import orjson

from mmtools.errors import IndexFileError, MissingDependencyError
from mmtools.index import fulltext, kinds, milvus_fulltext
from mmtools.index.store import (FORMAT_VERSION, Hit, IndexInfo, RecordRejected, WriteSummary, canonical_item_id,
                                 model_mismatch, models_match)
from mmtools.records import EMBEDDING, EMBEDDING_FINGERPRINT, EMBEDDING_MODEL, encode_vector
from mmtools.text.normalize import normalize_text

SERVER_SCHEME = "milvus://"
LITE_SCHEME = "milvus-lite://"
DEFAULT_PORT = 19530
TOKEN_VARIABLE = "MMTOOLS_MILVUS_TOKEN"
INFO_PROPERTY = "mmtools_info"
INDEX_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT"}  # ivfpq: Milvus Lite has no IVF_PQ to test on
METRIC = "IP"  # on unit vectors: the FAISS index's inner product, scores and order alike
MAX_ID_BYTES = 65_535  # Milvus's longest VARCHAR
MAX_RECORD_BYTES = 65_536  # Milvus's default limit for one JSON value
MAX_TOP_K = 16_384  # Milvus's limit for one search
AMONG_CHUNK = 5_000  # ids named in one filtered search (--where's selection)
FULL_TEXT_SINCE = (2, 5)  # the first Milvus (and Milvus Lite) with BM25 functions and TEXT_MATCH
BATCH = 256  # rows per upsert, ids per lookup
CONNECT_TIMEOUT_S = 10.0
READER_WAIT_S = 30.0  # a reader waits this long for a Milvus Lite file another process holds
INSTALL_HINT = "install the Milvus extra: pip install 'mmtools[milvus]'"
MANY_WRITERS_HINT = ("for many processes at once, serve the file (milvus-lite server --data-dir PATH.db) and "
                     "use milvus://127.0.0.1:19530/COLLECTION, or a Milvus server")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")


@dataclass(frozen=True)
class MilvusLocation:
    text: str  # as the user wrote it, for messages
    uri: str  # http://HOST:PORT, or the absolute path of the Milvus Lite folder
    collection: str  # the alias users name
    lite: bool

    @property
    def short_name(self) -> str:
        return self.collection


from mmtools.index.backends import is_milvus_location  # noqa: E402,F401 (one definition; re-exported)


def parse_location(location: str) -> MilvusLocation:
    """``milvus://HOST[:PORT]/COLLECTION`` or ``milvus-lite://PATH.db/COLLECTION``; IndexFileError otherwise."""
    if location.startswith(LITE_SCHEME):
        folder, _, collection = location[len(LITE_SCHEME):].rpartition("/")
        if not folder.endswith(".db"):
            raise IndexFileError(f"{location} does not name a Milvus Lite file", hint="write milvus-lite://PATH.db/"
                                 "COLLECTION, e.g. milvus-lite://photos.db/photos")
        uri = os.path.abspath(os.path.expanduser(folder))
        lite = True
    elif location.startswith(SERVER_SCHEME):
        from urllib.parse import urlsplit

        parts = urlsplit("http://" + location[len(SERVER_SCHEME):])
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            port = None
        collection = parts.path.strip("/")
        if not parts.hostname or port is None or parts.query or parts.username:
            raise IndexFileError(f"{location} is not a Milvus address", hint="write milvus://HOST:PORT/COLLECTION "
                                 f"(credentials go in {TOKEN_VARIABLE})")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        uri = f"http://{host}:{port}"
        lite = False
    else:
        raise IndexFileError(f"{location} is not a Milvus location",
                             hint="write milvus://HOST:PORT/COLLECTION or milvus-lite://PATH.db/COLLECTION")
    if not _NAME.match(collection):
        raise IndexFileError(f"{location}: {collection!r} is not a Milvus collection name",
                             hint="a name is letters, digits and underscores, not starting with a digit")
    return MilvusLocation(location, uri, collection, lite)


def canonical_location(location: str) -> str:
    """The location with a Milvus Lite path made absolute (the same collection from any folder)."""
    where = parse_location(location)
    return f"{LITE_SCHEME}{where.uri}/{where.collection}" if where.lite else where.text


def field_expression(name: str) -> str:
    """The Milvus expression for a stored field (they live in the JSON field ``record``)."""
    return f"record[{string_literal(name)}]"


def string_literal(text: str) -> str:
    """A Milvus expression string literal (Milvus reads backslash escapes, and no raw line breaks)."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
               .replace("\t", "\\t"))
    return f'"{escaped}"'


def _ids_expression(ids: Iterable[str]) -> str:
    return f"id in [{', '.join(string_literal(item_id) for item_id in ids)}]"


# ------------------------------------------------------------------------------------------------ connections

_lite_lock = threading.Lock()
_lite_users: dict[str, int] = {}  # Milvus Lite folder -> open readers and writers in this process


def _import_pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError:
        raise MissingDependencyError("Milvus indexes need the pymilvus package", hint=INSTALL_HINT) from None
    # pymilvus and Milvus Lite log every failed call with its traceback; mmtools says what failed itself.
    for name in ("pymilvus", "milvus_lite"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return pymilvus


def _milvus_exception() -> type[BaseException]:
    return _import_pymilvus().MilvusException


@contextmanager
def _talking_to(where: MilvusLocation, doing: str) -> Iterator[None]:
    """Milvus's errors as one IndexFileError naming the collection."""
    error = _milvus_exception()
    try:
        yield
    except error as exc:
        message = getattr(exc, "message", "") or str(exc)
        if "connect" in message.lower() or "unavailable" in message.lower():
            raise _unreachable(where) from None
        raise IndexFileError(f"Milvus {where.text}: {doing} failed: {message}",
                             hint="check the collection with `mmtools index --info -o "
                                  f"{where.text}`") from None


def _unreachable(where: MilvusLocation) -> IndexFileError:
    return IndexFileError(f"cannot reach the Milvus server at {where.uri.removeprefix('http://')} for {where.text}",
                          hint="start Milvus there (README: Past one machine) or check the address; credentials "
                               f"go in {TOKEN_VARIABLE}")


def _connect(where: MilvusLocation, wait: float | None, on_wait: Callable[[], None] | None) -> Any:
    """A client for the location; for Milvus Lite, waits up to ``wait`` seconds (None: as long as it takes)
    for the file while another process has it open."""
    pymilvus = _import_pymilvus()
    if not where.lite:
        try:
            return pymilvus.MilvusClient(where.uri, token=os.environ.get(TOKEN_VARIABLE, ""),
                                         timeout=CONNECT_TIMEOUT_S)
        except pymilvus.MilvusException:
            raise _unreachable(where) from None
    try:
        import milvus_lite  # noqa: F401  (pymilvus's own message for a missing Milvus Lite is less clear)
    except ImportError:
        raise MissingDependencyError(f"{where.text} needs Milvus Lite", hint=INSTALL_HINT) from None
    deadline = None if wait is None else time.monotonic() + wait
    waited = False
    while True:
        with _lite_lock:
            try:
                client = pymilvus.MilvusClient(where.uri)
            except pymilvus.MilvusException:
                client = None
                if not _held_elsewhere(where.uri):
                    raise IndexFileError(f"cannot open Milvus Lite file {where.uri} for {where.text}",
                                         hint=f"is it a Milvus Lite folder? ({INSTALL_HINT})") from None
            if client is not None:
                _lite_users[where.uri] = _lite_users.get(where.uri, 0) + 1
                return client
        if deadline is not None and time.monotonic() >= deadline:
            waited_for = f" (waited {wait:g} s)" if wait else ""
            raise IndexFileError(f"Milvus Lite file {where.uri} is open in another process{waited_for}; Milvus "
                                 "Lite serves one process at a time",
                                 hint=f"wait for it to finish and run again; {MANY_WRITERS_HINT}")
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))


def _held_elsewhere(folder: str) -> bool:
    """Whether another process holds the Milvus Lite folder's lock."""
    import fcntl

    try:
        fd = os.open(os.path.join(folder, "LOCK"), os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _disconnect(where: MilvusLocation, client: Any) -> None:
    """Close the client; Milvus Lite's in-process server (and the file's lock) go with the last user."""
    client.close()
    if not where.lite:
        return
    with _lite_lock:
        users = _lite_users.get(where.uri, 1) - 1
        if users > 0:
            _lite_users[where.uri] = users
            return
        _lite_users.pop(where.uri, None)
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(where.uri)


# ------------------------------------------------------------------------------------------------ collections


class Described(NamedTuple):
    physical: str  # the collection behind the alias
    info: IndexInfo
    keeps_texts: bool  # has the full-text columns (collections from before the keyword channel do not)


def _describe(client: Any, where: MilvusLocation) -> Described | None:
    """The collection behind the alias and its mmtools info, or None when there is none."""
    with _talking_to(where, "looking up the collection"):
        if not client.has_collection(where.collection):
            return None
        described = client.describe_collection(where.collection)
    physical = described.get("collection_name", where.collection)
    text = (described.get("properties") or {}).get(INFO_PROPERTY)
    if text is None:
        raise IndexFileError(f"Milvus collection {where.text} was not made by mmtools (it has no "
                             f"{INFO_PROPERTY} property)", hint="name another collection")
    try:
        values = json.loads(text)
    except ValueError:
        raise IndexFileError(f"Milvus collection {where.text} holds unreadable mmtools info",
                             hint="rebuild it with mmtools index --rebuild") from None
    version = values.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise IndexFileError(f"Milvus collection {where.text} was written by a newer mmtools (format {version}; "
                             f"this mmtools reads up to {FORMAT_VERSION})", hint="upgrade mmtools")
    info = IndexInfo(**{k: v for k, v in values.items() if k in IndexInfo.__dataclass_fields__})
    fields = [field.get("name") for field in described.get("fields") or []]
    return Described(physical, info, milvus_fulltext.keeps_texts(fields))


def _full_text_version(client: Any, where: MilvusLocation) -> str | None:
    """None when the Milvus behind the client can keep full text (BM25 functions and TEXT_MATCH came with
    Milvus 2.5), else its version, to say why keyword search is off."""
    with _talking_to(where, "asking the server's version"):
        version = str(client.get_server_version())
    found = re.search(r"(\d+)\.(\d+)", version)
    if found is None or (int(found.group(1)), int(found.group(2))) >= FULL_TEXT_SINCE:
        return None  # unknown: try
    return version


def _info_property(info: IndexInfo) -> dict[str, str]:
    kept = {k: v for k, v in info.__dict__.items() if k not in ("count", "ntotal", "next_row", "faiss_bytes")}
    return {INFO_PROPERTY: json.dumps(kept)}


def _count(client: Any, where: MilvusLocation, physical: str) -> int:
    with _talking_to(where, "counting records"):
        rows = client.query(physical, filter="", output_fields=["count(*)"])
    return int(rows[0]["count(*)"]) if rows else 0


def _load(client: Any, where: MilvusLocation, physical: str) -> None:
    with _talking_to(where, "loading the collection"):
        client.load_collection(physical)  # Milvus Lite releases collections when the file is closed


def _index_params(info: IndexInfo) -> dict[str, int]:
    params = info.params
    if info.kind == "hnsw":
        return {"M": params["m"], "efConstruction": params["ef_construction"]}
    if info.kind == "ivf":
        return {"nlist": params["nlist"]}
    return {}


def _search_params(info: IndexInfo, k: int) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if info.kind == "hnsw":
        params["ef"] = max(info.params["ef_search"], k)
    elif info.kind == "ivf":
        params["nprobe"] = info.params["nprobe"]
    return {"metric_type": METRIC, "params": params}


def _iterate(client: Any, where: MilvusLocation, physical: str, fields: list[str]) -> Iterator[dict[str, Any]]:
    with _talking_to(where, "reading the collection"):
        iterator = client.query_iterator(physical, batch_size=1000, filter="", output_fields=fields)
    try:
        while True:
            with _talking_to(where, "reading the collection"):
                batch = iterator.next()
            if not batch:
                return
            yield from batch
    finally:
        iterator.close()


# ------------------------------------------------------------------------------------------------ reading


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
        self._client = _connect(self.location, wait, None)
        try:
            described = _describe(self._client, self.location)
            if described is None:
                raise IndexFileError(f"no index at {location} (the Milvus collection does not exist)",
                                     hint=f"build one with `mmtools embed-images DIR | mmtools index -o {location}`")
            self.collection, self.info, self.keeps_texts = described
            self._old_server = None if self.keeps_texts else _full_text_version(self._client, self.location)
            _load(self._client, self.location, self.collection)
            self.info.count = self.info.ntotal = _count(self._client, self.location, self.collection)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._client is not None:
            _disconnect(self.location, self._client)
            self._client = None

    def __enter__(self) -> "MilvusReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def signature(self) -> tuple:
        """What changes when a write changed the info or a rebuild replaced the collection."""
        described = _describe(self._client, self.location)
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
            chunk = _ids_expression(ids[start:start + AMONG_CHUNK])
            found = self._search(queries, k, min_score, f"({expression}) and {chunk}" if expression else chunk)
            merged = [sorted(a + b, key=lambda hit: -hit.score)[:k] for a, b in zip(merged, found)]
        return merged

    def _search(self, queries: Any, k: int, min_score: float | None, expression: str) -> list[list[Hit]]:
        with _talking_to(self.location, "search"):
            results = self._client.search(self.collection, data=queries.tolist(), anns_field="vector",
                                          limit=min(k, MAX_TOP_K), filter=expression, output_fields=["record"],
                                          search_params=_search_params(self.info, k))
        return [[Hit(hit["id"], float(hit["distance"]), hit["entity"]["record"]) for hit in hits
                 if min_score is None or hit["distance"] >= min_score] for hits in results]

    # -- full text (the keyword channel; see mmtools.index.milvus_fulltext)
    def has_texts(self, file_names: bool = False) -> bool:
        """Whether the collection holds texts for keyword search (file names count only with ``file_names``)."""
        if not self.keeps_texts:
            return False
        with _talking_to(self.location, "looking for texts"):
            return bool(self._client.query(self.collection, filter=milvus_fulltext.has_texts_condition(file_names),
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
            chunks = [_ids_expression(ids[start:start + AMONG_CHUNK]) for start in range(0, len(ids), AMONG_CHUNK)]
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
        column = milvus_fulltext.column_for(exact)
        wanted = k + len(skip)
        limit = min(MAX_TOP_K, 4 * wanted)
        kept, complete = self._checked(parsed, exact, column, ids or "", limit, skip)
        if len(kept) >= k or complete:
            return kept[:k]
        narrowed = milvus_fulltext.condition(parsed, exact) + (f" and {ids}" if ids else "")
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
        with _talking_to(self.location, "keyword search"):
            results = self._client.search(self.collection, data=[milvus_fulltext.query_text(parsed, exact)],
                                          anns_field=milvus_fulltext.SPARSE[column], limit=limit,
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
        for row in _iterate(self._client, self.location, self.collection, ["record"]):
            for _field, text in fulltext.texts_of(row["record"], self.info.text_fields):
                yield normalize_text(text)

    def scan(self) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """``(row, id, record)`` of every record (what --where's filters look at); rows are this reader's
        numbers for the ids, and ``search(among=...)`` takes them back."""
        for found in _iterate(self._client, self.location, self.collection, ["id", "record"]):
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
        for row in _iterate(self._client, self.location, self.collection, ["id"]):
            yield row["id"]

    def get(self, item_id: str) -> dict[str, Any] | None:
        """The stored record with this id, or None."""
        with _talking_to(self.location, "get"):
            rows = self._client.query(self.collection, filter=_ids_expression([canonical_item_id(item_id)]),
                                      output_fields=["record"])
        return rows[0]["record"] if rows else None

    def export(self, vector_format: str = "base64") -> Iterator[dict[str, Any]]:
        """Every stored record with its vector, as an embedding record (``mmtools index`` reads it back)."""
        import numpy as np

        model_fields = {EMBEDDING_MODEL: self.info.model}
        if self.info.fingerprint:
            model_fields[EMBEDDING_FINGERPRINT] = self.info.fingerprint
        for row in _iterate(self._client, self.location, self.collection, ["id", "vector", "record"]):
            vector = np.asarray(row["vector"], dtype=np.float32)
            yield {**row["record"], "id": row["id"], EMBEDDING: encode_vector(vector, vector_format), **model_fields}


# ------------------------------------------------------------------------------------------------ writing

SPOOL = """
CREATE TABLE pending (id TEXT PRIMARY KEY, vector BLOB NOT NULL, record BLOB NOT NULL, digest TEXT NOT NULL,
                      copied INTEGER NOT NULL DEFAULT 0);
CREATE TABLE removed (id TEXT PRIMARY KEY);
"""


class MilvusWriter:
    """Creates or updates a Milvus collection; the same interface as ``IndexWriter``. Nothing reaches Milvus
    until ``commit``; an exception in the ``with`` block discards what was spooled.

    ``lock_timeout`` and ``on_wait`` apply to a Milvus Lite file held by another process (a Milvus server takes
    many writers at once). ``compact`` asks Milvus to compact the collection after the write.

    ``text_fields`` are indexed for keyword search besides the usual texts, and remembered. A collection from
    before the keyword channel, or one given a new text field, is copied once into a new collection with
    every row's texts (the alias switches when the copy is complete, as for ``rebuild``); writes that other
    processes make to the old collection during that copy are not carried over, so run it alone.
    """

    def __init__(self, location: str, *, model: str | None = None, fingerprint: str | None = None,
                 kind: str | None = None, params: dict[str, int] | None = None, rebuild: bool = False,
                 compact: bool = False, lock_timeout: float | None = None,
                 on_wait: Callable[[], None] | None = None, text_fields: Any = (), root: Any = None):
        # --root applies to this run (relative paths of --sync); a collection does not record it
        self.root = None if root is None else os.path.abspath(root)
        self.location = parse_location(location)
        self.path = location
        self.summary = WriteSummary()
        self._compact = compact
        self._rebuild = rebuild
        self._info_changed = False  # the collection's mmtools info needs writing (not its records)
        self._recopy = False  # every stored row goes into a new collection (to gain text columns or fields)
        self._texts = True  # the collection written keeps texts (not on a Milvus before 2.5)
        text_fields = list(dict.fromkeys(text_fields))
        params = dict(params or {})
        self._check_layout(kind, params)
        self._spool = sqlite3.connect("")  # a private temporary file, deleted when closed
        self._spool.executescript(SPOOL)
        self._client = None
        try:
            self._client = _connect(self.location, lock_timeout, on_wait)
            old_server = _full_text_version(self._client, self.location)
            self._texts = old_server is None
            described = _describe(self._client, self.location)
            self._replaces = described.physical if described and rebuild else None  # switched over on commit
            if described is None or rebuild:
                kind = kind or "flat"
                self.collection = None
                self.info = IndexInfo(model=model or "", fingerprint=fingerprint or "", dim=0, kind=kind,
                                      params={**kinds.DEFAULT_PARAMS[kind], **params}, created_at=time.time(),
                                      text_fields=text_fields)
                self._info_changed = True
            else:
                self.collection, self.info, keeps_texts = described
                self._check_existing(model, fingerprint, kind, params)
                added = [name for name in text_fields if name not in self.info.text_fields]
                self.info.text_fields = [*self.info.text_fields, *added]
                self._recopy = self._texts and (bool(added) or not keeps_texts)
                self._texts = keeps_texts or self._recopy
                self._info_changed |= bool(added) and not self._recopy
                _load(self._client, self.location, self.collection)
            if old_server is not None and (described is None or rebuild or text_fields):  # once, not nightly
                self.summary.notes.append(f"this Milvus ({old_server}) keeps no full text (Milvus 2.5 or later "
                                          "does): the collection is searched by vector only")
        except BaseException:
            self.abort()
            raise

    def _check_layout(self, kind: str | None, params: dict[str, int]) -> None:
        if kind is not None and kind not in kinds.KINDS:
            raise IndexFileError(f"unknown index kind {kind!r}", hint=f"use one of {', '.join(kinds.KINDS)}")
        if kind is not None and kind not in INDEX_TYPES:
            raise IndexFileError(f"{self.path}: a Milvus collection is {', '.join(INDEX_TYPES)}, not {kind}",
                                 hint="use --kind hnsw or ivf for large collections")
        for key, value in params.items():
            if (reason := kinds.param_error(key, value)) is not None:
                raise IndexFileError(f"parameter {key}={value}: {reason}")
        applies = kinds.DEFAULT_PARAMS[kind or "flat"]
        unknown = sorted(set(params) - set(applies))
        if kind is not None and unknown:
            raise IndexFileError(f"parameter {unknown[0]!r} does not apply to a {kind} index",
                                 hint=f"{kind} takes: {', '.join(applies) or 'no parameters'}")

    def _check_existing(self, model: str | None, fingerprint: str | None, kind: str | None,
                        params: dict[str, int]) -> None:
        info = self.info
        if not models_match(info.model, info.fingerprint, model, fingerprint):
            reason = (f"holds vectors from model {info.model}, not {model}" if model != info.model
                      else model_mismatch(info.model, info.fingerprint, model, fingerprint))
            raise IndexFileError(f"index {self.path} {reason}", hint="use --rebuild to start over with the new model")
        if kind is not None and kind != info.kind:
            raise IndexFileError(f"index {self.path} is a {info.kind} index, not {kind}",
                                 hint="use --rebuild to change its kind")
        for key, value in params.items():
            if key not in info.params:
                raise IndexFileError(f"parameter {key!r} does not apply to {info.kind} index {self.path}")
            if key not in kinds.SEARCH_PARAMS and value != info.params[key]:
                raise IndexFileError(f"parameter {key!r} of index {self.path} is fixed when the index is built",
                                     hint="use --rebuild to build it again with the new value")
            self._info_changed |= info.params[key] != value
            info.params[key] = value

    # -- adding and removing
    def check(self, model: str | None, dim: int, fingerprint: str | None = None) -> None:
        """Raise RecordRejected unless a vector of ``dim`` from ``model`` fits this collection."""
        info = self.info
        if not models_match(info.model, info.fingerprint, model, fingerprint):
            if model == info.model:
                reason = model_mismatch(info.model, info.fingerprint, model, fingerprint)
                raise RecordRejected(f"embedding from {reason}")
            raise RecordRejected(f"embedding from model {model}, but index {self.path} holds model {info.model}")
        if info.dim and dim != info.dim:
            raise RecordRejected(f"embedding has {dim} dimensions, index {self.path} holds {info.dim}")

    def add(self, item_id: str, vector: Any, record: dict[str, Any], model: str | None = None,
            fingerprint: str | None = None) -> None:
        import numpy as np

        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        self.check(model, len(vector), fingerprint)
        item_id = canonical_item_id(item_id)
        blob = orjson.dumps(record)
        if len(item_id.encode("utf-8")) > MAX_ID_BYTES:
            raise RecordRejected(f"id is longer than the {MAX_ID_BYTES} bytes a Milvus key holds")
        if len(blob) > MAX_RECORD_BYTES:
            raise RecordRejected(f"stored fields take {len(blob)} bytes; a Milvus JSON value holds at most "
                                 f"{MAX_RECORD_BYTES}")
        info = self.info
        if not info.model:
            if not model:
                raise RecordRejected("record names no embedding_model and the index has none yet; pass --model")
            info.model = model
        elif model and model != info.model:
            info.model = model  # same fingerprint, new place: the model moved; remember where it is now
            self._info_changed = True
        if fingerprint and not info.fingerprint:
            info.fingerprint = fingerprint
            self._info_changed = True
        info.dim = info.dim or len(vector)
        unit = vector / max(float(np.linalg.norm(vector)), 1e-12)
        digest = hashlib.blake2b(unit.tobytes() + blob, digest_size=16).hexdigest()
        self._spool.execute("INSERT OR REPLACE INTO pending (id, vector, record, digest) VALUES (?, ?, ?, ?)",
                            (item_id, unit.tobytes(), blob, digest))
        self._spool.execute("DELETE FROM removed WHERE id = ?", (item_id,))

    def remove(self, item_ids: Iterable[str]) -> list[str]:
        """Remove records by id; returns the ids that were not in the index."""
        wanted = list(dict.fromkeys(item_ids))
        stored = self._stored_ids([canonical_item_id(i) for i in wanted])
        unknown = []
        for item_id in wanted:
            canonical = canonical_item_id(item_id)
            pending = self._spool.execute("DELETE FROM pending WHERE id = ?", (canonical,)).rowcount
            if canonical in stored:
                self._spool.execute("INSERT OR IGNORE INTO removed VALUES (?)", (canonical,))
            if pending or canonical in stored:
                self.summary.removed += 1
            else:
                unknown.append(item_id)
        return unknown

    def has(self, item_id: str) -> bool:
        item_id = canonical_item_id(item_id)
        if self._spool.execute("SELECT 1 FROM pending WHERE id = ?", (item_id,)).fetchone():
            return True
        return bool(self._stored_ids([item_id]))

    def stored(self) -> list[tuple[str, dict[str, Any]]]:
        """``(id, record)`` of every record in the collection as it stands in this write."""
        pending = {item_id: orjson.loads(blob) for item_id, blob in
                   self._spool.execute("SELECT id, record FROM pending")}
        removed = {item_id for (item_id,) in self._spool.execute("SELECT id FROM removed")}
        result = []
        if self.collection is not None and not self._rebuild:
            for row in _iterate(self._client, self.location, self.collection, ["id", "record"]):
                if row["id"] not in removed and row["id"] not in pending:
                    result.append((row["id"], row["record"]))
        return result + list(pending.items())

    def _stored_ids(self, item_ids: list[str]) -> set[str]:
        """Which of these ids the collection holds (and this write has not removed)."""
        if self.collection is None or self._rebuild or not item_ids:
            return set()
        found: set[str] = set()
        for start in range(0, len(item_ids), BATCH):
            with _talking_to(self.location, "looking up ids"):
                rows = self._client.query(self.collection, filter=_ids_expression(item_ids[start:start + BATCH]),
                                          output_fields=["id"])
            found.update(row["id"] for row in rows)
        removed = {item_id for (item_id,) in self._spool.execute("SELECT id FROM removed")}
        return found - removed

    # -- finishing
    def commit(self) -> IndexInfo:
        """Upsert what was spooled and delete what was removed; returns the collection's info."""
        try:
            if self._spool.execute("SELECT COUNT(*) FROM pending").fetchone()[0] == 0 and (
                    self.collection is None or self._rebuild):
                raise IndexFileError(f"no embeddings to index; {self.path} was not written")
            if self.collection is None or self._rebuild:
                self._fill_new_collection()
            elif self._recopy:
                self._copy_stored()
                self._replaces = self.collection
                self._fill_new_collection(compare_with=self.collection)
            else:
                self._write(self.collection, fresh=False)
                # A new generation for every write that changed records: warm servers open the collection
                # again (its count) and rebuild what they learnt from its texts (the accent restorer).
                summary = self.summary
                self._info_changed |= bool(summary.added or summary.replaced or summary.removed)
            if self._info_changed:
                self.info.updated_at = time.time()
                self.info.generation = uuid.uuid4().hex
                with _talking_to(self.location, "recording the index info"):
                    self._client.alter_collection_properties(self.collection, properties=_info_property(self.info))
            if self._compact:
                with _talking_to(self.location, "compaction"):
                    self._client.compact(self.collection)
                self.summary.compacted = True
            self.info.count = self.info.ntotal = _count(self._client, self.location, self.collection)
        except BaseException:
            self.abort()
            raise
        self.abort()  # nothing left to discard: closes the spool and the connection
        return self.info

    def _copy_stored(self) -> None:
        """Spool every stored record this write leaves alone, to go into the new collection as it is."""
        import numpy as np

        removed = {item_id for (item_id,) in self._spool.execute("SELECT id FROM removed")}
        copied = 0
        for row in _iterate(self._client, self.location, self.collection, ["id", "vector", "record", "digest"]):
            if row["id"] in removed:
                continue
            vector = np.asarray(row["vector"], dtype=np.float32).tobytes()
            copied += self._spool.execute("INSERT OR IGNORE INTO pending VALUES (?, ?, ?, ?, 1)",
                                          (row["id"], vector, orjson.dumps(row["record"]), row["digest"])).rowcount
        self.summary.notes.append(f"{copied} stored records copied into a new collection that keeps their texts "
                                  "for keyword search")

    def _fill_new_collection(self, compare_with: str | None = None) -> None:
        """Fill a collection of its own, then point the alias at it: readers see the old collection (or none)
        until the new one is complete. Another writer may have created the collection meanwhile: then this
        write goes into theirs."""
        physical = f"{self.location.collection}__{uuid.uuid4().hex[:8]}"
        self.info.generation = uuid.uuid4().hex
        self.info.updated_at = time.time()
        _create(self._client, self.location, physical, self.info, self._texts)
        try:
            self._write(physical, fresh=True, compare_with=compare_with)
            previous = self._replaces
            published = self._publish(physical, replace=previous is not None)
        except BaseException:
            with _talking_to(self.location, "dropping an unfinished collection"):
                self._client.drop_collection(physical)
            raise
        if published:
            self.collection, self._info_changed = physical, False
            if previous is not None:
                with _talking_to(self.location, "dropping the collection it replaced"):
                    self._client.drop_collection(previous)
            return
        with _talking_to(self.location, "dropping an unneeded collection"):
            self._client.drop_collection(physical)
        described = _describe(self._client, self.location)
        if described is None:
            raise IndexFileError(f"Milvus collection {self.path} disappeared while it was written", hint="run again")
        mine = self.info
        self.collection, self.info, self._texts = described
        self._info_changed = False  # theirs stands
        _load(self._client, self.location, self.collection)
        if not models_match(self.info.model, self.info.fingerprint, mine.model, mine.fingerprint) \
                or self.info.dim != mine.dim:
            raise IndexFileError(f"index {self.path} was created meanwhile by another writer with model "
                                 f"{self.info.model} ({self.info.dim} dimensions); nothing was written",
                                 hint="use --rebuild to start over with the new model")
        self.summary = WriteSummary(removed=self.summary.removed)
        self._write(self.collection, fresh=False)

    def _publish(self, physical: str, replace: bool) -> bool:
        """Point the alias at ``physical``; False when another writer's alias got there first."""
        error = _milvus_exception()
        with _talking_to(self.location, "naming the collection"):
            if replace:
                self._client.alter_alias(physical, self.location.collection)
                return True
            try:
                self._client.create_alias(physical, self.location.collection)
                return True
            except error:
                if self._client.has_collection(self.location.collection):
                    return False
                raise

    def _write(self, physical: str, fresh: bool, compare_with: str | None = None) -> None:
        """Upsert the spooled records that differ from the stored ones, then delete the removed ones. Into a
        ``fresh`` collection every record goes; ``compare_with`` is the one it replaces (for the counts)."""
        import numpy as np

        compared = compare_with or (None if fresh else physical)
        cursor = self._spool.execute("SELECT id, vector, record, digest, copied FROM pending ORDER BY id")
        while batch := cursor.fetchmany(BATCH):
            stored = {} if compared is None else self._digests(compared, [row[0] for row in batch if not row[4]])
            rows = []
            for item_id, vector, record, digest, copied in batch:
                before = stored.get(item_id)
                if copied or before == digest:
                    self.summary.unchanged += 1
                    if not fresh:
                        continue
                elif before is None:
                    self.summary.added += 1
                else:
                    self.summary.replaced += 1
                record = orjson.loads(record)
                texts = milvus_fulltext.columns(record, self.info.text_fields) if self._texts else {}
                rows.append({"id": item_id, "vector": np.frombuffer(vector, dtype=np.float32).tolist(),
                             "record": record, "digest": digest, **texts})
            if rows:
                with _talking_to(self.location, "upsert"):
                    self._client.upsert(physical, rows)
        if fresh:
            return
        removed = [item_id for (item_id,) in self._spool.execute("SELECT id FROM removed")]
        for start in range(0, len(removed), BATCH):
            with _talking_to(self.location, "delete"):
                self._client.delete(physical, filter=_ids_expression(removed[start:start + BATCH]))

    def _digests(self, physical: str, item_ids: list[str]) -> dict[str, str]:
        if not item_ids:
            return {}
        with _talking_to(self.location, "looking up ids"):
            rows = self._client.query(physical, filter=_ids_expression(item_ids), output_fields=["id", "digest"])
        return {row["id"]: row["digest"] for row in rows}

    def abort(self) -> None:
        """Discard what was spooled; the collection stays as it was (unless a commit had begun)."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._client is not None:
            _disconnect(self.location, self._client)
            self._client = None

    def __enter__(self) -> "MilvusWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _create(client: Any, where: MilvusLocation, physical: str, info: IndexInfo, texts: bool) -> None:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=info.dim)
    schema.add_field("record", DataType.JSON)
    schema.add_field("digest", DataType.VARCHAR, max_length=32)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type=INDEX_TYPES[info.kind], metric_type=METRIC,
                    params=_index_params(info))
    if texts:
        milvus_fulltext.add_to_schema(schema, index)
    with _talking_to(where, "creating the collection"):
        # Strong consistency: a search right after a write sees it, as with the FAISS index.
        client.create_collection(physical, schema=schema, index_params=index, consistency_level="Strong",
                                 properties=_info_property(info))
