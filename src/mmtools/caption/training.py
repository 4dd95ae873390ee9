"""`train captioner`: a captioner (or question answerer) as a task of the shared training engine.

Data are JSONL records with an image ``path`` and ``captions`` (or a ``caption``), or a ``question`` and its
``answer``: each (image, caption) or (image, question, answer) is one training item, the question read as the
decoder's prompt and only the text after it learnt. The validation split is by image. Each epoch reports the
validation loss and, on up to VAL_GENERATE validation images, what generation gives: CIDEr for captions,
exact-match accuracy for answers; early stopping and the best model follow that figure.

The result is an ordinary model directory (safetensors, tokenizer or processor, mmtools.json); a model
trained from scratch (``--arch tiny``) keeps its untrained self in OUTPUT/untrained, which `eval captioning`
reports beside it as a baseline, as it reports the most frequent training caption the manifest records.
"""

from __future__ import annotations

import copy
import json
import logging
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mmtools.caption.loading import CAPTIONER_FAMILY
from mmtools.errors import MissingDependencyError, Problem, ProblemHandler, UsageError, raise_problem
from mmtools.train.data import Example, ExampleDataset, read_examples

log = logging.getLogger("mmtools")

VAL_GENERATE = 128  # validation items generated each epoch (the loss covers them all)
UNTRAINED_DIR = "untrained"
LORA_AUTO_PARAMETERS = 500_000_000
MAX_PRIORS = 1000  # questions whose most frequent answer the manifest keeps (the eval baseline)  # bases larger than this train LoRA adapters unless told otherwise


@dataclass
class CaptionItem:
    """One thing to learn: this image, read with this prompt (None for a plain caption), gives this text."""

    image: str
    target: str
    prompt: str | None = None
    where: str = ""


def read_caption_items(path: str, *, image_column: str = "path", on_problem: ProblemHandler = raise_problem
                       ) -> list[CaptionItem]:
    """Items of a JSONL/CSV file: one per caption of ``captions``/``caption``, or one per question with its
    ``answer``. Rows without an image, or with a question but no answer, are reported and skipped."""
    items = []
    for example in read_examples(path, image_column=image_column, text_columns=("caption", "captions", "answer"),
                                 on_problem=on_problem):
        items.extend(_items_of(example, on_problem))
    return items


def _items_of(example: Example, on_problem: ProblemHandler) -> list[CaptionItem]:
    if not example.image:
        on_problem(Problem(example.where, "row has no image path, skipped"))
        return []
    question = example.record.get("question")
    if isinstance(question, str) and question.strip():
        answer = example.record.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            on_problem(Problem(example.where, "row has a question but no 'answer', skipped"))
            return []
        return [CaptionItem(example.image, answer.strip(), question.strip(), example.where)]
    if not example.texts:
        on_problem(Problem(example.where, "row has no 'captions' (or 'caption'), skipped"))
        return []
    return [CaptionItem(example.image, text.strip(), None, example.where) for text in example.texts]


def split_by_image(items: list[CaptionItem], fraction: float, seed: int = 0
                   ) -> tuple[list[CaptionItem], list[CaptionItem]]:
    """(train, validation): ``fraction`` of the distinct images, with every item of each, held out."""
    import os
    import random

    keys = list(dict.fromkeys(os.path.realpath(item.image) for item in items))
    random.Random(seed).shuffle(keys)
    held = set(keys[:max(1, int(round(len(keys) * fraction)))])
    return ([i for i in items if os.path.realpath(i.image) not in held],
            [i for i in items if os.path.realpath(i.image) in held])


def is_question_data(items: Sequence[CaptionItem]) -> bool:
    return any(item.prompt is not None for item in items)


@dataclass
class CaptionerOptions:
    lr: float = 1e-3
    lora: bool | None = None  # None: LoRA when the base has more than LORA_AUTO_PARAMETERS parameters
    lora_rank: int = 8
    lora_alpha: int = 16


class CaptionCollate:
    """DataLoader collate_fn: (example, image) pairs to the family's training batch. It carries the
    generator without its weights (only the config), so worker processes never receive the model."""

    def __init__(self, generator: Any):
        self.generator = copy.copy(generator)
        self.generator.model = types.SimpleNamespace(config=generator.model.config)

    def __call__(self, pairs: list[tuple[Example, Any]]) -> dict[str, Any] | None:
        kept = [(example, image) for example, image in pairs if image is not None]
        if not kept:
            return None
        return self.generator.training_batch([image for _, image in kept],
                                             [example.record.get("prompt") for example, _ in kept],
                                             [example.text for example, _ in kept])


