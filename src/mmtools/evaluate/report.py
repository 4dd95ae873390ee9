"""The report of eval retrieval: models (or precomputed embeddings) side by side, a fusion beside them."""

from __future__ import annotations

from typing import Any, Sequence

from mmtools.errors import MmtoolsError, ProblemHandler, UsageError, raise_problem
from mmtools.evaluate.retrieval import (RetrievalSet, chance_recall, curve_ks, encode_examples, fused_metrics,
                                        retrieval_metrics, set_from_records, text_to_image_ranks)


class EvaluationError(MmtoolsError):
    """The evaluation data cannot be used (no readable image, records that do not fit together)."""


def evaluate_retrieval(*, data: str | None, models: Sequence[str | None], images: Sequence[str],
                       texts: Sequence[str], fuse: bool = False, weights: Sequence[float] | None = None,
                       image_column: str = "path", caption_columns: Sequence[str] = ("caption", "captions"),
                       batch_size: int = 32, device: str | None = None, runtime: str | None = None,
                       plot: str | None = None,
                       on_problem: ProblemHandler = raise_problem) -> dict[str, Any]:
    members: list[tuple[dict[str, Any], RetrievalSet]] = []
    try:
        if data:
            from mmtools.models import load_encoder
            from mmtools.train.data import load_pairs

            examples = load_pairs(data, "test data", image_column=image_column, caption_columns=caption_columns,
                                  on_problem=on_problem)
            for name in models:
                encoder = load_encoder(name, device, runtime)
                dataset = encode_examples(encoder, examples, batch_size=batch_size, on_problem=on_problem)
                members.append(({"model": encoder.name, "fingerprint": encoder.fingerprint,
                                 **({"precision": dataset.precision} if dataset.precision else {})}, dataset))
        else:
            from mmtools.records import read_records

            for image_path, text_path in zip(images, texts):
                dataset, name, _ids = set_from_records(list(read_records([image_path], on_problem)),
                                                       list(read_records([text_path], on_problem)), on_problem)
                members.append(({"model": name, "images": image_path, "texts": text_path}, dataset))
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None
    if weights is not None and len(weights) != len(members):
        raise UsageError(f"{len(weights)} weights for {len(members)} models; give one weight per model")
    results, curves = [], {}
    for label, dataset in members:
        results.append({**label, **_strip_counts(retrieval_metrics(dataset))})
        curves[_short(label["model"])] = _curve(text_to_image_ranks(dataset.t2i_scores, len(dataset.texts),
                                                                    dataset.text_image), len(dataset.images))
    if fuse:
        if len(members) < 2:
            raise UsageError("a fusion needs at least two models")
        try:
            metrics, ranks = fused_metrics([dataset for _, dataset in members], weights)
        except ValueError as exc:
            raise EvaluationError(str(exc)) from None
        name = "fusion(" + ("weighted " + ",".join(f"{w:g}" for w in weights) if weights else "rrf") + ")"
        results.append({"model": name, "members": [label["model"] for label, _ in members],
                        **_strip_counts(metrics)})
        curves[name] = _curve(ranks, len(members[0][1].images))
    first = members[0][1]
    report = {"images": len(first.images), "texts": len(first.texts),
              "chance": {f"R@{k}": chance_recall(len(first.images), k) for k in (1, 5, 10)}, "results": results}
    if plot:
        from mmtools.plotting import recall_curves

        recall_curves(plot, curves, title=f"text → image Recall@K ({len(first.images)} images, "
                                          f"{len(first.texts)} captions)")
    return report


def _strip_counts(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in ("images", "texts")}


def _curve(ranks: Any, n_images: int) -> dict[int, float]:
    return {k: float((ranks <= k).mean()) for k in curve_ks(n_images)}


def _short(name: str) -> str:
    import os

    return os.path.basename(name.rstrip("/")) or name
