"""Canonical form of Vietnamese text: one Unicode form, one tone-mark placement, tidy spacing.

``normalize_text`` runs on every query and caption, so it is stdlib-only and table driven: the tables below
are built once at import, and each distinct word is worked out once and then looked up in a cache.

What it does, in order:

1. Removes invisible characters: zero-width space, word joiner, BOM, soft hyphen everywhere, and
   zero-width (non-)joiners next to Latin letters (elsewhere they are part of emoji sequences and are kept).
2. Unicode NFC (macOS hands out NFD).
3. Puts the tone mark of each Vietnamese syllable in one canonical place (see ``TONE_STYLES``). A word is
   only touched when it parses as a single Vietnamese syllable carrying exactly one tone mark, so English,
   French ("café"), numbers, URLs and emoji are left alone. A combining tone mark may sit anywhere in the
   decomposed word (even after a consonant); it is moved onto the right vowel.
4. Collapses every run of whitespace (spaces, tabs, newlines, NBSP and the other Unicode spaces) to one
   space and strips both ends.
5. Punctuation spacing, conservatively (nothing is ever inserted, only spaces removed):
   - spaces before a run of closing punctuation ``. , ; : ! ? … ) ] } » ” %`` are removed when that run
     ends the text or is followed by a space: "chơi tennis  ." -> "chơi tennis.", "nói : bán" ->
     "nói: bán", "( a )" -> "(a)". Emoticons such as " :)" are kept, and so is a run followed directly by
     something else (" .txt", " ,5").
   - spaces after an opening bracket or quote ``( [ { « “`` are removed.
(Lower-casing, when asked for, happens first.)

The result is idempotent: ``normalize_text(normalize_text(t)) == normalize_text(t)``.
"""

from __future__ import annotations

import re
import unicodedata

TONE_STYLES = ("old", "new")
# The two styles differ only for the open syllables with "oa", "oe", "uy", and are named as Vietnamese
# orthography names them:
#   "old" (kiểu cũ): hòa, khỏe, thủy  (mark on the first vowel; what most Vietnamese text on the web and
#                    the usual keyboard settings produce, hence the default)
#   "new" (kiểu mới): hoà, khoẻ, thuỷ  (mark on the main vowel)
# Every other syllable has a single accepted placement ("hoàng", "thuyền", "quý", "giữa", "người").
DEFAULT_TONE_STYLE = "old"

# Combining tone marks: grave (huyền), acute (sắc), tilde (ngã), hook above (hỏi), dot below (nặng).
_TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")
_VOWELS = "aăâeêioôơuưy"
_MODIFIED_VOWELS = frozenset("ăâêôơư")

# Every precomposed Latin letter that carries a tone mark (toned vowels, but also "ǹ", "ḿ"... which NFC
# makes when a decomposed tone mark follows a consonant), so words without one are skipped quickly.
_TONED_CHARS = "".join(
    char
    for code in [*range(0xC0, 0x250), *range(0x1E00, 0x1F00)]
    if _TONE_MARKS.intersection(unicodedata.normalize("NFD", char := chr(code)))
)

_ONSETS = "ngh|ng|gh|gi|qu|ch|kh|nh|ph|th|tr|b|c|d|đ|g|h|k|l|m|n|p|r|s|t|v|x"
_SYLLABLE = re.compile(rf"({_ONSETS})?([{_VOWELS}]{{1,3}})(ch|ng|nh|c|m|n|p|t)?")
_NUCLEI = frozenset(
    "a ă â e ê i o ô ơ u ư y "
    "ai ao au ay âu ây eo êu ia iê iu oa oă oe oi oo ôi ơi ua uâ uê ui uô uơ uy ưa ưi ưu ươ yê "
    "oai oao oay oeo uây uôi uya uyê uyu ươi ươu yêu iêu".split()
)
_STYLE_DEPENDENT_NUCLEI = frozenset(("oa", "oe", "uy"))

# A word: letters plus any combining marks left after NFC (a tone mark typed after a consonant, say).
_WORD = re.compile(r"(?:[^\W\d_]|[\u0300-\u036f])+")
_NEEDS_TONE_WORK = re.compile(f"[{_TONED_CHARS}\u0300-\u036f]")

