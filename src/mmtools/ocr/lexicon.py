"""Read words checked against the Vietnamese syllables: a syllable Tesseract misread by one letter ("độmg",
"Phươngg") is put back to the likeliest real one ("động", "Phương"), and stray marks around words are dropped.

Vietnamese is written in a closed set of syllables (about 9,000 in underthesea's Viet74K lexicon, a core
dependency); each is weighted by the number of lexicon words it appears in. A word already a syllable, holding
digits, or one edit away from no syllable is left as read (names, brands and English stay); a word one edit
(a letter dropped, added or changed, accents included) from syllables becomes the most common of them.
"""

from __future__ import annotations

import importlib.util
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path

LEXICON = "corpus/data/Viet74K.txt"
EDGE_MARKS = "'\"`()[]{}|,.;:!?_~«»“”‘’<>\\/"
KNOWN = 2  # a syllable in at least this many lexicon words is taken as read


@lru_cache(maxsize=1)
def syllable_counts() -> dict[str, int]:
    """Each lower-case syllable of the lexicon and how many of its words hold it (empty without underthesea)."""
    spec = importlib.util.find_spec("underthesea")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(list(spec.submodule_search_locations)[0]) / LEXICON
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    counts: Counter = Counter()
    for line in text.splitlines():
        for syllable in unicodedata.normalize("NFC", line).lower().replace("-", " ").split():
            if syllable.isalpha():
                counts[syllable] += 1
    return dict(counts)


TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}  # grave, acute, tilde, hook above, dot below


def _tone_key(word: str) -> tuple[str, str]:
    """The word without its tone marks, and the marks: "lâý" and "lấy" share a key (the mark on another vowel)."""
    decomposed = unicodedata.normalize("NFD", word)
    return (unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in TONES)),
            "".join(sorted(c for c in decomposed if c in TONES)))


@lru_cache(maxsize=1)
def _by_tone_key() -> dict[tuple[str, str], str]:
    index: dict[tuple[str, str], str] = {}
    for syllable, count in sorted(syllable_counts().items(), key=lambda item: item[1]):
        index[_tone_key(syllable)] = syllable  # the most common last, so kept
    return index


@lru_cache(maxsize=1)
def _letters() -> str:
    return "".join(sorted({c for syllable in syllable_counts() for c in syllable}))


def correct_line(text: str) -> str:
    """The line's words, each stripped of stray marks and put back to a Vietnamese syllable where one edit does."""
    words = [correct_word(word) for word in text.split()]
    return " ".join(word for word in words if word)


def correct_word(word: str) -> str:
    core = word.strip(EDGE_MARKS)
    counts = syllable_counts()
    lower = core.lower()
    if not core or not counts or not lower.isalpha() or counts.get(lower, 0) >= KNOWN:
        return core
    best = _by_tone_key().get(_tone_key(lower))
    if best is None or counts[best] < KNOWN:
        candidates = [c for c in _edits(lower) if counts.get(c, 0) >= KNOWN]
        if not candidates:
            return core
        best = max(candidates, key=lambda c: (counts[c], -abs(len(c) - len(lower))))
    if core.isupper() and len(core) > 1:
        return best.upper()
    return best[0].upper() + best[1:] if core[0].isupper() else best


def _edits(word: str) -> set[str]:
    letters = _letters()
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = [a + b[1:] for a, b in splits if b]
    replaces = [a + c + b[1:] for a, b in splits if b for c in letters if c != b[0]]
    inserts = [a + c + b for a, b in splits for c in letters]
    return set(deletes + replaces + inserts)
