"""A line's Vietnamese put together from two readings: its letters from a reader that sees them well but knows no
accents (mmtools.ocr.letters: "Giamtocdo", "Sura chua"), its accents from Tesseract's reading of the same line
("Giảm tọc đọ", "Sứa chữa"), and which accented syllables follow one another from a Vietnamese language model
(the accent restorer's syllable trigrams, mmtools.text.accent_model).

The letters are cut into syllables (a run read without its spaces is split where the pieces are Vietnamese
syllables; a piece one letter away from a syllable, as "sura" from "sua", may become it at a cost), and a
Viterbi search picks, for each, one of its accented forms: the likelier under the language model, and the
closer to a word Tesseract read (weighted by how confidently it read it), the better. Words that are no
Vietnamese syllable (names, brands, English) stay as read; numbers take Tesseract's spelling when it read the
same characters ("25.000d" becomes "25.000đ").
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

from mmtools.ocr.lexicon import syllable_counts
from mmtools.text.accents import fold

LONGEST = 7  # letters in the longest Vietnamese syllable ("nghiêng")
# Weights in log-probability units, chosen on benchmarks/ocr_scenes.py's tuning photos (0-39).
EDIT_COST = 9.0  # log-probability charged for a syllable one letter away from the letters read
# Charged for leaving a run that is no syllable as read (against cutting or mending it): a word the language model
# has seen (an English word, a brand), or one never seen, plus so much for each letter beyond a long syllable
# (a dozen letters in one run are words read without their spaces far more often than one word).
KNOWN_KEEP_COST, KEEP_COST, KEEP_PER_LETTER = 2.0, 8.0, 2.0
CASE_CUT_COST = 4.0  # charged for a syllable that holds a capital after a small letter ("nhaSach")
ACCENT_WEIGHT = 6.0  # log-probability per letter a form differs from Tesseract's nearest word, at full confidence
MOST_LETTERS = 2  # a form with no word of Tesseract's near it is charged as if this many letters differed
FORMS = 12  # accented forms tried per syllable, most frequent first
CASE_CONFIDENCE = 60.0  # Tesseract's capitals are taken for a syllable it read at least this confidently
BEAM = 12  # Viterbi states kept at each point of the letters
# A run of letters; a number with what is glued to it ("25.000d", "50%"); anything else, one character at a time.
_PIECES = re.compile(r"(\d[\d.,:/%\-]*[^\W\d_]?%?)|([^\W\d_]+)|(\S)")
_ADDRESS = re.compile(r"^www\.|[^\W\d_]\.(com|net|org|vn|edu|gov|info|io)\b", re.IGNORECASE)
_KEPT_MARKS = "%&+#@"  # a lone mark kept (others, as a "." read between two words, are dropped)
_EDGE = ".,:;!?'\"()[]{}|`~«»“”‘’<>\\/_-"
_CONFUSED = (("ur", "u"), ("ir", "u"), ("rn", "m"), ("cl", "d"))  # how a Latin reader writes "ư", "m", "d"


@lru_cache(maxsize=1)
def _syllables() -> frozenset[str]:
    """Every Vietnamese syllable, folded (no accents): Viet74K's, from mmtools.ocr.lexicon."""
    return frozenset(fold(syllable) for syllable in syllable_counts())


@lru_cache(maxsize=4096)
def _mended(letters: str) -> tuple[str, ...]:
    """The syllables one edit away from ``letters`` (a letter dropped, added or changed; a usual confusion)."""
    known = _syllables()
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    splits = [(letters[:i], letters[i:]) for i in range(len(letters) + 1)]
    edits = {a + b[1:] for a, b in splits if b}
    edits |= {a + c + b[1:] for a, b in splits if b for c in alphabet}
    edits |= {a + c + b for a, b in splits for c in alphabet}
    edits |= {letters.replace(wrong, right, 1) for wrong, right in _CONFUSED if wrong in letters}
    edits.discard(letters)
    return tuple(sorted(edit for edit in edits if edit in known and len(edit) > 1))


@lru_cache(maxsize=65536)
def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: characters added, dropped or changed to turn ``a`` into ``b``."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _vietnamese(forms: list[str]) -> list[str]:
    """The forms that are Vietnamese syllables ("bạch", "bách", not the name "bach"), if any are."""
    counts = syllable_counts()
    return [form for form in forms if form in counts] or forms


def _with_case_of(original: str, form: str) -> str:
    if original.isupper() and len(original) > 1:
        return form.upper()
    return form[:1].upper() + form[1:] if original[:1].isupper() else form