_ALWAYS_INVISIBLE = re.compile("[\u200b\u2060\ufeff\u00ad]")
# Zero-width (non-)joiners inside Latin words are noise; between emoji they build one picture: keep those.
_LATIN = "A-Za-z\u00c0-\u024f\u1e00-\u1eff\u0300-\u036f"
_JOINERS_IN_WORDS = re.compile(f"(?<=[{_LATIN}])[\u200c\u200d]+|[\u200c\u200d]+(?=[{_LATIN}])")
_SPACE_BEFORE_CLOSING = re.compile(r" (?![:;=]-?[()\[\]])(?=[.,;:!?…)\]}»”%]+(?: |$))")
_SPACE_AFTER_OPENING = re.compile(r"(?<=[(\[{«“]) ")
_LOOKS_LIKE_ADDRESS = re.compile(r"://|^www\.|@")  # URLs, e-mail addresses: never re-accent them

# Whitespace-separated chunks seen before, per tone style: most text reuses a few thousand syllables.
_CACHE_LIMIT = 200_000
_chunk_cache: dict[str, dict[str, str]] = {style: {} for style in TONE_STYLES}


def normalize_text(text: str, *, tone_style: str = DEFAULT_TONE_STYLE, lowercase: bool = False) -> str:
    """Return ``text`` in mmtools' canonical form (see the module docstring for the exact rules)."""
    if tone_style not in TONE_STYLES:
        raise ValueError(f"tone_style must be one of {TONE_STYLES}, not {tone_style!r}")
    if lowercase:
        text = text.lower()  # first: lower() can leave marks that NFC must then compose ("İ" -> "i̇")
    text = unicodedata.normalize("NFC", _ALWAYS_INVISIBLE.sub("", text))
    without_joiners = _JOINERS_IN_WORDS.sub("", text)
    if without_joiners != text:
        text = unicodedata.normalize("NFC", without_joiners)  # a removed joiner may have split a mark off
    cache = _chunk_cache[tone_style]
    if len(cache) > _CACHE_LIMIT:
        cache.clear()
    # str.split() splits on every Unicode whitespace (NBSP, tabs, newlines...) and drops the ends.
    chunks = [cache.get(chunk) or _normalize_chunk(chunk, tone_style, cache) for chunk in text.split()]
    text = " ".join(chunks)
    text = _SPACE_BEFORE_CLOSING.sub("", text)
    text = _SPACE_AFTER_OPENING.sub("", text)
    return text


def _normalize_chunk(chunk: str, tone_style: str, cache: dict[str, str]) -> str:
    """NFC and canonical tone placement for one whitespace-free chunk; remembered in ``cache``."""
    fixed = unicodedata.normalize("NFC", chunk)
    if _NEEDS_TONE_WORK.search(fixed) and not _LOOKS_LIKE_ADDRESS.search(fixed):
        fixed = _WORD.sub(lambda match: _place_tone(match.group(), tone_style), fixed)
    cache[chunk] = fixed
    return fixed


def _place_tone(word: str, tone_style: str) -> str:
    """Return ``word`` (NFC) with its tone mark on the canonical vowel, or unchanged if it is no syllable."""
    nfc = unicodedata.normalize("NFC", word)
    letters: list[str] = []  # each letter with its non-tone marks (circumflex, breve, horn), decomposed
    tones: list[str] = []
    for char in unicodedata.normalize("NFD", word):
        if char in _TONE_MARKS:
            tones.append(char)
        elif unicodedata.combining(char):
            if not letters:
                return nfc
            letters[-1] += char
        else:
            letters.append(char)
    if len(tones) != 1:
        return nfc
    plain = [unicodedata.normalize("NFC", letter) for letter in letters]
    lower = "".join(plain).lower()
    if len(lower) != len(plain) or any(len(letter) != 1 for letter in plain):
        return nfc  # a mark that does not compose (circumflex on a consonant...): not Vietnamese
    match = _SYLLABLE.fullmatch(lower)
    if match is None or match.group(2) not in _NUCLEI:
        return nfc
    onset, nucleus, coda = match.group(1) or "", match.group(2), match.group(3)
    index = len(onset) + _tone_position(nucleus, bool(coda), tone_style)
    plain[index] = unicodedata.normalize("NFC", plain[index] + tones[0])
    return "".join(plain)


def _tone_position(nucleus: str, has_coda: bool, tone_style: str) -> int:
    """Index, within the vowel cluster, of the vowel that carries the tone mark."""
    if has_coda:
        return len(nucleus) - 1  # hoàng, thuyền, quốc, đường
    modified = [i for i, vowel in enumerate(nucleus) if vowel in _MODIFIED_VOWELS]
    if modified:
        return modified[-1]  # giữa, người, thuở, khuấy
    if len(nucleus) == 3:
        return 1  # ngoài, xoáy, khuỷu
    if nucleus in _STYLE_DEPENDENT_NUCLEI:
        return 0 if tone_style == "old" else 1
    return 0  # mùa, mía, cháu, túi
