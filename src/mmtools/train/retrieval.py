"""Contrastive training of dual encoders for image-text retrieval, on the shared training engine.

Two starting points:

- a dual encoder to fine-tune (``base``: CLIP, SigLIP, SigLIP 2, VisionTextDualEncoder), saved as a Hugging
  Face model directory (family ``hf-dual-encoder``);
- two single towers (``text_encoder`` + ``image_encoder``), joined PhoCLIP-style with projection heads
  (mmtools.models.two_tower), saved as a ``two-tower`` model directory.

Objective: symmetric InfoNCE with a learnable temperature (CLIP's, initialised at 0.07), or for SigLIP bases
the sigmoid loss with its learnable bias. Text reaches the model exactly as it does when encoding (the
family's TextRules: segmentation for PhoBERT, lower-casing and no attention mask for SigLIP), so a trained
model embeds queries the way it learnt them.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from mmtools.errors import MissingDependencyError, ModelError, ProblemHandler, UsageError, raise_problem
from mmtools.evaluate.retrieval import RetrievalSet, retrieval_metrics
from mmtools.text.prepare import TextPreparer, TextRules
from mmtools.train.data import Example, ExampleDataset, load_pairs, usable_pairs  # noqa: F401 (moved there)
from mmtools.train.engine import TrainConfig, Trainer, TrainResult, gather_for_loss, unwrap

LOSSES = ("infonce", "sigmoid")
FREEZE = ("image", "text")
MONITOR = "val_mean_recall"

# The PhoCLIP design: PhoBERT + ResNet-50 into 512-d, captions up to 70 tokens, batch 64.
PRESETS: dict[str, dict[str, Any]] = {
    "phoclip": {"text_encoder": "vinai/phobert-base", "image_encoder": "microsoft/resnet-50",
                "projection_dim": 512, "max_length": 70, "batch_size": 64},
}


@dataclass
class ModelOptions:
    """What model to train and how its parts learn."""

    base: str | None = None
    text_encoder: str | None = None
    image_encoder: str | None = None
    projection_dim: int = 512
    max_length: int | None = None  # None: the family's limit (PhoBERT 256, CLIP 77, SigLIP 64)
    loss: str | None = None  # None: sigmoid for SigLIP bases, InfoNCE otherwise
    lr_image: float = 1e-4
    lr_text: float = 1e-5
    lr_heads: float = 1e-3
    freeze: str | None = None  # "image" or "text": LiT-style, that tower does not learn
    lora: bool = False
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_keep_adapters: bool = False

    def check(self) -> None:
        if self.base and (self.text_encoder or self.image_encoder):
            raise UsageError("give either a base dual encoder or two towers (text and image encoders), not both")
        if not self.base and not (self.text_encoder and self.image_encoder):
            raise UsageError("no model to train",
                             hint="fine-tune one with --base MODEL, or build one from --text-encoder and "
                                  "--image-encoder, or use --preset phoclip")
        if self.freeze not in (None, *FREEZE):
            raise UsageError(f"--freeze takes image or text, not {self.freeze!r}")
        if self.loss not in (None, *LOSSES):
            raise UsageError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.projection_dim < 1:
            raise UsageError("the projection size must be positive")

    def run_info(self) -> dict[str, Any]:
        """What makes two runs the same run (``--resume`` refuses a directory whose run differs)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("lora_keep_adapters",)}


# ------------------------------------------------------------------------------------------ the model


