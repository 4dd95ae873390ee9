"""Full-text search over the records' texts: SQLite FTS5 (BM25) tables inside the index's metadata file.

The texts live in the same SQLite file as the records and are written in the same transaction, so they
share the index's one commit point: a killed writer leaves the old texts with the old records. They are
keyed by record ``id``, never by a FAISS row.

What is indexed: ``captions``/``caption``/``text``, ``ocr_text``, ``tags`` (strings, or the labels of
``{"label", "score"}`` tags), the file name of ``path``, and any extra field named when the index was built
(``text_fields``; remembered in the index, so later updates index them too). Each text is one FTS row, so a
phrase never runs from one caption into the next.

Vietnamese: every text is stored twice, as written (NFC, one tone-mark placement) and folded (lower case, no
diacritics, ``đ`` as ``d``; see ``mmtools.text.accents``), both tokenised one token per syllable. A query
matches when each of its terms is in the folded text, so ``xe hoi`` finds ``xe hơi``; records that hold every
term as typed (accents and all) come first; for a query typed without accents, the records that hold its
restored form come next (restored from the matching texts: "bong chay" finds "bóng chày" before "bóng chạy"
in a collection about baseball); then the other folded matches; each group in BM25 order. A quoted part
of a query (``"xe hơi" đỏ``) must match as a phrase; the other words may stand anywhere in the text.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Iterator, Sequence

from mmtools.text.accents import SYLLABLE, fold
from mmtools.text.normalize import normalize_text

TEXT_FIELDS = ("captions", "caption", "text", "ocr_text", "tags")
FILE_NAME = "path"  # the file name of this field is indexed too

SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS fulltext USING fts5(exact, folded, tokenize='unicode61 remove_diacritics 0');
CREATE TABLE IF NOT EXISTS fulltext_docs (doc INTEGER PRIMARY KEY, id TEXT NOT NULL, field TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS fulltext_docs_by_id ON fulltext_docs (id);
CREATE TABLE IF NOT EXISTS fulltext_fields (name TEXT PRIMARY KEY);
"""

SNIPPET_WORDS = 24  # words shown around the first match of a long text
HIGHLIGHT = ("[", "]")


@dataclass
class KeywordHit:
    id: str
    score: float  # BM25, higher is better
    field: str  # the field whose text matched
    snippet: str  # that text with the matched words in [brackets]
    exact: bool  # every term matched as typed, accents included
    record: dict[str, Any] | None = None  # the stored record, when the search read it anyway


# ------------------------------------------------------------------------------------------------ texts


def texts_of(record: dict[str, Any], extra_fields: Sequence[str] = ()) -> list[tuple[str, str]]:
    """``(field, text)`` for every text of ``record`` that full-text search indexes."""
    found = []
    for name in dict.fromkeys((*TEXT_FIELDS, *extra_fields)):
        value = record.get(name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):  # tags as {"label", "score"}
                item = item.get("label")
            if isinstance(item, (int, float)) and not isinstance(item, bool) and name in extra_fields:
                item = str(item)
            if isinstance(item, str) and item.strip():
                found.append((name, item))
    path = record.get(FILE_NAME)
    if isinstance(path, str) and path.strip():
        found.append(("file_name", os.path.basename(path.rstrip("/"))))
    return found


# ------------------------------------------------------------------------------------------------ writing


