"""Putting the accents back into Vietnamese typed without them ("xe hoi mau do" -> "xe hơi màu đỏ").

A syllable-level trigram language model, decoded with Viterbi: each unaccented syllable may be any of the
accented syllables that fold to it (``mmtools.text.accents.fold``) and were seen in training, and the most
likely sequence wins. Probabilities are Witten-Bell interpolations of trigram, bigram and unigram estimates:
a context seen often and followed by few different syllables is trusted, one seen rarely passes its weight
down, so a syllable the context says nothing about still gets its most frequent form.

What the general model learns from ships offline (``mmtools.text.accent_corpus`` lists the sources and their
licences): wordfreq's Vietnamese frequencies, underthesea's Viet74K lexicon and VLSP sentences, a
hand-written list of photo descriptions, and the user's own text files. It is counted once and compiled
into a small file in mmtools' cache (``mmtools.text.accent_model``), which later processes load in
milliseconds. Given a collection's own texts (an index's captions, OCR text and tags), their counts are added
with a weight, so a collection's words and phrasings win over the general ones.

``alternatives`` hedges: a Viterbi that keeps the n best paths gives the likeliest few restorations, and
when they are close they come back with weights, so a search can try each.

Text that already carries accents is left as it is; so are syllables the model has never seen accented
(English words, names), digits and punctuation. Case is kept: "Ha Noi" -> "Hà Nội".
"""

from __future__ import annotations

import heapq
import math
import os
import re
from functools import lru_cache
from typing import Iterable, Iterator

from mmtools.text.accent_corpus import USER_WEIGHT, sentences_of
from mmtools.text.accent_model import NgramCounts, NgramModel, general_model
from mmtools.text.accents import has_accents

COLLECTION_WEIGHT = USER_WEIGHT  # a collection's counts weigh this many times the general corpus's
# Alternatives: kept while at least this likely against the best (a probability ratio), at most n of them.
CLOSE_RATIO = 0.25
BEAM = 20  # Viterbi states kept per syllable
_WORD = re.compile(r"[^\W\d_]+")
_BREAK = re.compile(r"[^\w\s'\-]|\d+")

__all__ = ["AccentRestorer", "MostFrequentForm", "build_restorer", "count_texts", "index_texts",
           "load_restorer", "COLLECTION_WEIGHT"]


def count_texts(texts: Iterable[str]) -> NgramCounts:
    counts = NgramCounts()
    for text in texts:
        for words in sentences_of(text):
            counts.add_sentence(words)
    return counts


# ------------------------------------------------------------------------------------------------ the model


class AccentRestorer:
    """Restores accents with a trigram model over syllables; see the module docstring."""

    def __init__(self, model: NgramModel):
        self.model = model

    def candidates(self, syllable: str) -> list[str]:
        return self.model.candidates(syllable)

    def best_paths(self, syllables: list[str], n: int = 1, edges: bool = True) -> list[tuple[float, tuple[str, ...]]]:
        """The ``n`` likeliest accented forms of a run of lower-case unaccented syllables, best first, with
        their log probabilities (a Viterbi that keeps the ``n`` best paths into each state). ``edges``: the
        run is a whole text, so how texts begin and end counts; else it is a fragment of one."""
        log_p = self.model.log_probability
        start = self.model.START if edges else ""
        states: dict[tuple[str, str], list[tuple[float, tuple[str, ...]]]] = {(start, start): [(0.0, ())]}
        for syllable in syllables:
            choices = self.candidates(syllable)
            advanced: dict[tuple[str, str], list[tuple[float, tuple[str, ...]]]] = {}
            for (a, b), paths in states.items():
                for c in choices:
                    step = log_p(a, b, c)
                    into = advanced.setdefault((b, c), [])
                    for score, path in paths:
                        into.append((score + step, path + (c,)))
            states = {key: heapq.nlargest(n, paths, key=lambda p: p[0]) for key, paths in advanced.items()}
            if len(states) > BEAM:  # the unlikeliest states seldom recover: keep the best few
                kept = heapq.nlargest(BEAM, states, key=lambda key: states[key][0][0])
                states = {key: states[key] for key in kept}
        end = self.model.END
        finished = [(score + (log_p(a, b, end) if edges else 0.0), path)
                    for (a, b), paths in states.items() for score, path in paths]
        return heapq.nlargest(n, finished, key=lambda p: p[0])

    def restore_syllables(self, syllables: list[str], edges: bool = True) -> list[str]:
        """The most likely accented forms of a run of lower-case unaccented syllables (Viterbi)."""
        return list(self.best_paths(syllables, 1, edges)[0][1])

    def _runs(self, text: str) -> list[list[re.Match]]:
        """The words of ``text``, in runs between context breaks (punctuation, digits)."""
        runs = []
        for start, end in _pieces(text):
            words = list(_WORD.finditer(text, start, end))
            if words:
                runs.append(words)
        return runs

    def restore(self, text: str) -> str:
        """``text`` with accents put back; text that has accents already comes back as it was."""
        if has_accents(text):
            return text
        runs = self._runs(text)
        return _rewrite(text, runs, [self.restore_syllables([w.group().lower() for w in run]) for run in runs])

    def restore_many(self, texts: Iterable[str]) -> list[str]:
        return [self.restore(text) for text in texts]

    def alternatives(self, text: str, n: int = 3) -> list[tuple[str, float]]:
        """The likeliest restorations of ``text``, best first, each with its weight (the weights sum to 1).

        One entry when the model is sure (or the text has accents already); up to ``n`` when the best
        restorations are close (each at least ``CLOSE_RATIO`` as likely as the best), so that a search can
        encode each and fuse their rankings by weight. Weights are the restorations' probabilities,
        normalised over those returned.
        """
        if n <= 1 or has_accents(text):
            return [(self.restore(text), 1.0)]
        runs = self._runs(text)
        if not runs:
            return [(text, 1.0)]
        # Each run (between punctuation) is decoded on its own: combine their n-best lists, best first.
        combined: list[tuple[float, list[list[str]]]] = [(0.0, [])]
        for run in runs:
            paths = self.best_paths([w.group().lower() for w in run], n)
            combined = heapq.nlargest(n, ((score + s, forms + [list(p)]) for score, forms in combined
                                          for s, p in paths), key=lambda item: item[0])
        best = combined[0][0]
        close = [(score, forms) for score, forms in combined if score - best >= math.log(CLOSE_RATIO)]
        weights = [math.exp(score - best) for score, _ in close]
        total = sum(weights)
        seen: dict[str, float] = {}
        for (_score, forms), weight in zip(close, weights):
            restored = _rewrite(text, runs, forms)
            seen[restored] = seen.get(restored, 0.0) + weight / total
        return list(seen.items())


