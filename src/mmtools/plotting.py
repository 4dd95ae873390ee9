"""Charts for evaluation reports (Recall@K curves, per-label bars), drawn with matplotlib.

matplotlib is an optional extra (``pip install 'mmtools[plot]'``); without it these functions raise a
MissingDependencyError that says so. Figures are written to a temporary file and renamed into place.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from mmtools.errors import MissingDependencyError
from mmtools.records import atomic_path

INSTALL_HINT = "install it with: pip install 'mmtools[plot]' (or pip install matplotlib)"
MAX_BARS = 60  # beyond this, a bar chart is unreadable: keep the labels with the lowest scores of the first model


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed; never opens a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("drawing plots needs matplotlib, which is not installed",
                                     hint=INSTALL_HINT) from None
    return plt


def _save(figure: Any, path: str | os.PathLike[str]) -> None:
    suffix = os.path.splitext(str(path))[1] or ".png"
    with atomic_path(path, suffix=suffix) as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches="tight", format=suffix.lstrip(".") or "png")


def recall_curves(path: str | os.PathLike[str], curves: Mapping[str, Mapping[int, float]],
                  title: str = "Recall@K") -> None:
    """One line per curve (a model, or a model and a direction): x is K, y is Recall@K in [0, 1]."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    try:
        for name, points in curves.items():
            ks = sorted(points)
            axes.plot(ks, [points[k] for k in ks], marker="o", label=name)
        axes.set_xscale("log")
        all_ks = sorted({k for points in curves.values() for k in points})
        axes.set_xticks(all_ks, [str(k) for k in all_ks])
        axes.set_xlabel("K")
        axes.set_ylabel("Recall@K")
        axes.set_ylim(0, 1.02)
        axes.grid(True, alpha=0.3)
        axes.set_title(title)
        if curves:
            axes.legend(loc="lower right", fontsize="small")
        _save(figure, path)
    finally:
        plt.close(figure)


def label_bars(path: str | os.PathLike[str], values: Mapping[str, Mapping[str, float]],
               title: str = "Per-label F1", ylabel: str = "F1") -> None:
    """Grouped bars: one group per label, one bar per model (``values[model][label]``)."""
    plt = _pyplot()
    models = list(values)
    labels = sorted({label for scores in values.values() for label in scores})
    if models and len(labels) > MAX_BARS:
        first = values[models[0]]
        labels = sorted(sorted(labels, key=lambda label: first.get(label, 0.0))[:MAX_BARS])
    width = 0.8 / max(1, len(models))
    figure, axes = plt.subplots(figsize=(max(6.4, 0.35 * len(labels) * max(1, len(models)) + 1.5), 4.6))
    try:
        for i, model in enumerate(models):
            positions = [j + (i - (len(models) - 1) / 2) * width for j in range(len(labels))]
            axes.bar(positions, [values[model].get(label, 0.0) for label in labels], width, label=model)
        axes.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize="small")
        axes.set_ylabel(ylabel)
        axes.set_ylim(0, 1.02)
        axes.grid(True, axis="y", alpha=0.3)
        axes.set_title(title)
        if len(models) > 1:
            axes.legend(fontsize="small")
        _save(figure, path)
    finally:
        plt.close(figure)
