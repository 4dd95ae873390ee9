"""The accent restorer's language model: syllable n-gram counts, compiled once into a small file.

``NgramModel`` holds the counts and what the Witten-Bell estimate needs of each context (how often it was
followed by anything, by how many different syllables), plus each folded syllable's accented forms, most
frequent first. ``general_model`` counts the sources of ``mmtools.text.accent_corpus`` once, writes the
model into mmtools' cache (``accents/model-KEY.sqlite``, an SQLite file; KEY changes with the sources' files and this
format) and later opens it from there in milliseconds, reading only the entries a query needs. The file is written beside
its final name and renamed into place, so a process killed while writing leaves no half-written model; a
model file that cannot be read is counted again and replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from mmtools.text.accents import fold

log = logging.getLogger("mmtools")

FORMAT = 3  # of the compiled file: a new one whenever what it holds or how it is counted changes
MAX_CANDIDATES = 12  # accented forms tried per syllable, most frequent first
KEEP_MODELS = 4  # compiled models kept in the cache (the general one, and some with --learn files)
UNIGRAM_FLOOR = 0.01  # added to every syllable's count: an unseen one is unlikely, not impossible
MEMO_LIMIT = 200_000  # probabilities and table entries remembered per model


@dataclass
class NgramCounts:
    unigrams: Counter = field(default_factory=Counter)
    bigrams: Counter = field(default_factory=Counter)
    trigrams: Counter = field(default_factory=Counter)

    def add_sentence(self, syllables: list[str], weight: float = 1.0, edges: bool = True) -> None:
        """Count one run of lower-case syllables (``edges``: it is a whole sentence, so count its ends)."""
        seq = [NgramModel.START, NgramModel.START, *syllables, NgramModel.END] if edges else syllables
        for word in syllables:
            self.unigrams[word] += weight
        if edges:  # the end is predicted like a syllable: P(end | "hoa sen") needs its count
            self.unigrams[NgramModel.END] += weight
        for a, b in zip(seq, seq[1:]):
            self.bigrams[a, b] += weight
        for a, b, c in zip(seq, seq[1:], seq[2:]):
            self.trigrams[a, b, c] += weight


class NgramModel:
    """Counts, and what the Witten-Bell estimate needs of each context; each table is a mapping with ``get``
    (a dict, a table of the compiled SQLite file, or a collection's counts summed over them)."""

    START, END = "<s>", "</s>"

    def __init__(self, unigrams, bigrams, trigrams, after1, after2, forms, total: float, vocabulary: int):
        self.unigrams, self.bigrams, self.trigrams = unigrams, bigrams, trigrams
        self.after1 = after1  # syllable -> (count of what follows it, number of different followers)
        self.after2 = after2  # (a, b) -> the same for a pair
        self.forms = forms  # folded syllable -> its accented forms, most frequent first
        self.total = total or 1.0
        self.vocabulary = vocabulary + 1
        self._memo: dict[tuple[str, str, str], float] = {}

    # --------------------------------------------------------------------------------------------- building

    @classmethod
    def from_counts(cls, counts: NgramCounts) -> "NgramModel":
        after1, after2 = _contexts(counts)
        unigrams = dict(counts.unigrams)
        return cls(unigrams, dict(counts.bigrams), dict(counts.trigrams), after1, after2, _forms(unigrams),
                   sum(unigrams.values()), len(unigrams))

    def with_counts(self, extra: NgramCounts, weight: float) -> "NgramModel":
        """A new model: this one's counts plus ``extra``'s times ``weight`` (this one is left as it is)."""
        after1, after2 = _contexts(extra)
        unigrams = Summed(self.unigrams, extra.unigrams, weight)
        forms = {}
        for key in {fold(word) for word in extra.unigrams}:
            words = set(self.forms.get(key, ())) | {w for w in extra.unigrams if fold(w) == key}
            forms[key] = sorted(words, key=lambda w: (-unigrams.get(w, 0.0), w))[:MAX_CANDIDATES]
        new = sum(1 for word in extra.unigrams if not self.unigrams.get(word))
        return NgramModel(unigrams, Summed(self.bigrams, extra.bigrams, weight),
                          Summed(self.trigrams, extra.trigrams, weight), Summed(self.after1, after1, weight),
                          Summed(self.after2, after2, weight), Layered(forms, self.forms),
                          self.total + weight * sum(extra.unigrams.values()), self.vocabulary - 1 + new)

    # --------------------------------------------------------------------------------------------- using

    def log_probability(self, a: str, b: str, c: str) -> float:
        """log P(c | a b), Witten-Bell: each context keeps the share its evidence earns, the rest goes to
        the shorter context."""
        key = (a, b, c)
        memo = self._memo.get(key)
        if memo is not None:
            return memo
        p = (self.unigrams.get(c, 0.0) + UNIGRAM_FLOOR) / (self.total + UNIGRAM_FLOOR * self.vocabulary)
        seen = self.after1.get(b)
        if seen:
            total, types = seen
            p = (self.bigrams.get((b, c), 0.0) + types * p) / (total + types)
        seen = self.after2.get((a, b))
        if seen:
            total, types = seen
            p = (self.trigrams.get(key, 0.0) + types * p) / (total + types)
        if len(self._memo) > MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = result = math.log(p)
        return result

    def candidates(self, syllable: str) -> list[str]:
        return self.forms.get(fold(syllable)) or [syllable]

    # --------------------------------------------------------------------------------------------- storing

    def save(self, path: Path) -> None:
        """Write the model as an SQLite file at ``path`` (which must not exist yet)."""
        import sqlite3

        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID")
            for table in ("unigrams", "bigrams", "trigrams"):
                db.execute(f"CREATE TABLE {table} (key TEXT PRIMARY KEY, count REAL) WITHOUT ROWID")
            for table in ("after1", "after2"):
                db.execute(f"CREATE TABLE {table} (key TEXT PRIMARY KEY, total REAL, types INTEGER) WITHOUT ROWID")
            db.execute("CREATE TABLE forms (key TEXT PRIMARY KEY, forms TEXT) WITHOUT ROWID")
            db.executemany("INSERT INTO meta VALUES (?, ?)", [("format", FORMAT), ("total", self.total),
                                                              ("vocabulary", self.vocabulary - 1)])
            for table in ("unigrams", "bigrams", "trigrams"):
                db.executemany(f"INSERT INTO {table} VALUES (?, ?)",
                               ((_joined(k), v) for k, v in getattr(self, table).items()))
            for table in ("after1", "after2"):
                db.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)",
                               ((_joined(k), t, n) for k, (t, n) in getattr(self, table).items()))
            db.executemany("INSERT INTO forms VALUES (?, ?)", ((k, " ".join(v)) for k, v in self.forms.items()))
            db.commit()

    @classmethod
    def open(cls, path: Path) -> "NgramModel":
        """The model of a compiled file: nothing is read until a query needs it."""
        import sqlite3

        db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        try:
            meta = dict(db.execute("SELECT name, value FROM meta"))
            if meta.get("format") != FORMAT:
                raise ValueError("not a compiled accent model of this version")
            tables = [Table(db, name, "count") for name in ("unigrams", "bigrams", "trigrams")]
            tables += [Table(db, name, "total, types") for name in ("after1", "after2")]
            forms = Table(db, "forms", "forms", convert=str.split)
            return cls(*tables, forms, float(meta["total"]), int(meta["vocabulary"]))
        except Exception:
            db.close()
            raise