class MostFrequentForm(AccentRestorer):
    """The baseline: every syllable becomes its most frequent accented form, whatever its neighbours."""

    def best_paths(self, syllables: list[str], n: int = 1, edges: bool = True) -> list[tuple[float, tuple[str, ...]]]:
        return [(0.0, tuple(self.candidates(syllable)[0] for syllable in syllables))]


def _pieces(text: str) -> Iterator[tuple[int, int]]:
    """Spans of ``text`` between context breaks (punctuation, digits)."""
    at = 0
    for match in _BREAK.finditer(text):
        yield at, match.start()
        at = match.end()
    yield at, len(text)


def _rewrite(text: str, runs: list[list[re.Match]], forms: list[list[str]]) -> str:
    """``text`` with each run's words replaced by its forms, keeping each word's case and all in between."""
    pieces: list[str] = []
    at = 0
    for words, restored in zip(runs, forms):
        for word, form in zip(words, restored):
            pieces.append(text[at:word.start()])
            pieces.append(_with_case_of(word.group(), form))
            at = word.end()
    pieces.append(text[at:])
    return "".join(pieces)


def _with_case_of(original: str, form: str) -> str:
    if original.isupper() and len(original) > 1:
        return form.upper()
    if original[:1].isupper():
        return form[:1].upper() + form[1:]
    return form


# ------------------------------------------------------------------------------------------------ building


def build_restorer(texts: Iterable[str] = (), *, general: bool = True, collection_weight: float = COLLECTION_WEIGHT,
                   baseline: bool = False, learn: list[str | os.PathLike[str]] = ()) -> AccentRestorer:
    """A restorer from the general model (``general``; with the user's ``learn`` files) plus ``texts`` of a
    collection, weighted."""
    base = general_model(tuple(os.fspath(p) for p in learn)) if general else NgramModel.from_counts(NgramCounts())
    extra = count_texts(texts)
    model = base.with_counts(extra, collection_weight) if extra.unigrams else base
    return (MostFrequentForm if baseline else AccentRestorer)(model)


def index_texts(index: str | os.PathLike[str]) -> list[str]:
    """The texts an index holds for full-text search (captions, OCR text, tags...)."""
    from mmtools.index.backends import open_reader

    with open_reader(index) as reader:
        return list(reader.stored_texts())


def load_restorer(index: str | os.PathLike[str] | None = None, version: object = None,
                  learn: list[str | os.PathLike[str]] = ()) -> AccentRestorer:
    """The restorer for an index's collection (or the general one), cached per index write: a warm server
    calls this for every query and builds the model once (and again only after the index changes).
    ``version``: what identifies the index's state, when the caller knows it (a warm server's open reader);
    else the index's signature (a FAISS index's generation; a Milvus collection's texts are then read once
    per process). ``learn``: the user's text files to learn from as well."""
    learn = tuple(os.fspath(p) for p in learn)
    if index is None:
        return _cached_restorer(None, None, learn)
    from mmtools.index.backends import resolve_location, signature

    location = resolve_location(index)
    if version is None:
        try:
            version = signature(location)  # the generation too: a commit in SQLite's WAL may change no stat
        except Exception:  # noqa: BLE001 - an unreadable index: building the restorer says what is wrong
            version = None
    return _cached_restorer(location, version, learn)


@lru_cache(maxsize=4)
def _cached_restorer(index: str | None, _version: object, learn: tuple[str, ...]) -> AccentRestorer:
    return build_restorer(index_texts(index) if index is not None else (), learn=learn)
