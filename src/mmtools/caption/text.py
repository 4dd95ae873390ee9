"""Caption text: the syllable form captions are scored and compared in, and a syllable tokenizer learnt from
training captions (what `train captioner --arch tiny` gives its decoder).

Vietnamese writes one syllable per space-separated chunk ("bóng chày"), so a syllable is the unit BLEU and
CIDEr count, as UIT-ViIC and VieCap4H score. Text is normalised first (Unicode NFC, one tone-mark placement,
lower case), punctuation is dropped and word-segmentation underscores ("bóng_chày") split into syllables.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

from mmtools.text.normalize import normalize_text

_PUNCTUATION = re.compile(r"[^\w\s]|_", re.UNICODE)
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]", "[SEP]")


def syllables(text: str) -> list[str]:
    """``text`` as the syllables it is scored in: lower case, NFC, no punctuation, no underscores."""
    return _PUNCTUATION.sub(" ", normalize_text(text, lowercase=True)).split()


def syllable_text(text: str) -> str:
    return " ".join(syllables(text))


def most_frequent(texts: Iterable[str]) -> str | None:
    """The most frequent text by its syllable form (ties: the one seen first); returned as first written."""
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for text in texts:
        key = syllable_text(text)
        if key:
            counts[key] += 1
            first.setdefault(key, text.strip())
    if not counts:
        return None
    best = max(counts.values())
    return next(first[key] for key in first if counts[key] == best)


def syllable_tokenizer(texts: Iterable[str], *, min_count: int = 1, max_length: int = 64):
    """A fast word-level tokenizer over the syllables of ``texts`` (seen ``min_count`` times or more; the rest
    read as [UNK]), lower-casing and NFC-normalising its input, with [BOS] text [EOS] around each text and
    [SEP] between a question and its answer. Decoding joins syllables with spaces."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    backend.train_from_iterator([normalize_text(t) for t in texts],
                                trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS),
                                                          min_frequency=min_count))
    ids = {token: backend.token_to_id(token) for token in SPECIAL_TOKENS}
    backend.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", pair="[BOS] $A [SEP] $B:1 [EOS]:1",
        special_tokens=[("[BOS]", ids["[BOS]"]), ("[EOS]", ids["[EOS]"]), ("[SEP]", ids["[SEP]"])])
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins tokens with spaces
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                   bos_token="[BOS]", eos_token="[EOS]", sep_token="[SEP]",
                                   model_max_length=max_length)