class FullTextWriter:
    """Keeps the full-text tables of a metadata database being written in step with its records."""

    def __init__(self, db: sqlite3.Connection, extra_fields: Sequence[str],
                 stored: Callable[[], Iterable[tuple[str, dict[str, Any]]]]):
        self._db = db
        new = not _has_tables(db)
        for statement in SCHEMA.split(";"):  # not executescript: it would commit the writer's transaction
            if statement.strip():
                db.execute(statement)
        known = [name for (name,) in db.execute("SELECT name FROM fulltext_fields ORDER BY name")]
        added = [name for name in dict.fromkeys(extra_fields) if name not in known]
        db.executemany("INSERT INTO fulltext_fields (name) VALUES (?)", [(name,) for name in added])
        self.fields = tuple(known + added)
        self.changed = new or bool(added)
        if self.changed:  # an index from before full text, or a new --text-field: index what it holds
            db.execute("DELETE FROM fulltext")
            db.execute("DELETE FROM fulltext_docs")
            for item_id, record in stored():
                self.put(item_id, record)

    def put(self, item_id: str, record: dict[str, Any]) -> None:
        """Index the texts of the record with this id, replacing what was indexed for it before."""
        self.drop(item_id)
        for field, text in texts_of(record, self.fields):
            doc = self._db.execute("INSERT INTO fulltext_docs (id, field) VALUES (?, ?)", (item_id, field)).lastrowid
            self._db.execute("INSERT INTO fulltext (rowid, exact, folded) VALUES (?, ?, ?)",
                             (doc, normalize_text(text), fold(text)))

    def drop(self, item_id: str) -> None:
        docs = self._db.execute("SELECT doc FROM fulltext_docs WHERE id = ?", (item_id,)).fetchall()
        if docs:
            self._db.executemany("DELETE FROM fulltext WHERE rowid = ?", docs)
            self._db.execute("DELETE FROM fulltext_docs WHERE id = ?", (item_id,))


