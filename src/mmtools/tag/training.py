"""`train tagger`: the tagger as a task of the shared training engine (mmtools.train.engine).

Two stages, as in the design: first the text tower is frozen while the image tower and the heads learn,
then everything learns at a lower rate. Loss: binary cross-entropy with a positive weight per label
(negatives / positives in the training set, capped), so rare tags are not drowned by their absence.
Per-label thresholds are tuned on the validation set each time a better model is saved. The figures reported
for tuned thresholds are cross-fitted (each half of the validation images judged at thresholds tuned on the
other half), never measured on the rows they were tuned on.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mmtools.errors import Problem, ProblemHandler, UsageError, raise_problem
from mmtools.tag.batches import BatchMaker, Sample
from mmtools.tag.data import example_text
from mmtools.tag.metrics import cross_fitted_thresholds, micro_f1, tagging_report, tune_thresholds
from mmtools.tag.model import FUSIONS, MODALITIES, TaggerModel, TaggerSpec
from mmtools.tag.modes import IMAGE_ONLY, TEXT_ONLY
from mmtools.tag.towers import Towers, load_towers, save_tagger, spec_for
from mmtools.train.data import Example, ExampleDataset, group_by_image, image_key

log = logging.getLogger("mmtools")


@dataclass
class TaggerOptions:
    modality: str = "both"
    fusion: str = "concat"
    base: str | None = None
    text_model: str | None = None
    image_model: str | None = None
    fusion_dim: int = 256
    hidden_dim: int = 512
    dropout: float = 0.3
    text_pooling: str = "first"
    head_lr: float = 1e-3
    text_lr: float = 1e-4
    image_lr: float = 1e-4
    frozen_epochs: int = 5
    finetune_epochs: int = 5
    finetune_lr_scale: float = 0.1
    min_label_count: int = 1
    max_pos_weight: float = 10.0
    # concat / attention fusion: the share of training samples with their text or image withheld, so that the
    # tagger learns to answer from one (0: a tagger that needs both). Late fusion needs none: its heads are
    # trained alone too.
    modality_dropout: float = 0.3

    @property
    def learns_missing(self) -> bool:
        return self.modality == "both" and self.fusion != "late" and self.modality_dropout > 0

    def check(self) -> None:
        if self.modality not in MODALITIES:
            raise UsageError(f"unknown modality {self.modality!r}", hint="use text, image or both")
        if self.fusion not in FUSIONS:
            raise UsageError(f"unknown fusion {self.fusion!r}", hint="use concat, late or attention")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise UsageError(f"modality dropout {self.modality_dropout} is not a share",
                             hint="give a number from 0 (a tagger that needs both) to below 1, e.g. 0.3")
        if self.base is None and self.modality in ("text", "both") and self.text_model is None:
            raise UsageError(f"--modality {self.modality} needs a text tower",
                             hint="pass --text-model DIR_OR_ID (e.g. vinai/phobert-base) or --base DUAL_ENCODER")
        if self.base is None and self.modality in ("image", "both") and self.image_model is None:
            raise UsageError(f"--modality {self.modality} needs an image tower",
                             hint="pass --image-model DIR_OR_ID (e.g. microsoft/resnet-34) or --base DUAL_ENCODER")


def label_vocabulary(examples: Sequence[Example], min_count: int = 1) -> list[str]:
    counts = Counter(tag for example in examples for tag in example.tags)
    labels = sorted(label for label, count in counts.items() if count >= min_count)
    if not labels:
        raise UsageError("the training data has no tags" + (f" seen {min_count} times or more" if min_count > 1
                                                            else ""),
                         hint="each record needs a 'tags' list (CSV: a tags column, e.g. dacdiem)")
    return labels


def usable_examples(examples: Sequence[Example], modality: str, what: str,
                    on_problem: ProblemHandler, *, one_is_enough: bool = False) -> list[Example]:
    """The examples that have what the modality needs (with ``one_is_enough``, a tagger that learns to do
    without one modality: text or image); each other one reported. An image-only tagger sees each picture
    once: rows naming the same file (one per caption) are grouped, their tags joined."""
    kept = []
    for example in examples:
        lacks = [name for name, needed, present in (("text", modality in ("text", "both"), example.texts),
                                                     ("image", modality in ("image", "both"), example.image))
                 if needed and not present]
        if one_is_enough and len(lacks) < 2:
            lacks = []
        if lacks:
            on_problem(Problem(example.where, f"{what} example has no {' and no '.join(lacks)}, which "
                                              f"--modality {modality} needs; skipped"))
            continue
        kept.append(example)
    return group_by_image(kept) if modality == "image" else kept


class TaggerCollate:
    """The DataLoader collate_fn: (example, decoded image) pairs to a batch. Small and picklable, so worker
    processes started by spawn do not receive the whole model."""

    def __init__(self, batches: BatchMaker, labels: list[str], uses_text: bool, uses_image: bool):
        self.batches, self.uses_text, self.uses_image = batches, uses_text, uses_image
        self.index = {label: i for i, label in enumerate(labels)}

    def target(self, tags: Sequence[str]) -> Any:
        import numpy as np

        vector = np.zeros(len(self.index), np.float32)
        for tag in tags:
            if tag in self.index:
                vector[self.index[tag]] = 1.0
        return vector

    def __call__(self, items: list[tuple[Example, Any]]) -> dict[str, Any] | None:
        samples = []
        for example, image in items:
            if self.uses_image and example.image is not None and image is None:
                continue  # its image failed to decode in the worker (it was checked beforehand)
            samples.append(Sample(example.id, text=example.text if self.uses_text else None,
                                  image=image if self.uses_image else None, target=self.target(example.tags)))
        return self.batches(samples) if samples else None


class TaggerTask:
    """The engine's TrainTask for a tagger (see mmtools.train.engine.TrainTask)."""

    def __init__(self, options: TaggerOptions, train: list[Example], val: list[Example] | None,
                 towers: Towers | None = None, batch_size: int = 32, seed: int = 0,
                 on_problem: ProblemHandler = raise_problem, val_source: dict[str, Any] | None = None):
        import torch

        options.check()
        self.options = options
        self.towers = towers or load_towers(options.modality, base=options.base, text_model=options.text_model,
                                            image_model=options.image_model)
        self.labels = label_vocabulary(train, options.min_label_count)
        self.index = {label: i for i, label in enumerate(self.labels)}
        spec = spec_for(self.towers, TaggerSpec(labels=self.labels, modality=options.modality,
                                                fusion=options.fusion, fusion_dim=options.fusion_dim,
                                                hidden_dim=options.hidden_dim, dropout=options.dropout,
                                                text_pooling=options.text_pooling,
                                                modality_dropout=(options.modality_dropout
                                                                  if options.learns_missing else 0.0)))
        torch.manual_seed(seed)  # the new layers start the same on every run with the same seed
        self.model = TaggerModel(spec, self.towers.text_model, self.towers.image_model)
        self.batches = BatchMaker(self.towers)
        self.collate = TaggerCollate(self.batches, self.labels, spec.uses_text, spec.uses_image)
        self.batch_size = batch_size
        self.train = self._prepared(train)
        self.val = self._prepared(val or [])
        self._val_groups = [image_key(e) for e in val or []]  # cross-fitting splits by image, as the data is
        self.seed = seed
        self.val_source = val_source  # where the validation data came from, recorded with the thresholds
        self._unknown_val_labels(val or [])
        self.pos_weight = self._positive_weights()
        self._val_probabilities: Any = None
        self._val_targets: Any = None
        self._val_modes: dict[str, tuple[Any, Any]] = {}  # one-modality mode -> (targets, probabilities)
        self.last_report: dict[str, Any] | None = None

    # -- data
    def _prepared(self, examples: list[Example]) -> list[Example]:
        """Copies with the text joined and prepared once (normalised, segmented) rather than every epoch."""
        if not examples:
            return []
        texts = [example_text(e) for e in examples]
        prepared = iter(self.batches.prepare_texts([t for t in texts if t is not None])
                        if self.model.spec.uses_text else [])
        out = []
        for example, text in zip(examples, texts):
            ready = Example(example.id, example.where, example.image if self.model.spec.uses_image else None,
                            [next(prepared)] if text is not None and self.model.spec.uses_text else [],
                            list(example.tags))
            out.append(ready)
        return out

    def _unknown_val_labels(self, val: list[Example]) -> None:
        unknown = sorted({tag for e in val for tag in e.tags} - set(self.labels))
        if unknown:
            log.warning("%d validation label(s) are not in the label vocabulary (absent from the training data, "
                        "or rarer there than --min-label-count) and cannot be learnt: %s", len(unknown),
                        ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else ""))

    def _positive_weights(self) -> Any:
        import torch

        positives = torch.zeros(len(self.labels))
        for example in self.train:
            for tag in example.tags:
                if tag in self.index:
                    positives[self.index[tag]] += 1
        negatives = len(self.train) - positives
        return (negatives / positives.clamp(min=1.0)).clamp(min=1.0, max=self.options.max_pos_weight)

    def dataset(self, examples: list[Example] | None = None) -> ExampleDataset:
        return ExampleDataset(self.train if examples is None else examples, image_size=self.batches.image_size,
                              load_images=self.model.spec.uses_image)

    # -- the engine's protocol
    def param_groups(self) -> list[dict[str, Any]]:
        model, options = self.model, self.options
        towers = {id(p) for tower in (model.text_tower, model.image_tower) if tower is not None
                  for p in tower.parameters()}
        groups = []
        if model.text_tower is not None:
            groups.append({"name": "text", "params": list(model.text_tower.parameters()), "lr": options.text_lr})
        if model.image_tower is not None:
            groups.append({"name": "image", "params": list(model.image_tower.parameters()),
                           "lr": options.image_lr})
        groups.append({"name": "head", "params": [p for p in model.parameters() if id(p) not in towers],
                       "lr": options.head_lr})
        return groups

    def stages(self) -> list[Any]:
        from mmtools.train.engine import Stage

        options = self.options
        first = {"image", "head"} if self.model.image_tower is not None else {"head"}
        stages = []
        if options.frozen_epochs > 0:
            stages.append(Stage(options.frozen_epochs, trainable=first, lr_scale=1.0))
        if options.finetune_epochs > 0:
            stages.append(Stage(options.finetune_epochs, trainable=None, lr_scale=options.finetune_lr_scale))
        if not stages:
            raise UsageError("no epochs to train", hint="give --epochs or --finetune-epochs above 0")
        return stages

    def _losses(self, outputs: dict[str, Any], targets: Any) -> Any:
        import torch.nn.functional as F

        weight = self.pos_weight.to(targets.device)
        loss = F.binary_cross_entropy_with_logits(outputs["logits"].float(), targets, pos_weight=weight)
        for name in ("text_logits", "image_logits"):  # late fusion: each head must also work alone
            if name in outputs:
                loss = loss + 0.5 * F.binary_cross_entropy_with_logits(outputs[name].float(), targets,
                                                                       pos_weight=weight)
        return loss

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        return self._losses(model(batch), batch["targets"])

    def evaluate(self, model: Any) -> dict[str, float]:
        if not self.val:
            return {}
        import numpy as np
        import torch
        from torch.utils.data import DataLoader

        from mmtools.tag.batches import withheld
        from mmtools.train.engine import move_to, unwrap

        device = next(model.parameters()).device
        # Ids are positions here, so that each row's group is known even where a picture failed to decode.
        numbered = [dataclasses.replace(e, id=str(i)) for i, e in enumerate(self.val)]
        loader = DataLoader(self.dataset(numbered), batch_size=self.batch_size, shuffle=False,
                            collate_fn=self.collate, num_workers=0)
        probabilities, targets, rows, total, batches = [], [], [], 0.0, 0
        # A tagger that can read one modality is also measured on each alone (the other withheld), so that
        # each mode gets thresholds of its own and the cost of a missing photo is known.
        alone = {TEXT_ONLY: ("image", "has_text"), IMAGE_ONLY: ("text", "has_image")} \
            if self.model.spec.allows_one_modality else {}
        single: dict[str, tuple[list, list]] = {mode: ([], []) for mode in alone}
        with torch.no_grad():
            for batch in loader:
                if batch is None:
                    continue
                batch = move_to(batch, str(device))
                outputs = model(batch)
                total += float(self._losses(outputs, batch["targets"]))
                batches += 1
                probabilities.append(torch.sigmoid(outputs["logits"].float()).cpu().numpy())
                targets.append(batch["targets"].cpu().numpy())
                rows.extend(int(i) for i in batch["ids"])
                for mode, (withhold, kept) in alone.items():
                    keep = batch[kept].cpu().numpy()
                    logits = model(withheld(batch, withhold))["logits"]
                    single[mode][0].append(batch["targets"].cpu().numpy()[keep])
                    single[mode][1].append(torch.sigmoid(logits.float()).cpu().numpy()[keep])
        if not batches:
            return {}
        self._val_probabilities, self._val_targets = np.concatenate(probabilities), np.concatenate(targets)
        self._val_modes = {mode: (np.concatenate(t), np.concatenate(p)) for mode, (t, p) in single.items()}
        figures = {f"{mode.replace('-', '_')}_micro_f1": round(micro_f1(t, p), 4)
                   for mode, (t, p) in self._val_modes.items() if len(t)}
        return {"val_loss": round(total / batches, 6),
                **self.validation_figures(self._val_targets, self._val_probabilities,
                                          [self._val_groups[i] for i in rows]), **figures}

    def validation_figures(self, targets: Any, probabilities: Any, groups: Sequence[str]) -> dict[str, float]:
        """``micro_f1``, ``macro_f1``: at threshold 0.5, nothing tuned. ``crossfit_micro_f1``,
        ``crossfit_macro_f1``: at tuned per-label thresholds, each half of the images (``groups``) judged at
        the thresholds tuned on the other half; left out when there are fewer than two images."""
        at_half = self.report(targets, probabilities, 0.5)
        figures = {"micro_f1": round(micro_f1(targets, probabilities), 4), "macro_f1": at_half["macro"]["f1"]}
        crossed = cross_fitted_thresholds(targets, probabilities, groups, seed=self.seed)
        if crossed is not None:
            report = self.report(targets, probabilities, crossed)
            figures.update(crossfit_micro_f1=report["micro"]["f1"], crossfit_macro_f1=report["macro"]["f1"])
        return figures

    def report(self, targets: Any, probabilities: Any, thresholds: Any) -> dict[str, Any]:
        import numpy as np

        predicted = np.asarray(probabilities) >= np.asarray(thresholds)
        as_sets = lambda rows: [[self.labels[j] for j in np.flatnonzero(row)] for row in rows]  # noqa: E731
        return tagging_report(as_sets(np.asarray(targets) > 0.5), as_sets(predicted))

    def save(self, model: Any, directory: Path) -> None:
        from mmtools.train.engine import unwrap

        if self._val_probabilities is not None:
            thresholds = dict(zip(self.labels, tune_thresholds(self._val_targets, self._val_probabilities)))
        else:
            thresholds = {label: 0.5 for label in self.labels}
        by_mode = {mode: dict(zip(self.labels, tune_thresholds(targets, probabilities)))
                   for mode, (targets, probabilities) in self._val_modes.items() if len(targets)}
        info = {"train_examples": len(self.train), "val_examples": len(self.val),
                "thresholds_tuned_on": ({"data": "validation", "examples": len(self._val_targets),
                                         **(self.val_source or {})}
                                        if self._val_probabilities is not None else None)}
        save_tagger(directory, unwrap(model), self.towers, thresholds, info, mode_thresholds=by_mode)