class DualEncoderForTraining(nn.Module):
    """One forward for every kind of dual encoder: unit image and text vectors, the logit scale and bias.

    The scale and bias come out of ``forward`` so that DistributedDataParallel sees them used.
    """

    def __init__(self, inner: nn.Module, kind: str):
        super().__init__()
        self.inner = inner
        self.kind = kind  # "two-tower" or "hf"
        self.frozen: set[str] = set()  # towers that do not learn ("image", "text")

    def train(self, mode: bool = True) -> "DualEncoderForTraining":
        """A frozen tower stays in eval mode: its dropout off and its batch-norm statistics untouched."""
        super().train(mode)
        for name in self.frozen:
            self.tower(name).eval()
        return self

    def tower(self, name: str) -> nn.Module:
        if self.kind == "two-tower":
            return self.inner.image_model if name == "image" else self.inner.text_model
        return self.inner.vision_model if name == "image" else self.inner.text_model

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, Any, Any]:
        images = nn.functional.normalize(self.encode_images(pixel_values), dim=-1)
        texts = nn.functional.normalize(self.encode_texts(input_ids, attention_mask), dim=-1)
        scale = self.inner.logit_scale.exp().clamp(max=100.0)
        bias = getattr(self.inner, "logit_bias", None)
        return images, texts, scale, (bias * 1.0 if bias is not None else None)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.kind == "two-tower":
            return self.inner.encode_image(pixel_values)
        return _features(self.inner.get_image_features(pixel_values=pixel_values))

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "two-tower":
            return self.inner.encode_text(input_ids, attention_mask)
        inputs = {"input_ids": input_ids}
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask
        return _features(self.inner.get_text_features(**inputs))


