"""Retrieval metrics by the standard image-caption protocol (Flickr30k / COCO).

Each text names one image; an image may have several captions.

- text -> image: for each caption, the rank of its image among all images.
- image -> text: for each image, the best rank among all texts of any of its own captions.

Recall@K is the share of queries whose rank is at most K, in percent; median and mean rank are over the
same ranks. Ties count against the model: a candidate scoring exactly as high as the right one ranks before
it, so a model that gives every input the same vector scores at chance, not at 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

DEFAULT_KS = (1, 5, 10)
CHUNK = 1024  # queries scored at a time: memory stays CHUNK x candidates

# One score matrix per query chunk: (queries, candidates) for rows ``start:stop`` of the query set.
ScoreFunction = Callable[[int, int], Any]


@dataclass
class RetrievalSet:
    """Unit vectors of the images and texts, and for each text the row of its image."""

    images: Any  # (n_images, dim) float32
    texts: Any  # (n_texts, dim) float32
    text_image: Any  # (n_texts,) int

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
        block = np.asarray(scores(start, stop))
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
        block = np.asarray(scores(start, stop))
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
