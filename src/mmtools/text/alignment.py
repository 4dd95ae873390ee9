"""Map a back end's word grouping back onto our own syllables.

Back ends re-tokenise (they split "tennis." into "tennis" and "."), and some rewrite characters (underthesea
turns "hoà" into "hòa" and "nghành" into "ngành"). We never use their text: we only ask, for each gap
between two of our syllables, whether the characters on both sides landed in the same back-end word. The
output is then built from our own normalised text, so no character is lost or added.
"""

from __future__ import annotations

import difflib
import unicodedata


def _build_fold_table() -> dict[int, str]:
    """Lower-case base letter for every Latin letter with diacritics ("Ộ" -> "o", "đ" -> "d")."""
    table = {}
    for code in [*range(0xC0, 0x250), *range(0x1E00, 0x1F00)]:
        char = chr(code)
        base = unicodedata.normalize("NFD", char)[0].lower()
        if base != char:
            table[code] = base
    table[ord("đ")] = table[ord("Đ")] = "d"
    return table


_FOLD = _build_fold_table()


def fold(text: str) -> str:
    """Case- and diacritic-insensitive form used to compare our text with a back end's."""
    lowered = text.lower()
    if len(lowered) != len(text):  # "İ" lower-cases to two characters; keep positions aligned
        lowered = text
    return lowered.translate(_FOLD)


def gap_joins(syllables: list[str], words: list[str]) -> list[bool]:
    """For each gap between consecutive ``syllables``, whether ``words`` put both sides in one word.

    ``words`` are the back end's words, their syllables separated by spaces or by "_".
    """
    source = "".join(syllables)
    cuts = []  # index in ``source`` where each syllable after the first begins
    position = 0
    for syllable in syllables[:-1]:
        position += len(syllable)
        cuts.append(position)

    keep_underscores = "_" in source
    word_texts = [
        word.replace(" ", "") if keep_underscores else word.replace(" ", "").replace("_", "")
        for word in words
    ]
    if fold(source) == fold("".join(word_texts)):
        # The usual case: the same characters, maybe other accents or case. A gap is joined unless a word
        # ends right there.
        word_ends = set()
        position = 0
        for text in word_texts:
            position += len(text)
            word_ends.add(position)
        return [cut not in word_ends for cut in cuts]

    word_of = _word_per_character(source, words, word_texts)
    return [word_of[cut - 1] is not None and word_of[cut - 1] == word_of[cut] for cut in cuts]


def _word_per_character(source: str, words: list[str], word_texts: list[str]) -> list[int | None]:
    """The back-end word index of each character of ``source`` (None where it cannot be aligned)."""
    source_folded = fold(source)
    if "_" in source:
        walked = _walk_with_joiners(source_folded, words)
        if walked is not None:
            return walked
    owner = [index for index, text in enumerate(word_texts) for _ in text]
    return _diff_align(source_folded, fold("".join(word_texts)), owner)


def _walk_with_joiners(source: str, words: list[str]) -> list[int | None] | None:
    """Align when ``source`` holds literal "_": a back-end "_" is ours only where ``source`` has one."""
    owner: list[int | None] = []
    position = 0
    for index, word in enumerate(words):
        for char in fold(word.replace(" ", "")):
            if position < len(source) and char == source[position]:
                owner.append(index)
                position += 1
            elif char != "_":
                return None
    return owner if position == len(source) else None


def _diff_align(source: str, target: str, owner: list[int]) -> list[int | None]:
    word_of: list[int | None] = [None] * len(source)
    matcher = difflib.SequenceMatcher(None, source, target, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            word_of[i1:i2] = owner[j1:j2]
    return word_of