def _features(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output  # transformers 5: an object


@dataclass
class BuiltModel:
    model: DualEncoderForTraining
    tokenizer: Any
    processor: Any
    text_rules: TextRules
    loss: str
    manifest: dict[str, Any] = field(default_factory=dict)  # fields of the saved model's mmtools.json


def build_model(options: ModelOptions) -> BuiltModel:
    """The model to train, its tokenizer and image processor, its text rules and loss."""
    options.check()
    if options.base:
        built = _from_base(options.base)
    else:
        from mmtools.models.two_tower import build_from_towers

        inner, tokenizer, processor, fields = build_from_towers(
            options.text_encoder, options.image_encoder, projection_dim=options.projection_dim,
            local_only=_offline())
        rules = TextRules(**fields.pop("text"))
        built = BuiltModel(DualEncoderForTraining(inner, "two-tower"), tokenizer, processor, rules, "infonce",
                           {"family": "two-tower", **fields})
    if options.max_length:
        built.text_rules = dataclasses.replace(built.text_rules,
                                               max_length=min(options.max_length, built.text_rules.max_length))
    if options.loss:
        if options.loss == "sigmoid" and getattr(built.model.inner, "logit_bias", None) is None:
            raise UsageError("the sigmoid loss needs a model with a logit bias (SigLIP, SigLIP 2)",
                             hint="leave out --loss, or use --loss infonce")
        built.loss = options.loss
    if options.lora:
        add_lora(built.model, options.lora_rank, options.lora_alpha)
    return built


def _from_base(base: str) -> BuiltModel:
    from mmtools.models.hf_dual import _load, default_text_rules
    from mmtools.models.registry import resolve_model

    ref = resolve_model(base)
    if ref.family != "hf-dual-encoder":
        raise ModelError(f"--base {base} is a {ref.family!r} model; --base fine-tunes CLIP, SigLIP and SigLIP 2",
                         hint="to go on training a two-tower model, pass its towers' directories")
    inner, tokenizer, processor = _load(ref)  # refuses anything that is not a dual encoder, clearly
    rules = default_text_rules(inner.config, tokenizer).with_overrides(ref.manifest.get("text", {}))
    is_siglip = inner.config.model_type in ("siglip", "siglip2")
    manifest = {"family": "hf-dual-encoder", "base": ref.name, "model_type": inner.config.model_type}
    return BuiltModel(DualEncoderForTraining(inner, "hf"), tokenizer, processor, rules,
                      "sigmoid" if is_siglip else "infonce", manifest)


def _offline() -> bool:
    import os

    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def tower_of(name: str, kind: str) -> str:
    """Which parameter group a parameter of the inner model belongs to: image, text or heads."""
    name = name.removeprefix("inner.")
    if kind == "two-tower":
        prefixes = {"image_model.": "image", "text_model.": "text"}
    else:
        prefixes = {"vision_model.": "image", "text_model.": "text"}
    for prefix, group in prefixes.items():
        if name.startswith(prefix):
            return group
    return "heads"  # projections, temperature, bias


def add_lora(model: DualEncoderForTraining, rank: int, alpha: int) -> None:
    """LoRA adapters (peft) on the towers' linear and convolution layers; the towers' own weights freeze,
    the heads keep learning in full."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise MissingDependencyError("--lora needs the peft package, which is not installed",
                                     hint="pip install 'mmtools[lora]' (or pip install peft)") from None
    targets = [name for name, module in model.inner.named_modules()
               if isinstance(module, (nn.Linear, nn.Conv2d)) and tower_of(name, model.kind) != "heads"]
    if not targets:
        raise UsageError("--lora found no linear or convolution layers in the towers")
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets),
                            model.inner)
    for name, parameter in model.inner.named_parameters():
        if tower_of(name, model.kind) != "heads":
            parameter.requires_grad_("lora_" in name)
    model.lora = True  # type: ignore[attr-defined]


def merged_copy(inner: nn.Module) -> nn.Module:
    """A copy of the model with its LoRA adapters merged into the weights (the saved model needs no peft)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    merged = copy.deepcopy(inner)
    for name, module in list(merged.named_modules()):
        if isinstance(module, BaseTunerLayer) and name:
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(merged.get_submodule(parent_name) if parent_name else merged, child, module.get_base_layer())
    return merged


# ------------------------------------------------------------------------------------------ the task


def contrastive_loss(images: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor, bias: Any,
                     kind: str) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) or the pairwise sigmoid loss (SigLIP) over a batch of matching pairs."""
    logits = scale * texts @ images.T  # (texts, images)
    n = logits.shape[0]
    if kind == "sigmoid":
        logits = logits + bias
        signs = 2 * torch.eye(n, device=logits.device, dtype=logits.dtype) - 1
        return -nn.functional.logsigmoid(signs * logits).sum() / n
    labels = torch.arange(n, device=logits.device)
    return (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)) / 2


class RetrievalTask:
    """The engine's TrainTask for dual encoders."""

    # Each batch is its own contrastive problem: accumulating gradients over batches does not give the
    # loss of one larger batch (its negatives); the engine's hints say so.
    contrastive = True

    def __init__(self, built: BuiltModel, options: ModelOptions, val_examples: Sequence[Example] = (),
                 *, eval_batch_size: int = 64, workers: int = 0):
        from mmtools.models.hf_dual import processor_image_size
        from mmtools.models.image_preprocess import FastImagePreprocessor

        self.built = built
        self.model = built.model
        self.options = options
        self.val_examples = list(val_examples)
        self.eval_batch_size = eval_batch_size
        self.workers = workers
        self.image_size = processor_image_size(built.processor)
        if options.freeze:
            self.model.frozen = {options.freeze}
        self._fast_images = FastImagePreprocessor.from_processor(built.processor)

    # -- what learns
    def param_groups(self) -> list[dict[str, Any]]:
        options = self.options
        lrs = {"image": options.lr_image, "text": options.lr_text, "heads": options.lr_heads}
        grouped: dict[str, list[Any]] = {"image": [], "text": [], "heads": []}
        lora = getattr(self.model, "lora", False)
        for name, parameter in self.model.inner.named_parameters():
            group = tower_of(name, self.model.kind)
            if lora and group != "heads" and "lora_" not in name:
                continue  # the tower's own weights stay frozen under LoRA
            grouped[group].append(parameter)
        return [{"name": name, "params": params, "lr": lrs[name]} for name, params in grouped.items() if params]

    def trainable_groups(self) -> set[str] | None:
        if self.options.freeze is None:
            return None
        return {name for name in ("image", "text", "heads") if name != self.options.freeze}

    # -- batches
    def preprocess(self, images: list[Any]) -> torch.Tensor:
        if self._fast_images is not None and all(self._fast_images.fits(image) for image in images):
            return self._fast_images(images)["pixel_values"]
        return self.built.processor(images=images, return_tensors="pt")["pixel_values"]

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        from mmtools.models.hf_dual import model_text_inputs, tokenize

        tokens = tokenize(self.built.tokenizer, texts, self.built.text_rules)
        return {k: v for k, v in model_text_inputs(tokens, self.built.text_rules).items()
                if k in ("input_ids", "attention_mask")}

    def collate(self, items: list[tuple[Example, Any]]) -> dict[str, torch.Tensor] | None:
        """Pairs whose image decoded; one of each image's captions, drawn afresh every epoch."""
        pairs = [(example, image) for example, image in items if image is not None and example.texts]
        if len(pairs) < 2:  # a contrastive batch needs negatives
            return None
        texts = [random.choice(example.texts) for example, _ in pairs]
        return {"pixel_values": self.preprocess([image for _, image in pairs]), **self.tokenize(texts)}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        images, texts, scale, bias = model(**batch)
        # in fp32 even under autocast: a bf16 similarity matrix loses the small differences the loss needs
        return contrastive_loss(gather_for_loss(images).float(), gather_for_loss(texts).float(), scale.float(),
                                bias.float() if bias is not None else None, self.built.loss)

    # -- validation
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        if not self.val_examples:
            return {}
        report = evaluate_model(unwrap(model), self, self.val_examples, batch_size=self.eval_batch_size,
                                workers=self.workers)
        metrics = {f"val_{direction}_{key}": value for direction in ("t2i", "i2t")
                   for key, value in report[direction].items()}
        metrics[MONITOR] = report["mean_recall"]
        return metrics

    # -- saving
    def save(self, model: nn.Module, directory: Path) -> None:
        wrapper = unwrap(model)
        lora = getattr(wrapper, "lora", False)
        inner = merged_copy(wrapper.inner) if lora else wrapper.inner
        save_model_dir(inner, wrapper.kind, self.built, directory)
        if lora and self.options.lora_keep_adapters:
            save_adapters(wrapper.inner, directory / "adapters")