class CaptionerTask:
    """The engine's TrainTask (mmtools.train.engine.TrainTask) for a captioner of any supported family."""

    def __init__(self, generator: Any, train: list[CaptionItem], val: list[CaptionItem],
                 options: CaptionerOptions, *, batch_size: int = 32, base: str | None = None,
                 untrained: str | None = None):
        self.generator = generator
        self.model = generator.model
        self.options = options
        self.train, self.val = train, val
        self.batch_size = batch_size
        self.questions = is_question_data(train)
        self.base, self.untrained = base, untrained
        self.collate = CaptionCollate(generator)
        self.lora = options.lora if options.lora is not None else (
            sum(p.numel() for p in self.model.parameters()) > LORA_AUTO_PARAMETERS)
        if self.lora:
            add_lora(self.model, options.lora_rank, options.lora_alpha)

    def dataset(self, items: list[CaptionItem] | None = None) -> ExampleDataset:
        examples = [Example(str(i), item.where, item.image, [item.target], record={"prompt": item.prompt})
                    for i, item in enumerate(self.train if items is None else items)]
        return ExampleDataset(examples, image_size=self.generator.image_size)

    # -- the engine's protocol
    def param_groups(self) -> list[dict[str, Any]]:
        return [{"name": "model", "params": [p for p in self.model.parameters() if p.requires_grad],
                 "lr": self.options.lr}]

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        return model(**batch).loss

    def evaluate(self, model: Any) -> dict[str, float]:
        if not self.val:
            return {}
        import torch
        from torch.utils.data import DataLoader

        from mmtools.train.engine import move_to, unwrap

        device = str(next(model.parameters()).device)
        loader = DataLoader(self.dataset(self.val), batch_size=self.batch_size, shuffle=False,
                            collate_fn=self.collate, num_workers=0)
        total, batches = 0.0, 0
        with torch.no_grad():
            for batch in loader:
                if batch is not None:
                    total += float(model(**move_to(batch, device)).loss)
                    batches += 1
        figures = {"val_loss": round(total / max(1, batches), 6)}
        figures.update(self._generated_figures(unwrap(model), device))
        return figures

    def _generated_figures(self, model: Any, device: str) -> dict[str, float]:
        """CIDEr of generated captions, or exact-match accuracy of answers, on the first validation images."""
        from mmtools.caption.evaluate import exact_match, group_references
        from mmtools.caption.metrics import caption_scores
        from mmtools.images import ImageDecodeError, load_image

        generator = copy.copy(self.generator)
        generator.model, generator.device, generator.dtype = model, device, None
        if self.questions:
            items = self.val[:VAL_GENERATE]
            references = None
        else:
            references = group_references(self.val)
            items = [CaptionItem(image, "") for image in list(references)[:VAL_GENERATE]]
        images, kept = [], []
        for item in items:
            try:
                images.append(load_image(item.image, draft_size=generator.image_size))
                kept.append(item)
            except ImageDecodeError:
                continue
        outputs: list[str] = []
        for start in range(0, len(kept), self.batch_size):
            outputs += generator.generate(images[start:start + self.batch_size],
                                          [i.prompt for i in kept[start:start + self.batch_size]],
                                          max_new_tokens=24)
        if not kept:
            return {}
        if self.questions:
            return {"val_accuracy": round(exact_match([i.target for i in kept], outputs), 4)}
        scores = caption_scores({i.image: references[i.image] for i in kept},
                                {i.image: text for i, text in zip(kept, outputs)})
        return {"val_cider": round(scores["cider"], 4), "val_bleu4": round(scores["bleu4"], 4)}

    def monitor(self) -> str:
        if not self.val:
            return "loss"
        return "val_accuracy" if self.questions else "val_cider"

    def save(self, model: Any, directory: Path) -> None:
        from mmtools.train.engine import unwrap

        inner = unwrap(model)
        if self.lora:
            from mmtools.train.retrieval import merged_copy

            inner = merged_copy(inner)
        save_captioner(directory, inner, self.generator, self.manifest())

    def manifest(self) -> dict[str, Any]:
        from mmtools.caption.evaluate import answer_priors
        from mmtools.caption.text import most_frequent

        info = {"task": "vqa" if self.questions else "captioning", "base": self.base,
                "untrained": self.untrained, "train_items": len(self.train), "val_items": len(self.val),
                "most_frequent_train_text": most_frequent(i.target for i in self.train)}
        if self.questions:
            priors = answer_priors(self.train)
            info["answer_priors"] = dict(list(priors.items())[:MAX_PRIORS]) | {"": priors.get("", "")}
        return info


