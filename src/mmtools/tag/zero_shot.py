"""Zero-shot tagging with a retrieval model: labels become prompt-ensemble text vectors, inputs are scored
against them.

Scores, by family and input (documented in docs/records.md):

* SigLIP / SigLIP 2, images: ``sigmoid(scale * cos + bias)`` with the model's own learnt logit scale and bias:
  the probability, as the model was trained, that the label's text goes with the image. Labels are
  independent, so several can score high (multi-label).
* CLIP-style models (CLIP, VisionTextDualEncoder), images: a softmax over the labels of ``scale * cos`` with the
  model's logit scale: how the model would share one caption's worth of belief among the labels (they sum to 1).
* Text inputs, any family: the same softmax over labels of text–text similarity (no family was trained to give
  calibrated text–text probabilities).

Label vectors are computed once per model fingerprint, label list and template list, and cached in
``cache_dir()/zero-shot`` (written atomically, so two processes can share the cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from mmtools.embed import batched, embed_images, encode_query_texts
from mmtools.errors import Problem, ProblemHandler, UsageError, raise_problem
from mmtools.images import ImageSource
from mmtools.models.encoder import Encoder
from mmtools.paths import cache_dir
from mmtools.records import (EMBEDDING, EMBEDDING_FINGERPRINT, EMBEDDING_KIND, EMBEDDING_MODEL, Record,
                             atomic_path, decode_vector, record_id)
from mmtools.tag.labels import Thresholds, select_tags

log = logging.getLogger("mmtools")


# A prompt ensemble: each label's vector is the mean of its vectors under these templates ("{}" is the label).
VIETNAMESE_TEMPLATES = ("một bức ảnh về {}", "ảnh chụp {}", "hình ảnh của {}", "một tấm ảnh có {}", "{}")
ENGLISH_TEMPLATES = ("a photo of {}", "a picture of {}", "an image of {}")
DEFAULT_TEMPLATES = VIETNAMESE_TEMPLATES + ENGLISH_TEMPLATES

CACHE_FORMAT = 1
SIGMOID = "sigmoid"
SOFTMAX = "softmax"


def check_templates(templates: Sequence[str]) -> list[str]:
    """Templates must each hold exactly one ``{}`` where the label goes."""
    checked = []
    for template in templates:
        if template.count("{}") != 1:
            raise UsageError(f"template {template!r} must contain exactly one {{}} where the label goes",
                             hint="e.g. --template 'một bức ảnh về {}'")
        checked.append(template)
    if not checked:
        raise UsageError("no prompt templates given")
    return list(dict.fromkeys(checked))


def model_fingerprint_of(encoder: Encoder) -> str:
    """What identifies the encoder's weights and text rules (its name when it has no fingerprint)."""
    return getattr(encoder, "fingerprint", None) or encoder.name


def label_embeddings(encoder: Encoder, labels: Sequence[str], templates: Sequence[str],
                     use_cache: bool = True) -> Any:
    """(len(labels), dim) unit vectors: the mean of each label's template vectors, renormalised."""
    import numpy as np

    key = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, "model": model_fingerprint_of(encoder),
                                     "labels": list(labels), "templates": list(templates)},
                                    ensure_ascii=False).encode("utf-8")).hexdigest()[:32]
    path = cache_dir() / "zero-shot" / f"{key}.npy"
    if use_cache and path.exists():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape[0] == len(labels) and cached.ndim == 2:
                return cached.astype(np.float32)
        except (OSError, ValueError):
            pass  # a damaged cache entry is recomputed and replaced
    prompts = [template.replace("{}", label) for label in labels for template in templates]
    parts = [encode_query_texts(encoder, chunk) for chunk in batched(prompts, 256)]
    vectors = np.concatenate(parts).reshape(len(labels), len(templates), -1).mean(axis=1)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    vectors = vectors.astype(np.float32)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, ".npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, vectors, allow_pickle=False)
    return vectors


@dataclass(frozen=True)
class Scoring:
    """How cosine similarities become scores (see the module docstring)."""

    scale: float
    bias: float | None = None

    def scores(self, similarities: Any, kind: str) -> Any:
        """Scores for an (n, labels) array of cosine similarities of ``kind`` ("image" or "text") inputs."""
        import numpy as np

        logits = self.scale * np.asarray(similarities, dtype=np.float64)
        if self.method(kind) == SIGMOID:
            return 1.0 / (1.0 + np.exp(-(logits + self.bias)))
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def method(self, kind: str) -> str:
        return SIGMOID if self.bias is not None and kind == "image" else SOFTMAX


def scoring_for(encoder: Encoder) -> Scoring:
    scale_and_bias = getattr(encoder, "logit_scale_and_bias", None)
    if scale_and_bias is None:
        return Scoring(scale=100.0)  # CLIP's trained value, for encoders that do not say
    scale, bias = scale_and_bias()
    return Scoring(scale=scale, bias=bias)


