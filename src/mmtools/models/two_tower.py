"""PhoCLIP-style dual encoders built by mmtools from two single towers: any transformers text model (PhoBERT,
a RoBERTa, a BERT) and any transformers vision model (ResNet, ViT), each with a projection head into one
shared space (Linear, GELU, Linear, dropout, residual, LayerNorm: the PhoCLIP design's heads).

A model directory holds everything needed to load it with no hub::

    DIR/mmtools.json        family "two-tower", base towers, pooling, projection size, text rules, version
    DIR/model.safetensors   all weights (towers, heads, temperature)
    DIR/text/               the text tower's config.json and tokenizer
    DIR/image/              the image tower's config.json and image processor

Loading builds each tower from its saved config (``AutoModel.from_config``) and then reads the weights from
safetensors, so nothing is fetched and nothing is unpickled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from mmtools.errors import ModelError
from mmtools.models.device import dtype_for
from mmtools.models.encoder import Encoder, ImageBatch
from mmtools.models.registry import MANIFEST, MANIFEST_FORMAT, MANIFEST_VERSION, ModelRef
from mmtools.text.prepare import TextPreparer, TextRules

FAMILY = "two-tower"
WEIGHTS = "model.safetensors"
TEXT_DIR, IMAGE_DIR = "text", "image"
DEFAULT_PROJECTION_DIM = 512
INITIAL_TEMPERATURE = 0.07  # CLIP's; the PhoCLIP note fixed it at 1.0, which hurts
# Text vector = the mean of the tokens' last hidden states (padding left out). The first token ([CLS]) is the
# other choice; trained from scratch on the offline demo it learnt only the caption's last word (held-out
# Recall@5 16.7 against 45.0 for the mean, 60 images, same budget).
TEXT_POOLING = ("mean", "first-token")


class ProjectionHead(nn.Module):
    """Tower features -> shared space: Linear, GELU, Linear, dropout, residual, LayerNorm (no dropout by
    default: the temperature and the towers' own dropout regularise enough for retrieval)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.projection = nn.Linear(in_dim, out_dim)
        self.gelu = nn.GELU()
        self.fc = nn.Linear(out_dim, out_dim)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        projected = self.projection(features)
        hidden = self.dropout(self.fc(self.gelu(projected)))
        return self.layer_norm(hidden + projected)


class TwoTowerModel(nn.Module):
    """Text tower + image tower + projection heads + a learnable temperature (as ``logit_scale``, CLIP's)."""

    def __init__(self, text_model: nn.Module, image_model: nn.Module, text_dim: int, image_dim: int,
                 projection_dim: int = DEFAULT_PROJECTION_DIM, temperature: float = INITIAL_TEMPERATURE,
                 text_pooling: str = "mean"):
        super().__init__()
        if text_pooling not in TEXT_POOLING:
            raise ModelError(f"unknown text pooling {text_pooling!r}; this mmtools knows {', '.join(TEXT_POOLING)}")
        self.text_pooling = text_pooling
        self.text_model = text_model
        self.image_model = image_model
        self.text_projection = ProjectionHead(text_dim, projection_dim)
        self.image_projection = ProjectionHead(image_dim, projection_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.text_pooling == "first-token":  # the [CLS] / <s> token
            return self.text_projection(hidden[:, 0])
        mask = (attention_mask if attention_mask is not None else torch.ones_like(input_ids)).unsqueeze(-1)
        mask = mask.to(hidden.dtype)
        return self.text_projection((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.image_projection(image_features(self.image_model(pixel_values=pixel_values)))

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit image and text vectors of a batch of pairs."""
        images = nn.functional.normalize(self.encode_image(pixel_values), dim=-1)
        texts = nn.functional.normalize(self.encode_text(input_ids, attention_mask), dim=-1)
        return images, texts


def image_features(output: Any) -> torch.Tensor:
    """One vector per image: the first token of a ViT-like model, the pooled map of a CNN (ResNet: 2048-d)."""
    hidden = getattr(output, "last_hidden_state", None)
    if hidden is not None and hidden.dim() == 3:
        return hidden[:, 0]
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        raise ModelError("the image tower returns neither token features nor a pooled output")
    return pooled.flatten(1)


def tower_dim(config: Any) -> int:
    sizes = getattr(config, "hidden_sizes", None)  # ResNet, ConvNeXt: the last stage's channels
    if sizes:
        return int(sizes[-1])
    return int(config.hidden_size)


def check_tower(config: Any, kind: str, name: str) -> None:
    """Refuse a tower of the wrong kind with a message that says which option fits."""
    if hasattr(config, "vision_config") or hasattr(config, "text_config"):
        raise ModelError(f"{name} is a dual encoder ({config.model_type}), not a single {kind} tower",
                         hint=f"fine-tune it with --base {name}")
    is_vision = hasattr(config, "num_channels")
    if kind == "image" and not is_vision:
        raise ModelError(f"--image-encoder {name} is a {config.model_type!r} model, not a vision model",
                         hint="pass a transformers vision model such as microsoft/resnet-50 or a ViT")
    if kind == "text" and (is_vision or not hasattr(config, "vocab_size")):
        raise ModelError(f"--text-encoder {name} is a {config.model_type!r} model, not a text model",
                         hint="pass a transformers text model such as vinai/phobert-base")


def is_phobert(tokenizer: Any, name: str) -> bool:
    return "phobert" in type(tokenizer).__name__.lower() or "phobert" in name.lower()


def text_rules_for(tokenizer: Any, config: Any, name: str) -> TextRules:
    """PhoBERT: word-segmented text (RDRsegmenter's convention), at most 256 tokens; others: their limit."""
    if is_phobert(tokenizer, name):
        return TextRules(max_length=256, segment=True)
    limit = int(getattr(config, "max_position_embeddings", 512) or 512)
    # RoBERTa-style position tables reserve two slots for the padding offset.
    return TextRules(max_length=limit - 2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta")
                     else limit)


def build_from_towers(text_location: str, image_location: str, *, projection_dim: int = DEFAULT_PROJECTION_DIM,
                      local_only: bool = True) -> tuple[TwoTowerModel, Any, Any, dict[str, Any]]:
    """A new two-tower model from pretrained towers: model, tokenizer, image processor, manifest fields."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

    from mmtools.models.hf_dual import quiet_transformers

    quiet_transformers()
    parts = {}
    for kind, location in (("text", text_location), ("image", image_location)):
        try:
            config = AutoConfig.from_pretrained(location, local_files_only=local_only)
        except Exception as exc:
            raise ModelError(f"{kind} tower {location} cannot be loaded: {_first_line(exc)}",
                             hint="pass a local directory saved with save_pretrained, or a Hugging Face id "
                                  "already in the local cache") from None
        check_tower(config, kind, location)
        try:
            # safetensors when the repository has them; transformers reads .bin with weights_only=True.
            model = AutoModel.from_pretrained(location, local_files_only=local_only)
            extra = (AutoTokenizer if kind == "text" else AutoImageProcessor).from_pretrained(
                location, local_files_only=local_only)
        except Exception as exc:
            raise ModelError(f"{kind} tower {location} cannot be loaded: {_first_line(exc)}") from None
        parts[kind] = (config, model, extra)
    (text_config, text_model, tokenizer), (image_config, image_model, processor) = parts["text"], parts["image"]
    model = TwoTowerModel(text_model, image_model, tower_dim(text_config), tower_dim(image_config), projection_dim)
    rules = text_rules_for(tokenizer, text_config, text_location)
    fields = {"towers": {"text": {"base": text_location, "type": text_config.model_type, "pooling": "mean",
                                  "dim": tower_dim(text_config)},
                         "image": {"base": image_location, "type": image_config.model_type,
                                   "pooling": "first-token-or-pooled", "dim": tower_dim(image_config)}},
              "projection_dim": projection_dim, "text": rules_to_dict(rules)}
    return model, tokenizer, processor, fields


def rules_to_dict(rules: TextRules) -> dict[str, Any]:
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(rules).items() if k != "extra"}


def write_manifest(directory: Path, fields: dict[str, Any]) -> None:
    from mmtools import __version__

    manifest = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, **fields,
                "mmtools_version": __version__}
    (directory / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def save_two_tower(model: TwoTowerModel, tokenizer: Any, processor: Any, fields: dict[str, Any],
                   directory: Path) -> None:
    """Write a loadable model directory (into an empty directory; callers swap it in atomically)."""
    from safetensors.torch import save_model

    directory.mkdir(parents=True, exist_ok=True)
    (directory / TEXT_DIR).mkdir(exist_ok=True)
    (directory / IMAGE_DIR).mkdir(exist_ok=True)
    model.text_model.config.save_pretrained(directory / TEXT_DIR)
    tokenizer.save_pretrained(directory / TEXT_DIR)
    model.image_model.config.save_pretrained(directory / IMAGE_DIR)
    processor.save_pretrained(directory / IMAGE_DIR)
    save_model(model, str(directory / WEIGHTS))  # handles tied tensors; plain tensors, no pickle
    write_manifest(directory, {"family": FAMILY, **fields})


def load_two_tower(directory: str | Path) -> tuple[TwoTowerModel, Any, Any, dict[str, Any]]:
    """Model (in eval mode, on the CPU), tokenizer, image processor and manifest of a saved directory."""
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

    from mmtools.models.hf_dual import quiet_transformers
    from mmtools.models.registry import read_manifest

    quiet_transformers()
    directory = Path(directory)
    manifest = read_manifest(directory)
    missing = [name for name in (WEIGHTS, f"{TEXT_DIR}/config.json", f"{IMAGE_DIR}/config.json")
               if not (directory / name).exists()]
    if missing:
        raise ModelError(f"model directory {directory} is incomplete (no {', '.join(missing)})",
                         hint="train it again, or pass the directory mmtools train wrote")
    try:
        text_config = AutoConfig.from_pretrained(directory / TEXT_DIR, local_files_only=True)
        image_config = AutoConfig.from_pretrained(directory / IMAGE_DIR, local_files_only=True)
        pooling = manifest.get("towers", {}).get("text", {}).get("pooling", "mean")
        model = TwoTowerModel(AutoModel.from_config(text_config), AutoModel.from_config(image_config),
                              tower_dim(text_config), tower_dim(image_config),
                              int(manifest.get("projection_dim", DEFAULT_PROJECTION_DIM)), text_pooling=pooling)
        load_model(model, str(directory / WEIGHTS))
        tokenizer = AutoTokenizer.from_pretrained(directory / TEXT_DIR, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(directory / IMAGE_DIR, local_files_only=True)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"model directory {directory} cannot be loaded: {_first_line(exc)}") from None
    return model.eval(), tokenizer, processor, manifest


class TwoTowerEncoder(Encoder):
    """The Encoder of a two-tower model directory: what embed-images, embed-texts, index and search use."""

    family = FAMILY

    def __init__(self, ref: ModelRef, device: str):
        from mmtools.models.hf_dual import processor_image_size

        self.name = ref.name
        self.location = ref.location
        self.device = device
        self._dtype = dtype_for(device)
        self.model, self.tokenizer, self.image_processor, manifest = load_two_tower(ref.location)
        self.model.to(device=device, dtype=self._dtype)
        base = text_rules_for(self.tokenizer, self.model.text_model.config, "")
        self.text_rules = base.with_overrides(manifest.get("text", {}))
        self._prepare_text = TextPreparer(self.text_rules)
        self._image_size = processor_image_size(self.image_processor)
        self.dim = int(manifest.get("projection_dim", DEFAULT_PROJECTION_DIM))

    @property
    def image_size(self) -> int | None:
        return self._image_size

    def preprocess_images(self, images: Sequence[Any]) -> ImageBatch:
        return self.image_processor(images=list(images), return_tensors="pt")

    def encode_image_batch(self, batch: ImageBatch) -> Any:
        pixels = batch["pixel_values"].to(device=self.device, dtype=self._dtype)
        with torch.inference_mode():
            return _unit(self.model.encode_image(pixels))

    def encode_texts(self, texts: Sequence[str], on_truncated: Callable[[int], None] | None = None) -> Any:
        from mmtools.models.hf_dual import model_text_inputs, tokenize

        prepared = self._prepare_text(list(texts))
        tokens = tokenize(self.tokenizer, prepared, self.text_rules)
        if on_truncated is not None:
            full = self.tokenizer(prepared, truncation=False)["input_ids"]
            for i, ids in enumerate(full):
                if len(ids) > self.text_rules.max_length:
                    on_truncated(i)
        inputs = {k: v.to(self.device) for k, v in self._text_inputs(tokens).items()}
        with torch.inference_mode():
            return _unit(self.model.encode_text(**inputs))

    def _text_inputs(self, tokens: Any) -> dict[str, Any]:
        from mmtools.models.hf_dual import model_text_inputs

        return {k: v for k, v in model_text_inputs(tokens, self.text_rules).items()
                if k in ("input_ids", "attention_mask")}

    def export_spec(self) -> Any:
        """The towers as ONNX export sees them (mmtools.models.onnx_export)."""
        from mmtools.models.hf_dual import tokenize, processor_image_size
        from mmtools.models.image_preprocess import FastImagePreprocessor
        from mmtools.models.onnx_export import TowerSpec

        model = self.model
        scale = float(model.logit_scale.detach().float().exp())
        return TowerSpec(text=lambda **inputs: model.encode_text(**inputs),
                         image=lambda pixel_values: model.encode_image(pixel_values),
                         text_inputs=lambda prepared: self._text_inputs(
                             tokenize(self.tokenizer, prepared, self.text_rules)),
                         prepare_text=self._prepare_text, tokenizer=self.tokenizer, tokenizer_dir=TEXT_DIR,
                         image_dir=IMAGE_DIR, fast_images=FastImagePreprocessor.from_processor(self.image_processor),
                         image_processor=self.image_processor,
                         image_size=processor_image_size(self.image_processor), logit=(scale, None),
                         modules=[model])


def _unit(vectors: torch.Tensor) -> Any:
    return nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
