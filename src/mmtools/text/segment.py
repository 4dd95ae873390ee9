"""Vietnamese word segmentation: "xe hơi màu đỏ" -> "xe_hơi màu đỏ" (the form PhoBERT expects).

The output follows the convention PhoBERT was pre-trained on (VnCoreNLP's RDRsegmenter): syllables of a word
joined by "_", and punctuation marks as tokens of their own: "Phòng mát, có điều hòa." ->
"Phòng mát , có điều_hòa .".

Importing this module is instant: a back end (underthesea, VnCoreNLP, pyvi) is imported only when its
segmenter is created. Every segmenter does the same around its back end:

1. ``normalize_text`` the input (same ``tone_style``), then split punctuation at the edges of a word off
   into tokens of its own (``split_punctuation``); the output is that text with the spaces inside a word
   turned into "_" -- nothing else changes, whatever the back end does to its own copy.
2. "_" already in the input between two characters joins those syllables for good, so segmenting segmented
   text gives the same text.
3. The back end groups the remaining syllables.
4. User dictionary words (case-insensitive, whatever the tone style or Unicode form) win: they are joined,
   and a back-end word that overlaps one is cut at the dictionary word's edges, its remaining syllables
   keeping the back end's grouping: if the back end says "điều_hòa_nhiệt_độ" and the dictionary holds
   "điều hoà", the result is "điều_hòa nhiệt_độ".
"""

from __future__ import annotations

import math
import os
import re
import sys
from typing import Iterable

from mmtools.errors import UsageError
from mmtools.text.alignment import gap_joins
from mmtools.text.dictionary import UserDictionary, load_dictionary
from mmtools.text.normalize import DEFAULT_TONE_STYLE, TONE_STYLES, normalize_text
from mmtools.text.prepare import has_letters_or_digits

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Segmenter", "get_segmenter", "load_dictionary"]

BACKENDS = ("underthesea", "vncorenlp", "pyvi")
DEFAULT_BACKEND = "underthesea"

# "_" between two non-space characters joins syllables; a leading or trailing one ("__init__") is text.
_JOINER = re.compile(r"(?<=[^\s_])_(?=[^\s_])")
_HAS_LETTER = re.compile(r"[^\W\d_]")

# Punctuation split off the edges of a word (RDRsegmenter's tokeniser does the same). Inside a word it stays:
# "3.500.000đ", "10:30", "a_b@x.com". A chunk with no letter or digit (":-)", "...") stays whole.
_OPENING = "([{«“‘\"'¿¡"
_CLOSING = ".,;:!?…)]}»”’\"'%"
_EDGE_PUNCTUATION = re.compile(rf"^([{re.escape(_OPENING)}]*)(.*?)([{re.escape(_CLOSING)}]*)$", re.S)
_SAME_CHARACTER_RUNS = re.compile(r"(.)\1*", re.S)

# Below this many distinct texts per process, starting the pool (about 0.1 s) costs more than it saves.
MIN_TEXTS_PER_PROCESS = 500