def save_model_dir(inner: nn.Module, kind: str, built: BuiltModel, directory: Path) -> None:
    """A model directory every mmtools command loads: weights in safetensors, tokenizer, image processor and
    the mmtools.json manifest (family, base towers, text rules, projection size, version)."""
    from mmtools.models.two_tower import rules_to_dict, save_two_tower, write_manifest

    fields = {k: v for k, v in built.manifest.items() if k != "family"}
    fields["text"] = rules_to_dict(built.text_rules)
    fields["loss"] = built.loss
    if kind == "two-tower":
        save_two_tower(inner, built.tokenizer, built.processor, fields, directory)
        return
    inner.save_pretrained(directory, safe_serialization=True)
    built.tokenizer.save_pretrained(directory)
    built.processor.save_pretrained(directory)
    write_manifest(directory, {"family": "hf-dual-encoder", **fields})


def save_adapters(inner: nn.Module, directory: Path) -> None:
    """The LoRA adapters alone, in peft's format (adapter_model.safetensors), beside the merged model."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(inner).items()}
    save_file(state, str(directory / "adapter_model.safetensors"))
    config = getattr(inner, "peft_config", {}).get("default")
    if config is not None:
        config.save_pretrained(str(directory))


# ------------------------------------------------------------------------------------------ evaluation


def _images_only(items: list[tuple[Example, Any]]) -> list[Any]:
    return items


def evaluate_model(model: DualEncoderForTraining, task: RetrievalTask, examples: Sequence[Example], *,
                   batch_size: int = 64, workers: int = 0) -> dict[str, Any]:
    """Recall@K of a model under training on examples (each with an image and one or more texts)."""
    from torch.utils.data import DataLoader

    device = next(model.parameters()).device
    dataset = ExampleDataset(examples, image_size=task.image_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_images_only)
    image_vectors, text_vectors, text_image = [], [], []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        row = 0
        for items in loader:
            kept = [(example, image) for example, image in items if image is not None and example.texts]
            if not kept:
                continue
            pixels = task.preprocess([image for _, image in kept]).to(device)
            image_vectors.append(nn.functional.normalize(model.encode_images(pixels).float(), dim=-1).cpu())
            texts = []
            for offset, (example, _) in enumerate(kept):
                texts.extend(example.texts)
                text_image.extend([row + offset] * len(example.texts))
            row += len(kept)
            for start in range(0, len(texts), batch_size):
                tokens = {k: v.to(device) for k, v in task.tokenize(texts[start:start + batch_size]).items()}
                text_vectors.append(nn.functional.normalize(model.encode_texts(**tokens).float(), dim=-1).cpu())
    model.train(was_training)
    if not image_vectors:
        from mmtools.train.data import DataError

        raise DataError("the validation set has no image that could be read")
    data = RetrievalSet(torch.cat(image_vectors).numpy(), torch.cat(text_vectors).numpy(), text_image)
    return retrieval_metrics(data)


# ------------------------------------------------------------------------------------------ the whole run


def prepare_texts(examples: Sequence[Example], rules: TextRules) -> list[Example]:
    """Examples whose texts are already what the tokenizer gets (normalised, segmented for PhoBERT): done once
    here, not in every epoch's workers."""
    preparer = TextPreparer(rules)
    flat = [text for example in examples for text in example.texts]
    prepared = iter(preparer(flat)) if flat else iter(())
    return [dataclasses.replace(example, texts=[next(prepared) for _ in example.texts]) for example in examples]