def train_tagger(task: TaggerTask, config: Any, output: str | Path, *, resume: bool = False,
                 overwrite: bool = False, on_metrics: Callable[[dict], None] | None = None,
                 progress: Any = None, run_info: dict[str, Any] | None = None) -> Any:
    """Run the engine on ``task``: OUTPUT/model is the best tagger (with thresholds), loadable by --model."""
    from mmtools.train.engine import Trainer

    config.stages = task.stages()
    trainer = Trainer(task, task.dataset(), config, output, resume=resume, overwrite=overwrite,
                      on_metrics=on_metrics, progress=progress, run_info=run_info,
                      manifest={"task": "tagger", "labels": len(task.labels)})
    return trainer.fit()


CROSSFIT_HOW = ("each half of the validation images scored at per-label thresholds tuned on the other half; "
                "the saved thresholds are tuned on all of it")


def training_summary(result: Any, train_examples: int, val_examples: int,
                     val_source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The closing record of a run: the best epoch, and its figures labelled with the data they were measured
    on and the thresholds they were measured at."""
    best = result.best_metrics or {}
    summary: dict[str, Any] = {"summary": "train tagger", "model": str(result.model_dir),
                               "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                               "stopped_early": result.stopped_early, "train_examples": train_examples,
                               "val_examples": val_examples,
                               "thresholds_tuned_on": ({"data": "validation", "examples": val_examples,
                                                        **(val_source or {})} if val_examples else None)}
    if "micro_f1" in best:
        summary["validation_at_0.5"] = {"micro_f1": best["micro_f1"], "macro_f1": best.get("macro_f1")}
    if "crossfit_micro_f1" in best:
        summary["validation_crossfit"] = {"micro_f1": best["crossfit_micro_f1"],
                                          "macro_f1": best.get("crossfit_macro_f1"), "how": CROSSFIT_HOW}
    return summary