class Table:
    """One table of a compiled model, read key by key (each key once)."""

    def __init__(self, db, name: str, columns: str, convert=None):
        self._db, self._convert = db, convert
        self._query = f"SELECT {columns} FROM {name} WHERE key = ?"
        self._read: dict = {}

    def get(self, key, default=None):
        try:
            value = self._read[key]
            return default if value is None else value
        except KeyError:
            pass
        row = self._db.execute(self._query, (_joined(key),)).fetchone()
        value = None if row is None else (row if len(row) > 1 else row[0])
        if value is not None and self._convert is not None:
            value = self._convert(value)
        if len(self._read) > MEMO_LIMIT:
            self._read.clear()
        self._read[key] = value
        return default if value is None else value


class Summed:
    """A table plus a collection's counts times a weight (numbers, or (total, types) pairs)."""

    def __init__(self, base, extra: dict, weight: float):
        self.base, self.extra, self.weight = base, extra, weight

    def get(self, key, default=None):
        mine, theirs = self.base.get(key), self.extra.get(key)
        if theirs is None:
            return default if mine is None else mine
        if isinstance(theirs, tuple):
            total, types = mine or (0.0, 0)
            return (total + self.weight * theirs[0], types + theirs[1])
        return (mine or 0.0) + self.weight * theirs


