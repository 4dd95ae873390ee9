"""Honest tagger figures: thresholds tuned on validation data are never scored on the rows they were tuned on."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from mmtools.tag.metrics import cross_fitted_thresholds, halves, micro_f1, tune_thresholds
from mmtools.train.data import Example

LABELS = [f"tag{i}" for i in range(8)]


def random_examples(n, seed, prevalence=0.25, prefix="v"):
    rng = np.random.default_rng(seed)
    return [Example(f"{prefix}{i}", f"{prefix}.jsonl:{i + 1}", None, [f"phòng số {i}"],
                    [label for label in LABELS if rng.random() < prevalence] or [LABELS[i % len(LABELS)]])
            for i in range(n)]


class ScoresWithoutSignal:
    """A stand-in model whose scores know nothing of the tags: a fixed random number per example and label."""

    def __new__(cls):
        import torch

        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.anchor = torch.nn.Parameter(torch.zeros(1))  # where the task looks for the device

            def forward(self, batch):
                rows = [np.random.default_rng(zlib.crc32(str(i).encode())).normal(size=len(LABELS))
                        for i in batch["ids"]]
                return {"logits": torch.tensor(np.array(rows), dtype=torch.float32)}

        return Model()


def chance(examples):
    """The best a tagger without signal can do on these examples: every label on every example."""
    truth = np.array([[label in e.tags for label in LABELS] for e in examples])
    micro = 2 * truth.sum() / (truth.size + truth.sum())
    rates = truth.mean(axis=0)
    return micro, float(np.mean(2 * rates / (1 + rates)))


def test_tuned_figures_of_a_model_without_signal_read_near_chance(tagging_data):
    """Scores with no signal, on five small validation sets: tuning and scoring on the same rows reads well
    above chance; what the task reports for tuned thresholds must not."""
    import torch

    from mmtools.tag.towers import load_towers
    from mmtools.tag.training import TaggerOptions, TaggerTask

    towers = load_towers("text", text_model=str(tagging_data["text_tower"]))
    options = TaggerOptions(modality="text", text_model=str(tagging_data["text_tower"]), fusion_dim=8,
                            hidden_dim=8)
    train = random_examples(16, seed=0, prefix="t")
    flattering, reported, chances = [], {}, {"micro": [], "macro": []}
    for seed in range(1, 6):
        val = random_examples(24, seed=seed, prevalence=0.2)
        task = TaggerTask(options, train, val, towers=towers, batch_size=16)
        with torch.no_grad():
            figures = task.evaluate(ScoresWithoutSignal())
        assert {"micro_f1", "macro_f1", "val_loss"} <= set(figures)
        probabilities, targets = task._val_probabilities, task._val_targets
        flattering.append(micro_f1(targets, probabilities, tune_thresholds(targets, probabilities)))
        for key, value in figures.items():
            if "f1" in key and key not in ("micro_f1", "macro_f1"):  # the figures at tuned thresholds
                reported.setdefault(key, []).append(value)
        micro, macro = chance(val)
        chances["micro"].append(micro)
        chances["macro"].append(macro)
    micro_chance, macro_chance = np.mean(chances["micro"]), np.mean(chances["macro"])
    assert np.mean(flattering) > micro_chance + 0.04, (flattering, micro_chance)
    assert reported, "no figure at tuned thresholds"
    for key, values in reported.items():
        assert np.mean(values) <= (macro_chance if "macro" in key else micro_chance) + 0.01, (key, values)
    assert set(reported) == {"crossfit_micro_f1", "crossfit_macro_f1"}, reported


def test_halves_keep_each_image_on_one_side_and_cross_fitting_never_tunes_on_the_row_it_scores():
    groups = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "f"]
    first = halves(groups, seed=3)
    for group in set(groups):
        assert len({bool(first[i]) for i, g in enumerate(groups) if g == group}) == 1
    assert 0 < first.sum() < len(groups)
    # A label that is positive exactly where the score is high on one half and low on the other: each half's
    # threshold comes from the other half, so it is never the one that would fit its own rows.
    rng = np.random.default_rng(0)
    targets = (rng.random((60, 1)) < 0.5).astype(float)
    probabilities = np.where(targets > 0, 0.8, 0.2) + rng.normal(0, 0.01, targets.shape)
    groups = [f"g{i // 2}" for i in range(60)]
    crossed = cross_fitted_thresholds(targets, probabilities, groups)
    side = halves(groups)
    assert crossed.shape == targets.shape
    assert np.all(crossed[side] == tune_thresholds(targets[~side], probabilities[~side]))
    assert np.all(crossed[~side] == tune_thresholds(targets[side], probabilities[side]))
    assert cross_fitted_thresholds(targets[:2], probabilities[:2], ["one", "one"]) is None


@pytest.mark.parametrize("seed", range(3))
def test_cross_fitted_f1_of_random_scores_is_not_above_chance_where_in_sample_tuning_is(seed):
    rng = np.random.default_rng(seed)
    targets = (rng.random((40, 8)) < 0.25).astype(float)
    probabilities = rng.random((40, 8))
    groups = [str(i) for i in range(40)]
    predict_all = micro_f1(targets, np.ones_like(probabilities))
    in_sample = micro_f1(targets, probabilities, tune_thresholds(targets, probabilities))
    crossed = micro_f1(targets, probabilities, cross_fitted_thresholds(targets, probabilities, groups))
    assert in_sample > predict_all + 0.01
    assert crossed <= predict_all + 0.02