class SyllableDecoder:
    """``decode(letters, accented)``: see the module docstring. ``model``: an NgramModel (log_probability,
    candidates), the accent restorer's. Safe to call from several threads."""

    def __init__(self, model: Any):
        self.model = model
        self.lock = threading.Lock()  # the model's compiled tables share one SQLite connection and memo

    def decode(self, letters: str, accented: list[tuple[str, float]]) -> str:
        """``letters``: the line as the letter reader read it; ``accented``: Tesseract's words of the same line
        with their confidences (0-100)."""
        words = [(w.strip(_EDGE).lower(), c / 100) for w, c in accented if w.strip(_EDGE)]
        # The line's first letter as Tesseract wrote it, where it read that syllable's letters too: the letter
        # reader confuses "C" and "c" (Tesseract capitalises words inside a line wrongly more often).
        cased = {fold(w.strip(_EDGE)): w.strip(_EDGE) for w, c in sorted(accented, key=lambda item: item[1])
                 if c >= CASE_CONFIDENCE and w.strip(_EDGE).isalpha()}
        with self.lock:
            out: list[str] = []
            context = ("", "")  # a line is a fragment: where a sentence begins says little about a sign
            for token in letters.split():
                if _ADDRESS.search(token):  # a web address: no syllables in it ("cafe.com" is not "cà phê cơm")
                    out.append(token)
                    continue
                for number, run, mark in (m.groups() for m in _PIECES.finditer(token)):
                    if number:
                        out.append(self._number(number, accented))
                        context = (context[1], number)
                    elif run:
                        forms = self._run(run, words, context, {} if out else cased)
                        out.extend(forms)
                        for form in forms[-2:]:
                            context = (context[1], form.lower())
                    elif mark in _KEPT_MARKS:
                        out.append(mark)
            return " ".join(out)

    def _number(self, number: str, accented: list[tuple[str, float]]) -> str:
        for word, _ in accented:
            if fold(word.strip(_EDGE)) == fold(number):
                return word.strip(_EDGE)
        return number

    def _run(self, run: str, words: list[tuple[str, float]], context: tuple[str, str],
             cased: dict[str, str]) -> list[str]:
        """The likeliest accented syllables of one run of letters (Viterbi over cuts and forms)."""
        letters = fold(run)
        known = _syllables()
        if len(letters) != len(run):  # a letter that folds to two (or none): leave the run as read
            return [run]
        # Each way to take the letters from i to j: (syllable, cost); the run as read, when no syllable, at a cost.
        spans: dict[int, list[tuple[int, str, float]]] = {i: [] for i in range(len(letters))}
        if letters in known:
            spans[0].append((len(letters), letters, 0.0))
        else:
            for i in range(len(letters)):
                for j in range(i + 1, min(len(letters), i + LONGEST + 1) + 1):
                    piece = letters[i:j]
                    case = CASE_CUT_COST * any(a.islower() and b.isupper() for a, b in zip(run[i:j], run[i + 1:j]))
                    if piece in known:
                        spans[i].append((j, piece, case))
                    elif j - i >= 2:
                        spans[i].extend((j, mended, EDIT_COST + case) for mended in _mended(piece))
        states: dict[int, dict[tuple[str, str], tuple[float, list[str]]]] = {0: {context: (0.0, [])}}
        for i in range(len(letters)):
            here = states.pop(i, None)
            if not here:
                continue
            if len(here) > BEAM:
                here = dict(sorted(here.items(), key=lambda item: -item[1][0])[:BEAM])
            for j, syllable, cost in spans[i]:
                original = cased.get(syllable, run[i:j])
                forms = _vietnamese(self.model.candidates(syllable)[:FORMS])
                for (a, b), (score, path) in here.items():
                    for form in forms:
                        if fold(form) != syllable:
                            continue
                        value = score - cost + self.model.log_probability(a, b, form) + self._evidence(form, words)
                        into = states.setdefault(j, {})
                        if (b, form) not in into or into[(b, form)][0] < value:
                            into[(b, form)] = (value, path + [_with_case_of(original, form)])
        ends = states.get(len(letters))
        if letters not in known:
            word = run.lower()
            seen = self.model.unigrams.get(word)
            keep = KNOWN_KEEP_COST if seen else KEEP_COST + KEEP_PER_LETTER * max(0, len(word) - LONGEST)
            as_read = self.model.log_probability(*context, word) - keep + self._evidence(word, words)
            if not ends or max(v for v, _ in ends.values()) < as_read:
                return [self._as_read(run, words)]
        return max(ends.values(), key=lambda item: item[0])[1]

    def _as_read(self, run: str, words: list[tuple[str, float]]) -> str:
        """A run that is no syllable (a name, an English word): Tesseract's word for it when the letters agree."""
        for word, _ in words:
            if fold(word) == fold(run) and word != fold(word):
                return _with_case_of(run, word)
        return run

    @staticmethod
    def _evidence(form: str, words: list[tuple[str, float]]) -> float:
        """Log-probability from Tesseract's reading: minus the letters ``form`` differs from its nearest word,
        weighted by how confidently that word was read."""
        if not words:
            return 0.0
        distance, confidence = min((min(MOST_LETTERS, edit_distance(form, word)), confidence)
                                   for word, confidence in words)
        return -ACCENT_WEIGHT * confidence * distance
