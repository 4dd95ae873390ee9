"""Putting the accents back into Vietnamese typed without them ("xe hoi mau do" -> "xe hơi màu đỏ").

A syllable-level trigram language model, decoded with Viterbi: each unaccented syllable may be any of the
accented syllables that fold to it (``mmtools.text.accents.fold``) and were seen in training, and the most
likely sequence wins. Probabilities interpolate trigram, bigram and unigram estimates (Jelinek-Mercer, with
the weight of an unseen context passed down), so a syllable the context says nothing about still gets its
most frequent form.

What it learns from ships offline: underthesea's lexicon (Viet74K, about 74,000 words: syllable pairs within
words) and the VLSP 2013 sentences its part-of-speech model was tested on (about 66,000 words of news text),
both in the installed underthesea package. Given a collection's own texts (an index's captions, OCR text
and tags), their counts are added with a weight, so a collection's words and phrasings win over the news.

Text that already carries accents is left as it is; so are syllables the model has never seen accented
(English words, names), digits and punctuation. Case is kept: "Ha Noi" -> "Hà Nội".
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

from mmtools.text.accents import fold, has_accents
from mmtools.text.normalize import normalize_text

log = logging.getLogger("mmtools")

START, END = "<s>", "</s>"
COLLECTION_WEIGHT = 4.0  # a collection's counts weigh this many times the general corpus's
LEXICON_WEIGHT = 1.0  # a lexicon word counts as often as this many occurrences in running text
LAMBDAS = (0.6, 0.3, 0.1)  # trigram, bigram, unigram
MAX_CANDIDATES = 12  # accented forms tried per syllable, most frequent first

_WORD = re.compile(r"[^\W\d_]+")
# Where a sentence's context ends: any punctuation but the hyphen and apostrophe inside words.
_BREAK = re.compile(r"[^\w\s'\-]|\d+")

_LEXICON = "corpus/data/Viet74K.txt"
_SENTENCES = "pipeline/pos_tag/models/pos_crf_vlsp2013_20230303/test_output.txt"


@dataclass
class NgramCounts:
    unigrams: Counter = field(default_factory=Counter)
    bigrams: Counter = field(default_factory=Counter)
    trigrams: Counter = field(default_factory=Counter)

    def add_sentence(self, syllables: list[str], weight: float = 1.0, edges: bool = True) -> None:
        """Count one run of lower-case syllables (``edges``: it is a whole sentence, so count its ends)."""
        seq = [START, START, *syllables, END] if edges else syllables
        for word in syllables:
            self.unigrams[word] += weight
        for a, b in zip(seq, seq[1:]):
            self.bigrams[a, b] += weight
        for a, b, c in zip(seq, seq[1:], seq[2:]):
            self.trigrams[a, b, c] += weight

    def add(self, other: "NgramCounts", weight: float = 1.0) -> None:
        for mine, theirs in ((self.unigrams, other.unigrams), (self.bigrams, other.bigrams),
                             (self.trigrams, other.trigrams)):
            for key, count in theirs.items():
                mine[key] += weight * count


def sentences_of(text: str) -> Iterator[list[str]]:
    """Runs of lower-case syllables between punctuation marks (each a context of its own)."""
    for piece in _BREAK.split(normalize_text(text, lowercase=True)):
        words = _WORD.findall(piece)
        if words:
            yield words


def count_texts(texts: Iterable[str]) -> NgramCounts:
    counts = NgramCounts()
    for text in texts:
        for words in sentences_of(text):
            counts.add_sentence(words)
    return counts


# ------------------------------------------------------------------------------------------------ the model


class AccentRestorer:
    """Restores accents with a trigram model over syllables; see the module docstring."""

    def __init__(self, counts: NgramCounts):
        self.counts = counts
        self.total = sum(counts.unigrams.values()) or 1.0
        self.vocabulary = len(counts.unigrams) + 1
        self.history = Counter()  # how often each syllable pair is followed by anything
        for (a, b, _c), count in counts.trigrams.items():
            self.history[a, b] += count
        self.following = Counter()
        for (a, _b), count in counts.bigrams.items():
            self.following[a] += count
        forms: dict[str, list[str]] = defaultdict(list)
        for word in counts.unigrams:
            forms[fold(word)].append(word)
        self.forms = {key: sorted(words, key=lambda w: -counts.unigrams[w])[:MAX_CANDIDATES]
                      for key, words in forms.items()}

    def log_probability(self, a: str, b: str, c: str) -> float:
        """log P(c | a b): the weight of an unseen context goes to the shorter ones."""
        l3, l2, l1 = LAMBDAS
        probability, left = 0.0, 1.0
        history = self.history.get((a, b), 0.0)
        if history:
            probability += l3 * self.counts.trigrams.get((a, b, c), 0.0) / history
            left -= l3
        following = self.following.get(b, 0.0)
        if following:
            share = left * l2 / (l2 + l1)
            probability += share * self.counts.bigrams.get((b, c), 0.0) / following
            left -= share
        unigram = (self.counts.unigrams.get(c, 0.0) + 0.01) / (self.total + 0.01 * self.vocabulary)
        return math.log(probability + left * unigram)

    def candidates(self, syllable: str) -> list[str]:
        return self.forms.get(fold(syllable), [syllable])

    def restore_syllables(self, syllables: list[str]) -> list[str]:
        """The most likely accented forms of a run of lower-case unaccented syllables (Viterbi)."""
        states: dict[tuple[str, str], tuple[float, tuple[str, ...]]] = {(START, START): (0.0, ())}
        for syllable in syllables:
            choices = self.candidates(syllable)
            advanced: dict[tuple[str, str], tuple[float, tuple[str, ...]]] = {}
            for (a, b), (score, path) in states.items():
                for c in choices:
                    total = score + self.log_probability(a, b, c)
                    if (b, c) not in advanced or total > advanced[b, c][0]:
                        advanced[b, c] = (total, path + (c,))
            states = advanced
        best = max(states.items(), key=lambda item: item[1][0] + self.log_probability(*item[0], END))
        return list(best[1][1])

    def restore(self, text: str) -> str:
        """``text`` with accents put back; text that has accents already comes back as it was."""
        if has_accents(text):
            return text
        pieces: list[str] = []
        at = 0
        for piece in _pieces(text):
            start, end = piece
            words = list(_WORD.finditer(text, start, end))
            if not words:
                continue
            restored = self.restore_syllables([w.group().lower() for w in words])
            for word, form in zip(words, restored):
                pieces.append(text[at:word.start()])
                pieces.append(_with_case_of(word.group(), form))
                at = word.end()
        pieces.append(text[at:])
        return "".join(pieces)

    def restore_many(self, texts: Iterable[str]) -> list[str]:
        return [self.restore(text) for text in texts]

    def alternatives(self, text: str, n: int = 3) -> list[tuple[str, float]]:
        """The likeliest restorations of ``text``, best first, each with its weight (the weights sum to 1).

        One entry when the model is sure (or the text has accents already); up to ``n`` when the best
        restorations are close, so that a search can encode each and fuse their rankings by weight.
        """
        return [(self.restore(text), 1.0)]


class MostFrequentForm(AccentRestorer):
    """The baseline: every syllable becomes its most frequent accented form, whatever its neighbours."""

    def restore_syllables(self, syllables: list[str]) -> list[str]:
        return [self.candidates(syllable)[0] for syllable in syllables]


def _pieces(text: str) -> Iterator[tuple[int, int]]:
    """Spans of ``text`` between context breaks (punctuation, digits)."""
    at = 0
    for match in _BREAK.finditer(text):
        yield at, match.start()
        at = match.end()
    yield at, len(text)


def _with_case_of(original: str, form: str) -> str:
    if original.isupper() and len(original) > 1:
        return form.upper()
    if original[:1].isupper():
        return form[:1].upper() + form[1:]
    return form


# ------------------------------------------------------------------------------------------------ training data


def _underthesea_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("underthesea")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _lexicon_words(path: Path) -> Iterator[list[str]]:
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            words = _WORD.findall(normalize_text(line, lowercase=True))
            if words:
                yield words


def _tagged_sentences(path: Path) -> Iterator[list[str]]:
    """Sentences of a CoNLL-style file whose first column holds words (syllables parted by spaces)."""
    sentence: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            token = line.split("\t", 1)[0].strip()
            if not token:
                if sentence:
                    yield " ".join(sentence)
                sentence = []
            else:
                sentence.append(token)
    if sentence:
        yield " ".join(sentence)


@lru_cache(maxsize=1)
def general_counts() -> NgramCounts:
    """Counts from the Vietnamese that ships with underthesea (empty, with a warning, if it is not found)."""
    counts = NgramCounts()
    root = _underthesea_dir()
    lexicon, sentences = (root / _LEXICON, root / _SENTENCES) if root else (None, None)
    if lexicon is not None and lexicon.exists():
        for words in _lexicon_words(lexicon):
            counts.add_sentence(words, LEXICON_WEIGHT, edges=False)  # a word, not a sentence: only its inner pairs count
    if sentences is not None and sentences.exists():
        for text in _tagged_sentences(sentences):
            for words in sentences_of(text):
                counts.add_sentence(words)
    if not counts.unigrams:
        log.warning("underthesea's Vietnamese lexicon was not found; accents are restored only from an "
                    "index's own texts (pip install underthesea)")
    return counts


def build_restorer(texts: Iterable[str] = (), *, general: bool = True,
                   collection_weight: float = COLLECTION_WEIGHT, baseline: bool = False) -> AccentRestorer:
    """A restorer from the general corpus (``general``) plus ``texts`` of a collection, weighted."""
    counts = NgramCounts()
    if general:
        counts.add(general_counts())
    counts.add(count_texts(texts), collection_weight)
    return (MostFrequentForm if baseline else AccentRestorer)(counts)


def index_texts(index: str | os.PathLike[str]) -> list[str]:
    """The texts an index holds for full-text search (captions, OCR text, tags...)."""
    from mmtools.index.backends import open_reader

    with open_reader(index) as reader:
        return list(reader.stored_texts())


def load_restorer(index: str | os.PathLike[str] | None = None, version: object = None) -> AccentRestorer:
    """The restorer for an index's collection (or the general one), cached per index write: a warm server
    calls this for every query and builds the model once (and again only after the index changes).
    ``version``: what identifies the index's state, when the caller knows it (a warm server's open reader);
    else the index's signature (a FAISS index's generation; a Milvus collection's texts are then read once
    per process)."""
    if index is None:
        return _cached_restorer(None, None)
    from mmtools.index.backends import resolve_location, signature

    location = resolve_location(index)
    if version is None:
        try:
            version = signature(location)  # the generation too: a commit in SQLite's WAL may change no stat
        except Exception:  # noqa: BLE001 - an unreadable index: building the restorer says what is wrong
            version = None
    return _cached_restorer(location, version)


@lru_cache(maxsize=4)
def _cached_restorer(index: str | None, _version: object) -> AccentRestorer:
    return build_restorer(index_texts(index) if index is not None else ())