class Layered:
    """The first table's entry where it has one, else the second's."""

    def __init__(self, first: dict, second):
        self.first, self.second = first, second

    def get(self, key, default=None):
        found = self.first.get(key)
        return found if found is not None else self.second.get(key, default)


def _joined(key) -> str:
    return key if isinstance(key, str) else " ".join(key)


def _contexts(counts: NgramCounts) -> tuple[dict, dict]:
    after1: dict = {}
    for (a, _b), count in counts.bigrams.items():
        total, types = after1.get(a, (0.0, 0))
        after1[a] = (total + count, types + 1)
    after2: dict = {}
    for (a, b, _c), count in counts.trigrams.items():
        total, types = after2.get((a, b), (0.0, 0))
        after2[a, b] = (total + count, types + 1)
    return after1, after2


def _forms(unigrams: dict) -> dict:
    forms: dict[str, list[str]] = defaultdict(list)
    for word in unigrams:
        forms[fold(word)].append(word)
    return {key: sorted(words, key=lambda w: (-unigrams[w], w))[:MAX_CANDIDATES] for key, words in forms.items()}


# ------------------------------------------------------------------------------------------------ compiled once


def count_sources(learn: tuple[str, ...] = ()) -> NgramCounts:
    """Count every source of the general model (``accent_corpus.sources``)."""
    from mmtools.text import accent_corpus

    counts = NgramCounts()
    found = accent_corpus.sources(list(learn))
    for source in found:
        try:
            accent_corpus.count_source(source, counts)
        except (OSError, ValueError) as error:
            log.warning("cannot learn accents from %s (%s): %s; going on without it", source.path, source.kind,
                        getattr(error, "strerror", None) or error)
    if not any(source.kind in ("lexicon", "wordfreq") for source in found):
        log.warning("neither underthesea's lexicon nor wordfreq's Vietnamese list was found; accents are "
                    "restored from fewer words (pip install underthesea wordfreq)")
    return counts


def model_key(learn: tuple[str, ...] = ()) -> str:
    from mmtools.text.accent_corpus import sources

    identity = (FORMAT, [source.identity() for source in sources(list(learn))])
    return hashlib.sha256(repr(identity).encode("utf-8")).hexdigest()[:16]


def model_path(key: str) -> Path:
    from mmtools.paths import cache_dir

    return cache_dir() / "accents" / f"model-{key}.sqlite"


def general_model(learn: tuple[str, ...] = ()) -> NgramModel:
    """The general model (plus the user's ``learn`` files), from the cache or counted and stored there; the
    same object again while its sources stay as they are."""
    for path in learn:
        if not os.path.isfile(path):
            from mmtools.errors import MmtoolsError

            raise MmtoolsError(f"cannot read {path}: no such file", hint="give a UTF-8 text file to learn from")
    key = model_key(learn)
    try:
        path = model_path(key)
    except OSError as error:  # no cache folder can be made: count every time
        log.debug("no cache for the accent model: %s", error)
        path = None
    return _model(key, path, learn)


@lru_cache(maxsize=4)
def _model(_key: str, path: Path | None, learn: tuple[str, ...]) -> NgramModel:
    if path is None:
        return NgramModel.from_counts(count_sources(learn))
    if path.exists():
        try:
            return NgramModel.open(path)
        except Exception as error:  # noqa: BLE001 - sqlite3.DatabaseError and kin: count it again
            log.warning("the compiled accent model %s cannot be read (%s); building it again", path, error)
    model = NgramModel.from_counts(count_sources(learn))
    _store(model, path)
    return model


def _store(model: NgramModel, path: Path) -> None:
    """Write the compiled model atomically (a reader sees the old file or the new one), keeping the newest few."""
    from mmtools.records import temp_path_beside, replace_atomically

    try:
        tmp = temp_path_beside(path)
        try:
            tmp.unlink()
            model.save(tmp)
            replace_atomically(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        others = sorted(path.parent.glob("model-*.sqlite"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in others[KEEP_MODELS:]:
            old.unlink(missing_ok=True)
    except OSError as error:  # a read-only cache: the model still works, it is counted again next time
        log.debug("cannot store the accent model in %s: %s", path, error)