class Segmenter:
    """Base class: normalisation, "_" handling, user dictionary and batching around a back end.

    A back end subclass sets ``name`` and implements ``_backend_words``.
    """

    name: str = "base"
    # Whether worker processes may be forked from a process that already runs this back end.
    fork_safe: bool = True
    # Tone style of the text handed to the back end (None: the output's). Only the grouping comes back, so
    # this can follow the back end's training data without changing the output.
    backend_tone_style: str | None = None
    # Words the back end gets wrong in everyday text, fixed like user dictionary words.
    builtin_words: tuple[str, ...] = ()

    def __init__(self, *, dictionary: Iterable[str] | None = None, tone_style: str = DEFAULT_TONE_STYLE):
        if tone_style not in TONE_STYLES:
            raise UsageError(f"unknown tone style {tone_style!r}; choose one of {', '.join(TONE_STYLES)}")
        self.tone_style = tone_style
        self.dictionary_words = list(dictionary or [])
        self._dictionary = UserDictionary([*self.builtin_words, *self.dictionary_words], tone_style=tone_style)

    def _backend_words(self, text: str) -> list[str]:
        """The back end's words for ``text``, syllables inside a word separated by spaces or "_"."""
        raise NotImplementedError

    def segment(self, text: str) -> str:
        """Normalised ``text`` with the syllables of each word joined by "_"."""
        normalized = split_punctuation(normalize_text(text, tone_style=self.tone_style))
        syllables, joined_in_input = _split_syllables(normalized)
        if len(syllables) < 2:
            return normalized
        joins = self._backend_joins(syllables)
        protected = _input_words(joined_in_input)
        unit_starts = [True] + [not joined for joined in joined_in_input]
        protected += self._dictionary.find_spans(syllables, unit_starts)
        joins = _apply_protected(joins, protected)
        pieces = [syllables[0]]
        for joined, syllable in zip(joins, syllables[1:]):
            pieces.append("_" if joined else " ")
            pieces.append(syllable)
        return "".join(pieces)

    def segment_many(self, texts: list[str], jobs: int = 1) -> list[str]:
        """``[self.segment(t) for t in texts]``; with ``jobs`` > 1 (0: one per CPU) in worker processes.

        Each distinct text is segmented once. Workers are forked (Linux only) so they inherit the loaded
        model; inputs under ``MIN_TEXTS_PER_PROCESS`` distinct texts per worker, back ends that cannot be
        forked (VnCoreNLP's JVM) and other systems stay in this process, so ``jobs`` > 1 is never much
        slower than a loop.
        """
        if jobs < 0:
            raise UsageError(f"jobs must be 0 (one per CPU) or more, not {jobs}")
        if jobs == 0:
            jobs = os.cpu_count() or 1
        distinct = list(dict.fromkeys(texts))
        jobs = min(jobs, len(distinct) // MIN_TEXTS_PER_PROCESS)
        if jobs <= 1 or not self.fork_safe or not _can_fork():
            results = {text: self.segment(text) for text in distinct}
        else:
            results = dict(zip(distinct, self._segment_in_processes(distinct, jobs)))
        return [results[text] for text in texts]

    def _segment_in_processes(self, texts: list[str], jobs: int) -> list[str]:
        # Load the back end's model here first: forked workers then inherit it instead of loading it again.
        self.segment(texts[0])
        # A few chunks per worker keep them all busy when some chunks are slower.
        size = math.ceil(len(texts) / (jobs * 4))
        chunks = [texts[start : start + size] for start in range(0, len(texts), size)]
        import multiprocessing  # here, not at import: it costs 10 ms that most callers never need
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(self,)) as pool:
            return [result for chunk in pool.map(_segment_chunk, chunks) for result in chunk]

    def _backend_joins(self, syllables: list[str]) -> list[bool]:
        if not any(_HAS_LETTER.search(syllable) for syllable in syllables):
            return [False] * (len(syllables) - 1)  # only numbers, punctuation, emoji: nothing to join
        text = " ".join(syllables)
        if self.backend_tone_style not in (None, self.tone_style):
            text = normalize_text(text, tone_style=self.backend_tone_style)
        joins = gap_joins(syllables, self._backend_words(text))
        # A CRF sometimes glues an emoji or a lone symbol to the next word ("😀_ko"): no word is made of
        # those. Nor join next to an "_" of the text ("__init__"): that joiner could not be read back.
        return [
            joined and _joinable(syllables[gap]) and _joinable(syllables[gap + 1])
            for gap, joined in enumerate(joins)
        ]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} tone_style={self.tone_style!r} dictionary={len(self._dictionary)} words>"