def save_captioner(directory: Path, model: Any, generator: Any, info: dict[str, Any]) -> None:
    """An ordinary model directory (safetensors weights, tokenizer or processor) with an mmtools.json."""
    from mmtools import __version__

    model.save_pretrained(directory, safe_serialization=True)
    (generator.processor or generator.tokenizer).save_pretrained(directory)
    if generator.processor is None:
        generator.image_processor.save_pretrained(directory)
    manifest = {"format": "mmtools-model", "format_version": 1, "family": CAPTIONER_FAMILY,
                "mmtools_version": __version__, "training": info}
    (directory / "mmtools.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")


def add_lora(model: Any, rank: int, alpha: int) -> None:
    """LoRA adapters (peft) on every linear layer but the output head; the base weights freeze."""
    import torch.nn as nn

    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise MissingDependencyError("LoRA needs the peft package, which is not installed",
                                     hint="pip install 'mmtools[lora]' (or pip install peft), or --no-lora") from None
    head = model.get_output_embeddings()
    targets = [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and module is not head]
    if not targets:
        raise UsageError("LoRA found no linear layers in the model")
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets), model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)


def train_captioner(task: CaptionerTask, config: Any, output: str | Path, *, resume: bool = False,
                    overwrite: bool = False, on_metrics: Callable[[dict], None] | None = None,
                    progress: Any = None, run_info: dict[str, Any] | None = None) -> Any:
    """Run the engine on ``task``: OUTPUT/model is the best captioner, loadable with --model OUTPUT."""
    from mmtools.train.engine import Trainer

    config.monitor = task.monitor()
    trainer = Trainer(task, task.dataset(), config, output, resume=resume, overwrite=overwrite,
                      on_metrics=on_metrics, progress=progress, run_info=run_info,
                      manifest={"task": "captioner", "family": CAPTIONER_FAMILY})
    return trainer.fit()


def prepare_untrained(output: str | Path, texts: list[str], *, resume: bool = False, overwrite: bool = False,
                      **tiny: Any) -> Path:
    """OUTPUT/untrained: the tiny captioner (mmtools.caption.synthetic.build_tiny_captioner) training starts
    from, its tokenizer learnt from ``texts``; kept as the untrained baseline. A resumed run reuses it; a
    non-empty OUTPUT is refused unless ``overwrite``, as the engine refuses it."""
    from mmtools.atomic import atomic_directory
    from mmtools.caption.synthetic import build_tiny_captioner
    from mmtools.train.engine import TrainingError, distribution

    output = Path(output)
    target = output / UNTRAINED_DIR
    if not distribution().is_main:  # under torchrun: the same model (same texts, same seed), built apart
        import tempfile

        return build_tiny_captioner(Path(tempfile.mkdtemp(prefix="mmtools-untrained-")), texts, **tiny)
    if resume:
        if not (target / "config.json").exists():
            raise TrainingError(f"there is no untrained model to resume from in {output}",
                                hint="start a new run without --resume")
        return target
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise TrainingError(f"output directory {output} is not empty",
                            hint="use --resume to go on with its run, --overwrite to replace it, or another --output")
    output.mkdir(parents=True, exist_ok=True)
    with atomic_directory(target) as tmp:
        build_tiny_captioner(tmp, texts, **tiny)
    return target


def starting_generator(base: str | None, tiny: dict[str, Any] | None, items: list[CaptionItem], output: str | Path,
                       *, resume: bool = False, overwrite: bool = False) -> tuple[Any, str | None]:
    """The generator training starts from (``base``, or a tiny model with the ``tiny`` settings built in
    OUTPUT/untrained from the items' texts), and where its untrained self is, as the manifest records it."""
    from mmtools.caption.loading import default_generators

    if base is not None:
        return default_generators.get(base, for_training=True), base
    texts = [text for item in items for text in (item.target, item.prompt) if text]
    location = prepare_untrained(output, texts, resume=resume, overwrite=overwrite, **(tiny or {}))
    return default_generators.get(str(location), for_training=True), f"../{UNTRAINED_DIR}"
