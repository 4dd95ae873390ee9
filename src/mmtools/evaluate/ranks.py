"""Ranks the way every metric and fusion in mmtools counts them: ties against the model, non-finite last.

A candidate that scores exactly as high as another takes the worse of their ranks, so a model that cannot
tell them apart gains nothing from the order they happen to be stored in. A NaN or infinite score (an fp16
overflow, a broken model) ranks below every finite one, never first.
"""

from __future__ import annotations

from typing import Any


def comparable_scores(block: Any) -> Any:
    """``block`` as float64 with every non-finite score replaced by -inf: last, and tied with each other."""
    import numpy as np

    block = np.asarray(block, dtype=np.float64)
    return np.where(np.isfinite(block), block, -np.inf)


def tied_worst_ranks(block: Any) -> Any:
    """1-based rank of every candidate of every row of a (queries, candidates) score block: the number of
    candidates scoring at least as high (itself included)."""
    import numpy as np

    scores = comparable_scores(block)
    if scores.ndim != 2 or scores.shape[1] == 0:
        return np.zeros(scores.shape, dtype=np.int64)
    n = scores.shape[1]
    order = np.argsort(scores, axis=1, kind="stable")  # ascending
    ordered = np.take_along_axis(scores, order, axis=1)
    starts_group = np.ones(ordered.shape, dtype=bool)
    starts_group[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    # Position of the first of each run of equal scores: how many candidates score strictly lower.
    lower = np.maximum.accumulate(np.where(starts_group, np.arange(n)[None, :], 0), axis=1)
    ranks = np.empty(order.shape, dtype=np.int64)
    np.put_along_axis(ranks, order, n - lower, axis=1)
    return ranks


def tied_worst_list_ranks(scores: list[float]) -> list[int]:
    """The same for one list of scores."""
    return tied_worst_ranks([scores])[0].tolist() if scores else []
