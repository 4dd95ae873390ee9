"""Multi-label precision, recall and F1 (micro and macro), and per-label threshold tuning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence


@dataclass(frozen=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def support(self) -> int:
        return self.tp + self.fn

    def as_dict(self) -> dict[str, float]:
        return {"precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4)}


def tagging_report(gold: Sequence[Iterable[str]], predicted: Sequence[Iterable[str]]) -> dict[str, Any]:
    """Micro and macro P/R/F1 and per-label counts for sets of labels per example.

    Macro averages run over every label that occurs in the gold tags or the predictions (a label never
    seen and never predicted has no defined F1 and is left out).
    """
    per_label: dict[str, list[int]] = {}
    for gold_tags, predicted_tags in zip(gold, predicted, strict=True):
        g, p = set(gold_tags), set(predicted_tags)
        for label in g | p:
            counts = per_label.setdefault(label, [0, 0, 0])
            counts[0] += label in g and label in p
            counts[1] += label in p and label not in g
            counts[2] += label in g and label not in p
    labels = {label: Counts(*c) for label, c in sorted(per_label.items())}
    micro = Counts(sum(c.tp for c in labels.values()), sum(c.fp for c in labels.values()),
                   sum(c.fn for c in labels.values()))
    n = len(labels) or 1
    macro = {"precision": round(sum(c.precision for c in labels.values()) / n, 4),
             "recall": round(sum(c.recall for c in labels.values()) / n, 4),
             "f1": round(sum(c.f1 for c in labels.values()) / n, 4)}
    return {"examples": len(gold), "micro": micro.as_dict(), "macro": macro,
            "per_label": {label: {**c.as_dict(), "support": c.support, "predicted": c.tp + c.fp}
                          for label, c in labels.items()}}


def micro_f1(targets: Any, probabilities: Any, thresholds: Any = 0.5) -> float:
    """Micro F1 of 0/1 ``targets`` (n, labels) against ``probabilities`` cut at ``thresholds``."""
    import numpy as np

    predicted = np.asarray(probabilities) >= np.asarray(thresholds)
    truth = np.asarray(targets) > 0.5
    tp = float((predicted & truth).sum())
    denominator = float(predicted.sum() + truth.sum())
    return 2 * tp / denominator if denominator else 0.0


CANDIDATE_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


MIN_POSITIVES_TO_TUNE = 5


def tune_thresholds(targets: Any, probabilities: Any, default: float = 0.5,
                    min_positives: int = MIN_POSITIVES_TO_TUNE) -> list[float]:
    """For each label, the threshold in 0.05..0.95 that gives the best F1 on these (validation) examples.

    Ties go to the threshold nearest ``default``. A label with fewer than ``min_positives`` positive examples
    keeps ``default``: with one or two positives the best threshold is often the lowest, which floods the
    label with false positives on new data.
    """
    import numpy as np

    truth = np.asarray(targets) > 0.5
    probs = np.asarray(probabilities)
    chosen = []
    for j in range(truth.shape[1]):
        if truth[:, j].sum() < max(1, min_positives):
            chosen.append(default)
            continue
        best = (-1.0, 0.0, default)
        for t in CANDIDATE_THRESHOLDS:
            predicted = probs[:, j] >= t
            tp = float((predicted & truth[:, j]).sum())
            denominator = float(predicted.sum() + truth[:, j].sum())
            f1 = 2 * tp / denominator if denominator else 0.0
            candidate = (round(f1, 9), -abs(t - default), t)
            if candidate > best:
                best = candidate
        chosen.append(best[2])
    return chosen


def halves(groups: Sequence[str], seed: int = 0) -> Any:
    """A deterministic split of rows into two halves by group (the image a row shows): a boolean array,
    True for the first half. Rows of one group are always on the same side."""
    import random

    import numpy as np

    keys = list(dict.fromkeys(groups))
    random.Random(seed).shuffle(keys)
    first = set(keys[:len(keys) // 2])
    return np.array([g in first for g in groups], dtype=bool)


def cross_fitted_thresholds(targets: Any, probabilities: Any, groups: Sequence[str], *, seed: int = 0,
                            default: float = 0.5, min_positives: int = MIN_POSITIVES_TO_TUNE) -> Any | None:
    """Per-row, per-label thresholds (n, labels) such that no row is judged at a threshold tuned on itself.

    The rows are split in two halves by group (see ``halves``); each half gets the thresholds tuned on the
    other. Metrics at these thresholds estimate what tuned thresholds give on new data, where tuning and
    scoring on the same rows flatters (on scores with no signal at all it reads well above chance). None
    when there are fewer than two groups.
    """
    import numpy as np

    truth, probs = np.asarray(targets), np.asarray(probabilities)
    first = halves(groups, seed)
    if first.all() or not first.any():
        return None
    chosen = np.empty(probs.shape, dtype=float)
    for side in (first, ~first):
        chosen[side] = tune_thresholds(truth[~side], probs[~side], default, min_positives)
    return chosen
