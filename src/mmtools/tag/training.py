"""`train tagger`: the tagger as a task of the shared training engine (mmtools.train.engine).

Two stages, as in the design: first the text tower is frozen while the image tower and the heads learn,
then everything learns at a lower rate. Loss: binary cross-entropy with a positive weight per label
(negatives / positives in the training set, capped), so rare tags are not drowned by their absence.
Per-label thresholds are tuned on the validation set each time a better model is saved.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mmtools.errors import Problem, ProblemHandler, UsageError, raise_problem
from mmtools.tag.batches import BatchMaker, Sample
from mmtools.tag.data import example_text
from mmtools.tag.metrics import micro_f1, tagging_report, tune_thresholds
from mmtools.tag.model import FUSIONS, MODALITIES, TaggerModel, TaggerSpec
from mmtools.tag.towers import Towers, load_towers, save_tagger, spec_for
from mmtools.train.data import Example, ExampleDataset, group_by_image

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

    def check(self) -> None:
        if self.modality not in MODALITIES:
            raise UsageError(f"unknown modality {self.modality!r}", hint="use text, image or both")
        if self.fusion not in FUSIONS:
            raise UsageError(f"unknown fusion {self.fusion!r}", hint="use concat, late or attention")
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
                    on_problem: ProblemHandler) -> list[Example]:
    """The examples that have what the modality needs; each other one reported. An image-only tagger sees
    each picture once: rows naming the same file (one per caption) are grouped, their tags joined."""
    kept = []
    for example in examples:
        lacks = [name for name, needed, present in (("text", modality in ("text", "both"), example.texts),
                                                     ("image", modality in ("image", "both"), example.image))
                 if needed and not present]
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
            if self.uses_image and image is None:
                continue  # its image failed to decode in the worker (it was checked beforehand)
            samples.append(Sample(example.id, text=example.text if self.uses_text else None,
                                  image=image if self.uses_image else None, target=self.target(example.tags)))
        return self.batches(samples) if samples else None


class TaggerTask:
    """The engine's TrainTask for a tagger (see mmtools.train.engine.TrainTask)."""

    def __init__(self, options: TaggerOptions, train: list[Example], val: list[Example] | None,
                 towers: Towers | None = None, batch_size: int = 32, seed: int = 0,
                 on_problem: ProblemHandler = raise_problem):
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
                                                text_pooling=options.text_pooling))
        torch.manual_seed(seed)  # the new layers start the same on every run with the same seed
        self.model = TaggerModel(spec, self.towers.text_model, self.towers.image_model)
        self.batches = BatchMaker(self.towers)
        self.collate = TaggerCollate(self.batches, self.labels, spec.uses_text, spec.uses_image)
        self.batch_size = batch_size
        self.train = self._prepared(train)
        self.val = self._prepared(val or [])
        self._unknown_val_labels(val or [])
        self.pos_weight = self._positive_weights()
        self._val_probabilities: Any = None
        self._val_targets: Any = None
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

        from mmtools.train.engine import move_to

        device = next(model.parameters()).device
        loader = DataLoader(self.dataset(self.val), batch_size=self.batch_size, shuffle=False,
                            collate_fn=self.collate, num_workers=0)
        probabilities, targets, total, batches = [], [], 0.0, 0
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
        if not batches:
            return {}
        self._val_probabilities, self._val_targets = np.concatenate(probabilities), np.concatenate(targets)
        tuned = tune_thresholds(self._val_targets, self._val_probabilities)
        report = self.report(self._val_targets, self._val_probabilities, 0.5)
        return {"val_loss": round(total / batches, 6), "micro_f1": round(micro_f1(self._val_targets,
                                                                                self._val_probabilities), 4),
                "macro_f1": report["macro"]["f1"],
                "tuned_micro_f1": round(micro_f1(self._val_targets, self._val_probabilities, tuned), 4)}

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
        info = {"train_examples": len(self.train), "val_examples": len(self.val),
                "thresholds_tuned_on": "validation" if self._val_probabilities is not None else None}
        save_tagger(directory, unwrap(model), self.towers, thresholds, info)


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
