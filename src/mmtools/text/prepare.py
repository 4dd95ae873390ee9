"""What each model family needs done to text before tokenising, and doing it."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any


_LETTER_OR_DIGIT = re.compile(r"[^\W_]")


def has_letters_or_digits(text: str) -> bool:
    """False for text that is only punctuation, symbols or emoji: worth a warning, since no model or
    segmenter can make much of it."""
    return bool(_LETTER_OR_DIGIT.search(text))


@dataclass(frozen=True)
class TextRules:
    """Declared by each model family; applied by embed-texts, search and tag alike.

    normalize: Unicode NFC, one tone-mark placement, tidy whitespace (mmtools.text.normalize).
    lowercase: SigLIP models were trained on lower-cased text.
    segment:   PhoBERT-based encoders expect word-segmented input ("xe_hơi").
    padding:   "max_length" for SigLIP (it was trained on 64-token padded text), else "longest".
    attention_mask: False for SigLIP / SigLIP 2: their text towers were trained with no mask (pads attend and
               the last position is pooled), so passing the tokenizer's mask changes the vectors.
    """

    max_length: int
    normalize: bool = True
    lowercase: bool = False
    segment: bool = False
    padding: str = "longest"
    attention_mask: bool = True
    segmenter_backend: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, overrides: dict[str, Any]) -> "TextRules":
        known = {k: v for k, v in overrides.items() if k in self.__dataclass_fields__ and k != "extra"}
        return replace(self, **known)


class TextPreparer:
    """Applies a model's TextRules; holds the word segmenter so it is loaded once per process."""

    def __init__(self, rules: TextRules):
        self.rules = rules
        self._segmenter = None

    def __call__(self, texts: list[str]) -> list[str]:
        rules = self.rules
        if rules.normalize:
            from mmtools.text.normalize import normalize_text

            texts = [normalize_text(t, lowercase=rules.lowercase) for t in texts]
        else:
            texts = [unicodedata.normalize("NFC", t) for t in texts]
            if rules.lowercase:
                texts = [t.lower() for t in texts]
        if rules.segment:
            texts = self._get_segmenter().segment_many(texts)
        return texts

    def _get_segmenter(self):
        if self._segmenter is None:
            from mmtools.text.segment import DEFAULT_BACKEND, get_segmenter

            self._segmenter = get_segmenter(self.rules.segmenter_backend or DEFAULT_BACKEND)
        return self._segmenter