def train_retrieval(train_examples: Sequence[Example], val_examples: Sequence[Example], options: ModelOptions,
                    config: TrainConfig, output: str | Path, *, resume: bool = False, overwrite: bool = False,
                    run_info: dict[str, Any] | None = None,
                    on_metrics: Callable[[dict[str, Any]], None] | None = None,
                    progress: Callable[[str, int], Any] | None = None, log_dir: str | None = None) -> TrainResult:
    """Train a dual encoder on (checked) examples; the best model by validation Recall lands in OUTPUT/model."""
    built = build_model(options)
    train_set = prepare_texts(train_examples, built.text_rules)
    val_set = prepare_texts(val_examples, built.text_rules)
    task = RetrievalTask(built, options, val_set, eval_batch_size=max(config.batch_size, 32),
                         workers=config.workers)
    trainable = task.trainable_groups()
    if trainable is not None:
        from mmtools.train.engine import Stage

        config = dataclasses.replace(config, stages=[Stage(config.epochs, trainable=trainable)])
    if val_set:
        config = dataclasses.replace(config, monitor=MONITOR)
    dataset = ExampleDataset(train_set, image_size=task.image_size)
    info = {**options.run_info(), **(run_info or {})}
    trainer = Trainer(task, dataset, config, output, resume=resume, overwrite=overwrite, on_metrics=on_metrics,
                      progress=progress, log_dir=log_dir, run_info=info,
                      manifest={"task": "retrieval"})
    return trainer.fit()


def save_untrained(options: ModelOptions, directory: str | Path) -> Path:
    """The model ``options`` would start from, saved as is: the baseline a trained model must beat."""
    from mmtools.atomic import atomic_directory

    built = build_model(options)
    with atomic_directory(directory) as tmp:
        save_model_dir(built.model.inner, built.model.kind, built, tmp)
    return Path(directory)


def memory_hint(batch_size: int) -> str:
    half = max(1, batch_size // 2)
    if half == 1:
        return "try --batch-size 1"
    return (f"try --batch-size {half}; --grad-accum 2 keeps {batch_size} pairs per update, but each pair is "
            f"still contrasted with the {half - 1} others of its own batch only (fewer negatives than "
            f"--batch-size {batch_size})")


def fit_with_memory_hint(run: Callable[[], TrainResult], batch_size: int) -> TrainResult:
    """CPU and MPS allocators raise a plain RuntimeError when memory runs out: say which batch size to try
    (the engine does the same for CUDA)."""
    from mmtools.train.engine import TrainingError

    try:
        return run()
    except RuntimeError as exc:
        text = str(exc)
        if "can't allocate memory" in text or "out of memory" in text.lower():
            raise TrainingError(f"out of memory at batch size {batch_size}", hint=memory_hint(batch_size)) from None
        raise