def _has_tables(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'fulltext_docs'").fetchone() is not None


# ------------------------------------------------------------------------------------------------ reading


def has_texts(db: sqlite3.Connection, file_names: bool = False) -> bool:
    """Whether the index holds texts for full-text search (file names count only with ``file_names``)."""
    where = "" if file_names else " WHERE field != 'file_name'"
    return _has_tables(db) and db.execute(f"SELECT 1 FROM fulltext_docs{where} LIMIT 1").fetchone() is not None


def stored_texts(db: sqlite3.Connection) -> Iterator[str]:
    """Every indexed text, as written (e.g. to learn a collection's words)."""
    if _has_tables(db):
        for (text,) in db.execute("SELECT exact FROM fulltext"):
            yield text


@dataclass(frozen=True)
class KeywordQuery:
    """A query as terms: each a tuple of syllables (several for a quoted phrase), as typed and folded."""

    exact: tuple[tuple[str, ...], ...]
    folded: tuple[tuple[str, ...], ...]

    @classmethod
    def parse(cls, text: str) -> "KeywordQuery":
        terms: list[tuple[str, ...]] = []
        for quoted, bare in re.findall(r'"([^"]*)"?|([^"]+)', normalize_text(text, lowercase=True)):
            words = tuple(SYLLABLE.findall(quoted or bare))
            if quoted and words:
                terms.append(words)
            elif bare:
                terms.extend((word,) for word in words)
        return cls(tuple(terms), tuple(tuple(fold(w) for w in term) for term in terms))

    def __bool__(self) -> bool:
        return bool(self.exact)

    def match(self, column: str) -> str:
        terms = self.exact if column == "exact" else self.folded
        return " AND ".join(f'{column} : "{" ".join(term)}"' for term in terms)


def matching_text(texts: Iterable[tuple[str, str]], query: KeywordQuery, exact: bool) -> tuple[str, str] | None:
    """The first ``(field, text)`` that holds every term of ``query`` (a phrase's words in order), as typed
    (accents and all, any case) or folded: what an FTS5 match on one text means, for a backend that can
    only narrow the candidates (Milvus)."""
    terms = query.exact if exact else query.folded
    for field, text in texts:
        words = tuple(exact_words(text) if exact else folded_words(text))
        if all(_holds(words, term) for term in terms):
            return field, text
    return None


def exact_words(text: str) -> list[str]:
    """The syllables of ``text`` as an exact match compares them: NFC, one tone-mark placement, lower case."""
    return SYLLABLE.findall(normalize_text(text, lowercase=True))


def folded_words(text: str) -> list[str]:
    return SYLLABLE.findall(fold(text))


def _holds(words: tuple[str, ...], term: tuple[str, ...]) -> bool:
    return any(words[start:start + len(term)] == term for start in range(len(words) - len(term) + 1))


RESTORE_FROM = 2000  # matching texts a query typed without accents learns its restored meaning from


def search(db: sqlite3.Connection, query: str, k: int, among: Collection[str] | None = None) -> list[KeywordHit]:
    """The ``k`` best records for ``query`` (only ids in ``among``, when given): exact matches first; for a
    query typed without accents, matches of its restored form ("bóng chày") before other words that fold
    the same ("bóng chạy"); then every folded match. Each group in BM25 order."""
    parsed = KeywordQuery.parse(query)
    if not parsed or k <= 0 or not _has_tables(db):
        return []
    passes = [(parsed, "exact", True)]
    restored = restored_terms(db, query, parsed)
    if restored is not None:
        passes.append((restored, "exact", False))
    passes.append((parsed, "folded", False))
    hits: dict[str, KeywordHit] = {}
    sql = ("SELECT fulltext_docs.id, fulltext_docs.field, fulltext.exact, rank FROM fulltext "
           "JOIN fulltext_docs ON fulltext_docs.doc = fulltext.rowid WHERE fulltext MATCH ? ORDER BY rank")
    for terms, column, exact in passes:
        for item_id, field, text, rank in db.execute(sql, (terms.match(column),)):
            if item_id in hits or (among is not None and item_id not in among):
                continue  # a record's best text counts; an earlier pass saw it first
            hits[item_id] = KeywordHit(item_id, -float(rank), field, snippet(text, parsed), exact)
            if len(hits) >= k:
                return list(hits.values())
    return list(hits.values())


def restored_terms(db: sqlite3.Connection, query: str, parsed: KeywordQuery) -> KeywordQuery | None:
    """The query's terms with their accents put back, for a query typed without any (else None): restored by
    the general model plus the texts that match it folded, so the collection's own meaning of "bong chay"
    wins ("bóng chày" in a sports collection)."""
    from mmtools.text.accents import has_accents

    if has_accents(query):
        return None
    rows = db.execute("SELECT fulltext.exact FROM fulltext WHERE fulltext MATCH ? LIMIT ?",
                      (parsed.match("folded"), RESTORE_FROM)).fetchall()
    if not rows:
        return None
    from mmtools.text.restore import build_restorer

    restorer = build_restorer(text for (text,) in rows)
    # In context, as a fragment: the words of a query need not begin or end a caption.
    forms = iter(restorer.restore_syllables([word for term in parsed.exact for word in term], edges=False))
    terms = tuple(tuple(next(forms) for _ in term) for term in parsed.exact)
    if terms == parsed.exact:
        return None
    return KeywordQuery(terms, parsed.folded)


def snippet(text: str, query: KeywordQuery | str) -> str:
    """``text`` with the words that match ``query`` in brackets, cut around the first match when long."""
    parsed = KeywordQuery.parse(query) if isinstance(query, str) else query
    words = list(SYLLABLE.finditer(text))
    folded = [fold(word.group()) for word in words]
    marked = [False] * len(words)
    for term in parsed.folded:
        for start in range(len(words) - len(term) + 1):
            if tuple(folded[start:start + len(term)]) == term:
                marked[start:start + len(term)] = [True] * len(term)
    if not any(marked):
        return text
    first = marked.index(True)
    begin = 0 if len(words) <= SNIPPET_WORDS else max(0, min(first - SNIPPET_WORDS // 3,
                                                             len(words) - SNIPPET_WORDS))
    end = min(len(words), begin + SNIPPET_WORDS)
    start_char = 0 if begin == 0 else words[begin].start()
    end_char = len(text) if end == len(words) else words[end - 1].end()
    pieces, at = [], start_char
    for i in range(begin, end):
        if marked[i] and (i == begin or not marked[i - 1]):
            pieces.append(text[at:words[i].start()] + HIGHLIGHT[0])
            at = words[i].start()
        if marked[i] and (i == end - 1 or not marked[i + 1]):
            pieces.append(text[at:words[i].end()] + HIGHLIGHT[1])
            at = words[i].end()
    pieces.append(text[at:end_char])
    return ("…" if begin > 0 else "") + "".join(pieces) + ("…" if end < len(words) else "")