def split_punctuation(text: str) -> str:
    """Punctuation at the edges of each space-separated chunk as tokens of its own: "(gần" -> "( gần",
    "hòa." -> "hòa .", "đỏ..." -> "đỏ ..." (a run of one mark stays one token)."""
    chunks = []
    for chunk in text.split(" "):
        if not has_letters_or_digits(chunk):
            chunks.append(chunk)
            continue
        opening, word, closing = _EDGE_PUNCTUATION.match(chunk).groups()
        chunks.extend(run.group(0) for run in _SAME_CHARACTER_RUNS.finditer(opening))
        chunks.append(word)
        chunks.extend(run.group(0) for run in _SAME_CHARACTER_RUNS.finditer(closing))
    return " ".join(chunks)


def _can_fork() -> bool:
    # Workers are forked so that they inherit the loaded model (a spawned worker would import the back end
    # again, about 3 s). Forking is only dependable on Linux (macOS frameworks break in forked children);
    # elsewhere segment_many stays in one process.
    return sys.platform.startswith("linux")


def _joinable(syllable: str) -> bool:
    return syllable[0] != "_" and syllable[-1] != "_" and has_letters_or_digits(syllable)


def get_segmenter(
    backend: str = DEFAULT_BACKEND,
    *,
    dictionary: list[str] | None = None,
    vncorenlp_dir: str | None = None,
    tone_style: str = DEFAULT_TONE_STYLE,
) -> Segmenter:
    """A segmenter for ``backend``; raises MissingDependencyError (with what to install) if it cannot run."""
    from mmtools.text import backends  # the classes are light; their back ends load in __init__

    options = {"dictionary": dictionary, "tone_style": tone_style}
    if backend == "underthesea":
        return backends.UndertheseaSegmenter(**options)
    if backend == "pyvi":
        return backends.PyviSegmenter(**options)
    if backend == "vncorenlp":
        return backends.VnCoreNLPSegmenter(vncorenlp_dir, **options)
    raise UsageError(f"unknown segmentation back end {backend!r}; choose one of {', '.join(BACKENDS)}")


def _split_syllables(normalized: str) -> tuple[list[str], list[bool]]:
    """Syllables of normalised text, and for each gap between two whether the input joined it with "_"."""
    if "_" not in normalized:
        syllables = normalized.split(" ") if normalized else []
        return syllables, [False] * (len(syllables) - 1)
    syllables: list[str] = []
    joined: list[bool] = []
    for chunk in normalized.split(" "):
        pieces = _JOINER.split(chunk)
        if syllables:
            joined.append(False)
        syllables.extend(pieces)
        joined.extend([True] * (len(pieces) - 1))
    return syllables, joined


def _input_words(joined: list[bool]) -> list[tuple[int, int]]:
    """Spans of syllables that the input already joined with "_"."""
    spans = []
    start = None
    for gap, is_joined in enumerate(joined):
        if is_joined and start is None:
            start = gap
        elif not is_joined and start is not None:
            spans.append((start, gap + 1))
            start = None
    if start is not None:
        spans.append((start, len(joined) + 1))
    return spans


def _apply_protected(joins: list[bool], spans: list[tuple[int, int]]) -> list[bool]:
    """Join inside each protected span, cut at its edges, keep the back end's choice elsewhere.

    Gap ``g`` lies between syllables ``g`` and ``g + 1``; span ``(start, end)`` covers syllables
    ``start .. end - 1``. A gap inside one span and at the edge of another (an input word inside a
    dictionary word) is inside.
    """
    joins = list(joins)
    inside = set()
    for start, end in spans:
        if start > 0:
            joins[start - 1] = False
        if end - 1 < len(joins):
            joins[end - 1] = False
        inside.update(range(start, end - 1))
    for gap in inside:
        joins[gap] = True
    return joins


# Worker side of segment_many. Workers are forked, so the segmenter (and its loaded model) is inherited,
# not pickled.
_worker_segmenter: Segmenter | None = None


def _start_worker(segmenter: Segmenter) -> None:
    global _worker_segmenter
    _worker_segmenter = segmenter


def _segment_chunk(texts: list[str]) -> list[str]:
    return [_worker_segmenter.segment(text) for text in texts]
