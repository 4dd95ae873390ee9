"""Retrieval metrics by the standard image-caption protocol (Flickr30k / COCO).

Each text names one image; an image may have several captions.

- text -> image: for each caption, the rank of its image among all images.
- image -> text: for each image, the best rank among all texts of any of its own captions.

Recall@K is the share of queries whose rank is at most K, in percent; median and mean rank are over the
same ranks. Ties count against the model: a candidate scoring exactly as high as the right one ranks before
it, so a model that gives every input the same vector scores at chance, not at 100. A non-finite score
(NaN from an fp16 overflow) ranks last (mmtools.evaluate.ranks), never first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from mmtools.errors import MmtoolsError
from mmtools.evaluate.ranks import comparable_scores

DEFAULT_KS = (1, 5, 10)
NON_FINITE_HINT = ("on a GPU this is most often an fp16 overflow: evaluate with --device cpu, or retrain / "
                   "export the model in fp32 or bf16")


class NonFiniteEmbeddings(MmtoolsError):
    """A model gave NaN or infinite vectors: its metrics would mean nothing."""
CHUNK = 1024  # queries scored at a time: memory stays CHUNK x candidates

# One score matrix per query chunk: (queries, candidates) for rows ``start:stop`` of the query set.
ScoreFunction = Callable[[int, int], Any]


@dataclass
class RetrievalSet:
    """Unit vectors of the images and texts, and for each text the row of its image."""

    images: Any  # (n_images, dim) float32
    texts: Any  # (n_texts, dim) float32
    text_image: Any  # (n_texts,) int
    precision: str | None = None  # the towers that made the vectors, where a runtime has several

    def __post_init__(self) -> None:
        import numpy as np

        self.images = np.asarray(self.images, dtype=np.float32)
        self.texts = np.asarray(self.texts, dtype=np.float32)
        self.text_image = np.asarray(self.text_image, dtype=np.int64)
        if self.images.ndim != 2 or self.texts.ndim != 2 or self.images.shape[1] != self.texts.shape[1]:
            raise ValueError(f"image vectors {self.images.shape} and text vectors {self.texts.shape} do not fit")
        if len(self.text_image) != len(self.texts):
            raise ValueError("every text needs the row of its image")
        if len(self.texts) and (self.text_image.min() < 0 or self.text_image.max() >= len(self.images)):
            raise ValueError("a text names an image row that does not exist")

    def t2i_scores(self, start: int, stop: int) -> Any:
        return self.texts[start:stop] @ self.images.T

    def i2t_scores(self, start: int, stop: int) -> Any:
        return self.images[start:stop] @ self.texts.T


def text_to_image_ranks(scores: ScoreFunction, n_texts: int, text_image: Any) -> Any:
    """1-based rank of each text's own image (ties counted against the model)."""
    import numpy as np

    ranks = np.empty(n_texts, dtype=np.int64)
    for start in range(0, n_texts, CHUNK):
        stop = min(n_texts, start + CHUNK)
        block = comparable_scores(scores(start, stop))
        right = block[np.arange(stop - start), text_image[start:stop]][:, None]
        ranks[start:stop] = (block >= right).sum(axis=1)  # itself included: the best is rank 1
    return ranks


def image_to_text_ranks(scores: ScoreFunction, n_images: int, text_image: Any) -> Any:
    """1-based rank of the best-ranked own caption of each image; images with no caption are left out."""
    import numpy as np

    has_text = np.zeros(n_images, dtype=bool)
    has_text[text_image] = True
    ranks = np.full(n_images, -1, dtype=np.int64)
    for start in range(0, n_images, CHUNK):
        stop = min(n_images, start + CHUNK)
        block = comparable_scores(scores(start, stop))
        own = text_image[None, :] == np.arange(start, stop)[:, None]  # (images, texts)
        best_own = np.where(own, block, -np.inf).max(axis=1)[:, None]
        # Ties against the model, but the image's other captions never push its best one down.
        ranks[start:stop] = ((block >= best_own) & ~own).sum(axis=1) + 1
    return ranks[has_text]


