"""Combining the rankings of several models into one: reciprocal rank fusion, or weighted normalised scores.

Reciprocal rank fusion (Cormack et al. 2009) needs no calibration between models: a candidate scores
sum_m w_m / (RRF_K + rank_m), ranks counted from 1 (tied scores share the worst of their ranks, so the order
a model happens to list them in decides nothing), nothing from a ranking that does not hold it. Weighted
score fusion min-max normalises each model's scores over its own list, then adds them with the given weights
(the design's CLIP 30% + BEiT-3 70%). Whether a fusion beats its best member is an empirical question:
``eval retrieval`` reports both side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from mmtools.errors import UsageError
from mmtools.evaluate.ranks import comparable_scores, tied_worst_list_ranks, tied_worst_ranks

RRF_K = 60
METHODS = ("rrf", "weighted")


def check_weights(weights: Sequence[float] | None, members: int) -> list[float]:
    if weights is None:
        return [1.0] * members
    if len(weights) != members:
        raise UsageError(f"{len(weights)} weights for {members} models; give one weight per model")
    if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise UsageError("weights must be zero or more, and at least one above zero")
    return [float(w) for w in weights]


def method_for(weights: Sequence[float] | None) -> str:
    return "weighted" if weights is not None else "rrf"


# ------------------------------------------------------------------------------------ short ranked lists


@dataclass
class FusedHit:
    id: str
    score: float
    members: dict[int, tuple[int, float]] = field(default_factory=dict)  # member -> (rank, score)


def fuse_rankings(rankings: Sequence[Sequence[tuple[str, float]]], *, weights: Sequence[float] | None = None,
                  method: str | None = None, k: int = 10) -> list[FusedHit]:
    """One ranking from several ``[(id, score), ...]`` lists (best first): distinct ids, best ``k``."""
    method = method or method_for(weights)
    if method not in METHODS:
        raise UsageError(f"unknown fusion {method!r}; choose one of {', '.join(METHODS)}")
    weights = check_weights(weights, len(rankings))
    hits: dict[str, FusedHit] = {}
    for member, (ranking, weight) in enumerate(zip(rankings, weights)):
        distinct: dict[str, float] = {}
        for item, score in ranking:  # a ranking that repeats an id: its best entry counts
            distinct.setdefault(item, score)
        scores = comparable_scores(list(distinct.values())).tolist()
        finite = [score for score in scores if score != float("-inf")]
        low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)
        for rank, (item, score) in zip(tied_worst_list_ranks(scores), zip(distinct, scores)):
            score = max(score, low)  # a non-finite score counts as the list's worst
            hit = hits.setdefault(item, FusedHit(item, 0.0))
            hit.members[member] = (rank, score)
            if method == "rrf":
                hit.score += weight / (RRF_K + rank)
            else:
                hit.score += weight * ((score - low) / (high - low) if high > low else 1.0)
    ordered = sorted(hits.values(), key=lambda hit: -hit.score)  # stable: ties keep first-seen order
    return ordered[:k]


# -------------------------------------------------------------------- dense score matrices (for eval)


def fuse_score_blocks(blocks: Sequence[Any], *, weights: Sequence[float] | None = None,
                      method: str | None = None) -> Any:
    """Fused scores of (queries, candidates) blocks, one per model, every candidate ranked by every model."""
    import numpy as np

    method = method or method_for(weights)
    weights = check_weights(weights, len(blocks))
    fused = np.zeros(np.asarray(blocks[0]).shape, dtype=np.float64)
    for block, weight in zip(blocks, weights):
        if method == "rrf":
            fused += weight / (RRF_K + tied_worst_ranks(block))
        else:
            block = comparable_scores(block)
            finite = np.isfinite(block)
            worst = np.where(finite, block, np.inf).min(axis=1, keepdims=True)
            block = np.where(finite, block, np.where(np.isfinite(worst), worst, 0.0))  # non-finite: the worst
            low, high = block.min(axis=1, keepdims=True), block.max(axis=1, keepdims=True)
            span = np.where(high > low, high - low, 1.0)
            fused += weight * np.where(high > low, (block - low) / span, 1.0)
    return fused


# ------------------------------------------------------------------------------ search over several indexes


def fused_found(members: Sequence[tuple[str, Callable[[list[Any], int], Iterable[tuple[Any, list[Any]]]]]],
                queries: Iterable[Any], *, k: int = 10, weights: Sequence[float] | None = None,
                fetch: int | None = None, batch_size: int = 64) -> Iterator[tuple[Any, list[Any]]]:
    """Per query, one ranking fused from several indexes' (each searched with its own model and checked
    plan: ``members`` are ``(name, search(batch, n))`` giving ``(query, [mmtools.search.Found])``): distinct
    ids, best ``k``, each a Found with ``fusion`` (the fused value), ``scores`` ({index: its own value}) and
    ``fused`` (each index's rank and score).

    ``fetch`` hits are taken from each index (default 4k, at least 50) so that a candidate ranked a little
    lower by one model still meets the other's.
    """
    import dataclasses

    from mmtools.embed import batched

    check_weights(weights, len(members))
    fetch = fetch or max(4 * k, 50)
    for batch in batched(queries, batch_size):
        per_member = [{query.id: found for query, found in search(batch, fetch)} for _name, search in members]
        for query in batch:
            lists = [grouped.get(query.id, []) for grouped in per_member]
            if not any(lists):
                continue
            fused = fuse_rankings([[(item.id, item.value) for item in found] for found in lists],
                                  weights=weights, k=k)
            first: dict[str, Any] = {}
            for found in lists:
                for item in found:
                    first.setdefault(item.id, item)
            names = [name for name, _ in members]
            yield query, [dataclasses.replace(
                first[hit.id], score=None, fusion=hit.score, matched=None,
                scores={names[m]: s for m, (_r, s) in sorted(hit.members.items())},
                fused=[{"index": names[m], "rank": r, "score": round(s, 6)} for m, (r, s) in sorted(hit.members.items())])
                for hit in fused]
