"""BLEU-4 and CIDEr (CIDEr-D, as the COCO caption evaluation computes it) with pycocoevalcap's pure-Python
scorers (no Java: METEOR and SPICE, which need it, are left out), on captions in syllables
(mmtools.caption.text.syllables): lower case, NFC, no punctuation."""

from __future__ import annotations

import contextlib
import io
from typing import Hashable, Mapping, Sequence

from mmtools.caption.text import syllable_text
from mmtools.errors import MissingDependencyError

INSTALL_HINT = "pip install 'mmtools[caption]' (or pip install pycocoevalcap)"


def caption_scores(references: Mapping[Hashable, Sequence[str]], hypotheses: Mapping[Hashable, str]
                   ) -> dict[str, float]:
    """Corpus BLEU-4 and CIDEr of one hypothesis per image against that image's references."""
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError:
        raise MissingDependencyError("caption scores need pycocoevalcap, which is not installed",
                                     hint=INSTALL_HINT) from None
    keys = [key for key in hypotheses if references.get(key)]
    if not keys:
        return {"bleu4": 0.0, "cider": 0.0}
    gts = {i: [syllable_text(r) for r in references[key]] for i, key in enumerate(keys)}
    res = {i: [syllable_text(hypotheses[key])] for i, key in enumerate(keys)}
    with contextlib.redirect_stdout(io.StringIO()):  # the scorers print; stdout carries data
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        cider, _ = Cider().compute_score(gts, res)
    return {"bleu4": float(bleu[3]), "cider": float(cider)}
