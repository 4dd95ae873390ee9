"""Vietnamese with and without accents: folding to the unaccented form, and telling whether text has accents.

Folding is what keyword matching compares: lower case, NFC, every diacritic removed (the five tone marks and
the circumflex, breve and horn) and ``đ`` made ``d``, so "Xe HƠI màu Đỏ" folds to "xe hoi mau do". ``đ`` needs
its own rule: it is a letter of its own in Unicode, not ``d`` plus a mark, so SQLite's and Python's
diacritic removal both leave it. Folding never changes where words begin and end (every letter stays a
letter), so the n-th syllable of a text is the n-th syllable of its folded form.
"""

from __future__ import annotations

import re
import unicodedata

# A syllable (or any other word): a run of letters and digits; "_" (segmented text) and punctuation part them.
SYLLABLE = re.compile(r"[^\W_]+")

_LETTERS_OF_THEIR_OWN = str.maketrans({"đ": "d", "Đ": "d"})
_CACHE_LIMIT = 200_000
_folded: dict[str, str] = {}


def fold(text: str) -> str:
    """``text`` lower-cased, in NFC, without diacritics, ``đ`` as ``d``."""
    cached = _folded.get(text)
    if cached is not None:
        return cached
    decomposed = unicodedata.normalize("NFD", text.lower().translate(_LETTERS_OF_THEIR_OWN))
    result = unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))
    if len(_folded) > _CACHE_LIMIT:
        _folded.clear()
    _folded[text] = result
    return result


def has_accents(text: str) -> bool:
    """Whether any letter of ``text`` carries a diacritic (or is ``đ``): then it was typed with accents."""
    return fold(text) != unicodedata.normalize("NFC", text.lower())


def syllables(text: str) -> list[str]:
    """The syllables (words) of ``text``, as they are written."""
    return SYLLABLE.findall(text)
