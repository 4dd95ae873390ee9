"""Zero-shot tagging with a dual encoder: score labels against a text and/or an image.

Each label is encoded as a text (through ``template``, e.g. "ảnh {}"), and compared with the input's
embedding by cosine similarity, scaled as the model was trained: SigLIP-style models (which learn a
``logit_bias``) score each label independently with a sigmoid, so several labels can fit at once; CLIP-style
models compare labels against each other with a softmax. With both a text and an image, a label's score is
the mean of its two scores. This is the small stand-in the server uses until ``mmtools.tag`` (the tagging
command's library) provides trained taggers; its output shape is the same list of ``{"label", "score"}``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

DEFAULT_CLIP_SCALE = 100.0  # CLIP's learned temperature saturates at 100


def calibration(encoder: Any) -> tuple[float, float | None]:
    """The model's logit scale and bias (bias None for softmax models) from its weights, when it has them."""
    model = getattr(getattr(encoder, "inner", encoder), "model", None)
    scale = getattr(model, "logit_scale", None)
    bias = getattr(model, "logit_bias", None)
    value = math.exp(float(scale.detach().reshape(-1)[0])) if scale is not None else DEFAULT_CLIP_SCALE
    return value, (float(bias.detach().reshape(-1)[0]) if bias is not None else None)


def label_scores(similarities: Sequence[float], scale: float, bias: float | None) -> list[float]:
    """Cosine similarities of one input to each label, turned into probabilities."""
    logits = [scale * s + (bias or 0.0) for s in similarities]
    if bias is not None:
        return [1.0 / (1.0 + math.exp(-x)) if x > -60 else 0.0 for x in logits]
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def zero_shot_tags(encoder: Any, labels: Sequence[str], *, text: str | None = None, image: Any = None,
                   template: str = "{}") -> list[dict[str, Any]]:
    """``[{"label", "score"}]`` for every label, best first. ``image`` is an RGB PIL image."""
    import numpy as np

    if not labels:
        raise ValueError("no labels to score")
    if text is None and image is None:
        raise ValueError("nothing to tag: give a text, an image, or both")
    label_vectors = encoder.encode_texts([template.format(label) for label in labels])
    scale, bias = calibration(encoder)
    inputs = []
    if text is not None:
        inputs.append(encoder.encode_texts([text])[0])
    if image is not None:
        inputs.append(encoder.encode_images([image])[0])
    per_input = [label_scores(list(np.asarray(label_vectors) @ np.asarray(v)), scale, bias) for v in inputs]
    scores = [sum(column) / len(column) for column in zip(*per_input)]
    ranked = sorted(zip(labels, scores), key=lambda pair: -pair[1])
    return [{"label": label, "score": round(float(score), 6)} for label, score in ranked]
