"""User dictionary: multi-syllable words that segmentation must always join.

Entries and text are compared after ``normalize_text`` with the same tone style and lower-casing, so "điều
hòa" in the dictionary joins "Điều hoà" in NFD text, and the other way round.
"""

from __future__ import annotations

import os
import re
from typing import Iterable

from mmtools.errors import MmtoolsError
from mmtools.text.normalize import DEFAULT_TONE_STYLE, normalize_text

# Punctuation around a syllable ("nhà," "(ngôi") does not stop it matching, but a dictionary word never spans
# punctuation: "ngôi, nhà" is not "ngôi nhà".
_EDGES = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


def load_dictionary(path: str | os.PathLike) -> list[str]:
    """Read one word per line (UTF-8); blank lines and lines starting with '#' are skipped."""
    try:
        with open(path, "rb") as file:
            content = file.read().decode("utf-8-sig")
    except OSError as error:
        raise MmtoolsError(
            f"cannot read dictionary {os.fspath(path)}: {error.strerror or error}",
            hint="give a text file with one word per line",
        ) from error
    except UnicodeDecodeError as error:
        raise MmtoolsError(
            f"dictionary {os.fspath(path)} is not UTF-8 (byte {error.start} is invalid)",
            hint="convert it, e.g. iconv -f WINDOWS-1258 -t UTF-8",
        ) from error
    words = []
    for line in content.splitlines():
        line = " ".join(line.split())
        if line and not line.startswith("#"):
            words.append(line)
    return words


def syllable_key(chunk: str) -> tuple[str, bool, bool]:
    """(lower-cased syllable without surrounding punctuation, has leading punctuation, has trailing)."""
    lead, core, trail = _EDGES.match(chunk).groups()
    return core.lower(), bool(lead), bool(trail)


class UserDictionary:
    """Finds dictionary words in a sequence of (normalised) syllables, leftmost and longest first."""

    def __init__(self, words: Iterable[str], *, tone_style: str = DEFAULT_TONE_STYLE):
        self._words: set[tuple[str, ...]] = set()
        for word in words:
            syllables = normalize_text(word.replace("_", " "), tone_style=tone_style, lowercase=True).split()
            if len(syllables) > 1:
                self._words.add(tuple(syllables))
        self.max_length = max((len(word) for word in self._words), default=0)

    def __len__(self) -> int:
        return len(self._words)

    def find_spans(self, syllables: list[str], unit_starts: list[bool]) -> list[tuple[int, int]]:
        """Spans ``(start, end)`` of syllable indexes covered by dictionary words, not overlapping.

        ``unit_starts[i]`` is False where syllable ``i`` continues a word the input already joined with
        "_": a dictionary word may contain such a word whole, but never start or end inside it.
        """
        if not self._words or len(syllables) < 2:
            return []
        keys = [syllable_key(syllable) for syllable in syllables]
        count = len(syllables)
        spans = []
        start = 0
        while start < count:
            end = self._longest_match(keys, unit_starts, start)
            if end:
                spans.append((start, end))
                start = end
            else:
                start += 1
        return spans

    def _longest_match(self, keys, unit_starts, start: int) -> int:
        if not unit_starts[start]:
            return 0
        count = len(keys)
        # The longest run from ``start`` that no punctuation interrupts.
        limit = start + 1
        while limit < count and limit - start < self.max_length and not keys[limit - 1][2] and not keys[limit][1]:
            limit += 1
        for end in range(limit, start + 1, -1):
            if (end == count or unit_starts[end]) and tuple(key[0] for key in keys[start:end]) in self._words:
                return end
        return 0