@dataclass
class ZeroShotTagger:
    encoder: Encoder
    labels: list[str]
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    thresholds: Thresholds = field(default_factory=Thresholds)
    top_k: int | None = 5
    use_cache: bool = True

    def __post_init__(self) -> None:
        self.templates = check_templates(self.templates)
        self.label_vectors = label_embeddings(self.encoder, self.labels, self.templates, self.use_cache)
        self.scoring = scoring_for(self.encoder)
        self.fingerprint = model_fingerprint_of(self.encoder)

    def tags_for_vectors(self, vectors: Any, kind: str) -> list[list[dict]]:
        import numpy as np

        scores = self.scoring.scores(np.asarray(vectors, dtype=np.float32) @ self.label_vectors.T, kind)
        return [select_tags(self.labels, row, self.thresholds, self.top_k) for row in scores]

    def foreign_embedding(self, record: Record) -> str | None:
        """Why an embedding record cannot be scored with this model, or None if it can."""
        fingerprint = record.get(EMBEDDING_FINGERPRINT)
        model = record.get(EMBEDDING_MODEL)
        if fingerprint is not None and getattr(self.encoder, "fingerprint", None) is not None:
            if fingerprint != self.fingerprint:
                return (f"embedding was made by model {model or fingerprint} ({fingerprint}), not by "
                        f"{self.encoder.name} ({self.fingerprint}); pass --model with the model that made it")
            return None
        if model is not None and model != self.encoder.name:
            return (f"embedding was made by model {model}, not by {self.encoder.name}; "
                    "pass --model with the model that made it")
        return None


# ----------------------------------------------------------------------------------------- record stream


@dataclass
class _Item:
    number: int
    record: Record
    kind: str | None = None  # "image" | "text" | None (skipped)
    vector: Any = None
    text: str | None = None
    path: str | None = None
    tags: list[dict] | None = None


def tag_records(
    records: Iterable[Record],
    tagger: ZeroShotTagger,
    *,
    text_field: str = "text",
    root: str | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    on_problem: ProblemHandler = raise_problem,
) -> Iterator[Record]:
    """Yield each usable record with ``tags`` added, in input order.

    A record is scored from its ``embedding`` (made by the same model; never re-encoded) if it has one,
    else from the image at its ``path``, else from its ``text_field``.
    """
    import numpy as np

    number = 0
    for chunk in batched(records, max(batch_size, 1) * 8):
        items = []
        for record in chunk:
            number += 1
            items.append(_classify(_Item(number, record), tagger, text_field, root, on_problem))
        texts = [item for item in items if item.kind == "text" and item.vector is None]
        if texts:
            vectors = encode_query_texts(tagger.encoder, [item.text for item in texts])
            for item, vector in zip(texts, vectors):
                item.vector = vector
        images = [item for item in items if item.kind == "image" and item.vector is None]
        if images:
            sources = [ImageSource(id=str(i), path=item.path) for i, item in enumerate(images)]
            for embedded in embed_images(sources, tagger.encoder, batch_size=batch_size, workers=workers,
                                         on_problem=lambda p: on_problem(
                                             Problem(p.source, f"{p.reason}, skipped")),
                                         vector_format="list"):
                images[int(embedded["id"])].vector = np.asarray(embedded[EMBEDDING], dtype=np.float32)
        for kind in ("image", "text"):
            ready = [item for item in items if item.kind == kind and item.vector is not None]
            if ready:
                for item, tags in zip(ready, tagger.tags_for_vectors(np.stack([i.vector for i in ready]), kind)):
                    item.tags = tags
        for item in items:
            if item.tags is not None:
                yield {**item.record, "tags": item.tags}


def _classify(item: _Item, tagger: ZeroShotTagger, text_field: str, root: str | None,
              on_problem: ProblemHandler) -> _Item:
    record = item.record
    where = record_id(record, f"record {item.number}")
    if EMBEDDING in record:
        reason = tagger.foreign_embedding(record)
        if reason is None:
            try:
                vector = decode_vector(record[EMBEDDING])
            except ValueError as exc:
                reason = str(exc)
            else:
                if len(vector) != tagger.label_vectors.shape[1]:
                    reason = (f"embedding has {len(vector)} dimensions, model {tagger.encoder.name} makes "
                              f"{tagger.label_vectors.shape[1]}")
                else:
                    item.vector = vector
                    item.kind = "text" if record.get(EMBEDDING_KIND) == "text" else "image"
                    return item
        on_problem(Problem(where, f"{reason}, skipped"))
        return item
    path = record.get("path")
    if isinstance(path, str) and path:
        import os

        item.path = path if os.path.isabs(path) or root is None else os.path.join(root, path)
        item.kind = "image"
        return item
    text = record.get(text_field)
    if isinstance(text, str) and text.strip():
        item.text, item.kind = text, "text"
        return item
    on_problem(Problem(where, f"record has no 'embedding', 'path' or {text_field!r} text to tag, skipped"))
    return item