def summarise(ranks: Any, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    import numpy as np

    if len(ranks) == 0:
        return {**{f"R@{k}": 0.0 for k in ks}, "median_rank": 0.0, "mean_rank": 0.0}
    out = {f"R@{k}": round(float((ranks <= k).mean() * 100), 2) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    out["mean_rank"] = round(float(ranks.mean()), 2)
    return out


def metrics_from_ranks(t2i: Any, i2t: Any, n_images: int, n_texts: int,
                       ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    t2i_summary, i2t_summary = summarise(t2i, ks), summarise(i2t, ks)
    recalls = [t2i_summary[f"R@{k}"] for k in ks] + [i2t_summary[f"R@{k}"] for k in ks]
    return {"images": n_images, "texts": n_texts, "t2i": t2i_summary, "i2t": i2t_summary,
            "mean_recall": round(sum(recalls) / len(recalls), 2)}


def retrieval_metrics(data: RetrievalSet, ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """Recall@K, median and mean rank in both directions, and the numbers of images and texts."""
    t2i = text_to_image_ranks(data.t2i_scores, len(data.texts), data.text_image)
    i2t = image_to_text_ranks(data.i2t_scores, len(data.images), data.text_image)
    return metrics_from_ranks(t2i, i2t, len(data.images), len(data.texts), ks)


def chance_recall(n_candidates: int, k: int) -> float:
    """Recall@K in percent of a model that ranks at random (one right answer among ``n_candidates``)."""
    return round(min(1.0, k / max(1, n_candidates)) * 100, 2)


def recall_curve(data_or_ranks: Any, max_k: int = 10) -> dict[int, float]:
    """Text -> image Recall@K for K = 1 .. max_k (what eval retrieval --plot draws)."""
    ranks = data_or_ranks
    if isinstance(data_or_ranks, RetrievalSet):
        ranks = text_to_image_ranks(data_or_ranks.t2i_scores, len(data_or_ranks.texts), data_or_ranks.text_image)
    return {k: round(float((ranks <= k).mean() * 100), 2) if len(ranks) else 0.0 for k in range(1, max_k + 1)}


# ------------------------------------------------------------------------------------- inputs to RetrievalSet


def encode_examples(encoder: Any, examples: Sequence[Any], *, batch_size: int = 32,
                    on_problem: Any = None) -> RetrievalSet:
    """Embed the images and captions of ``examples`` (mmtools.train.data.Example) with ``encoder``; an image
    that cannot be read is reported and its captions left out. The images go first, so that the captions can
    take the text tower a search of these images would take (``text_encoder``)."""
    import numpy as np

    from mmtools.errors import Problem, raise_problem
    from mmtools.images import ImageDecodeError, load_image

    on_problem = on_problem or raise_problem
    image_vectors, kept = [], []
    for start in range(0, len(examples), batch_size):
        images, batch = [], []
        for example in examples[start:start + batch_size]:
            try:
                images.append(load_image(example.image, draft_size=encoder.image_size))
                batch.append(example)
            except ImageDecodeError as exc:
                on_problem(Problem(f"{example.image} ({example.where})", f"{exc}, skipped"))
        if batch:
            image_vectors.append(require_finite(encoder.encode_images(images), encoder.name, "images"))
            kept.extend(batch)
    if not image_vectors:
        raise ValueError("no image of the evaluation set could be read")
    images_array = np.concatenate(image_vectors)
    texts = [text for example in kept for text in example.texts]
    text_image = [row for row, example in enumerate(kept) for _ in example.texts]
    text_encoder = texts_encoder(encoder, images_array)
    text_vectors = [require_finite(text_encoder.encode_texts(texts[start:start + batch_size]), encoder.name,
                                   "texts") for start in range(0, len(texts), batch_size)]
    return RetrievalSet(images_array, np.concatenate(text_vectors) if text_vectors else
                        np.zeros((0, images_array.shape[1]), np.float32), text_image,
                        precision=getattr(text_encoder, "precision", None))


def texts_encoder(encoder: Any, images: Any) -> Any:
    """The encoder that embeds texts to be ranked against ``images`` (their vectors): on ONNX Runtime with
    int8 allowed (runtime onnx or auto), the int8 text tower where it passed the export's probe texts and,
    measured now on these images, agrees with fp32 as the query path asks of an index
    (mmtools.models.agreement: top-10 overlap and cosine); else ``encoder`` itself. Nothing is stored."""
    export = getattr(encoder, "export", None)
    if not (getattr(encoder, "int8_queries", False) and export is not None and export.int8_text_ok
            and export.has("text", int8=True)):
        return encoder
    from mmtools.models.agreement import measure_agreement

    figures = measure_agreement(encoder, images)
    return encoder.variant(text_int8=True) if figures is not None and figures["ok"] else encoder


def require_finite(vectors: Any, model: str, what: str) -> Any:
    """``vectors``, or NonFiniteEmbeddings naming the model when any of them holds NaN or infinity."""
    import numpy as np

    vectors = np.asarray(vectors)
    bad = ~np.isfinite(vectors).all(axis=1) if vectors.ndim == 2 else ~np.isfinite(vectors)
    if bad.any():
        raise NonFiniteEmbeddings(f"model {model} gave NaN or infinite vectors for {int(bad.sum())} of "
                                  f"{len(bad)} {what}; its recall would mean nothing", hint=NON_FINITE_HINT)
    return vectors


def set_from_records(image_records: Sequence[dict[str, Any]], text_records: Sequence[dict[str, Any]],
                     on_problem: Any = None) -> tuple[RetrievalSet, str, list[str]]:
    """A RetrievalSet from embedding records: images by ``id``, texts naming theirs in ``image_id``.

    Returns the set, the model named by the records, and the image ids in row order.
    """
    import numpy as np

    from mmtools.errors import Problem, raise_problem
    from mmtools.records import EMBEDDING, EMBEDDING_MODEL, decode_vector

    on_problem = on_problem or raise_problem
    rows: dict[str, int] = {}
    image_vectors, models = [], set()
    for number, record in enumerate(image_records, 1):
        where = str(record.get("id", f"image record {number}"))
        if EMBEDDING not in record or "id" not in record:
            on_problem(Problem(where, "image record needs an 'id' and an 'embedding', skipped"))
            continue
        if str(record["id"]) in rows:
            on_problem(Problem(where, "image id appears twice, the later record skipped"))
            continue
        try:
            image_vectors.append(decode_vector(record[EMBEDDING]))
        except ValueError as exc:
            on_problem(Problem(where, f"{exc}, skipped"))
            continue
        rows[str(record["id"])] = len(rows)
        models.add(record.get(EMBEDDING_MODEL))
    text_vectors, text_image = [], []
    for number, record in enumerate(text_records, 1):
        where = str(record.get("id", f"text record {number}"))
        image_id = record.get("image_id")
        if EMBEDDING not in record or image_id is None:
            on_problem(Problem(where, "text record needs an 'embedding' and the 'image_id' of its image, skipped"))
            continue
        if str(image_id) not in rows:
            on_problem(Problem(where, f"text names image {image_id!r}, which is not among the images, skipped"))
            continue
        try:
            text_vectors.append(decode_vector(record[EMBEDDING]))
        except ValueError as exc:
            on_problem(Problem(where, f"{exc}, skipped"))
            continue
        text_image.append(rows[str(image_id)])
        models.add(record.get(EMBEDDING_MODEL))
    if not image_vectors or not text_vectors:
        raise ValueError("no usable image or text embedding records")
    models.discard(None)
    if len(models) > 1:
        raise ValueError(f"the records come from several models ({', '.join(sorted(map(str, models)))}); "
                         "images and texts must be embedded by one model")
    dims = {len(v) for v in image_vectors} | {len(v) for v in text_vectors}
    if len(dims) > 1:
        raise ValueError(f"the embeddings have different dimensions ({', '.join(map(str, sorted(dims)))})")
    name = next(iter(models)) if models else "embeddings"
    return RetrievalSet(np.stack(image_vectors), np.stack(text_vectors), text_image), name, list(rows)


# ------------------------------------------------------------------------------------------- fusion


def fused_metrics(members: Sequence[RetrievalSet], weights: Sequence[float] | None = None,
                  ks: Sequence[int] = DEFAULT_KS) -> tuple[dict[str, Any], Any]:
    """Metrics of the fusion of several models' rankings on the same images and texts (same rows), and its
    text -> image ranks (for curves)."""
    from mmtools.fusion import fuse_score_blocks

    first = members[0]
    for other in members[1:]:
        if other.images.shape[0] != first.images.shape[0] or list(other.text_image) != list(first.text_image):
            raise ValueError("fused models must be evaluated on the same images and texts")

    def t2i(start: int, stop: int) -> Any:
        return fuse_score_blocks([m.t2i_scores(start, stop) for m in members], weights=weights)

    def i2t(start: int, stop: int) -> Any:
        return fuse_score_blocks([m.i2t_scores(start, stop) for m in members], weights=weights)

    t2i_ranks = text_to_image_ranks(t2i, len(first.texts), first.text_image)
    i2t_ranks = image_to_text_ranks(i2t, len(first.images), first.text_image)
    return metrics_from_ranks(t2i_ranks, i2t_ranks, len(first.images), len(first.texts), ks), t2i_ranks


def curve_ks(n_candidates: int) -> list[int]:
    return [k for k in (1, 2, 5, 10, 20, 50, 100) if k <= max(1, n_candidates)]
