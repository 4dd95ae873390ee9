"""Hugging Face dual encoders: CLIP, SigLIP, SigLIP 2 and VisionTextDualEncoder (e.g. PhoBERT + a ViT)."""

from __future__ import annotations

import inspect
import os
from functools import cached_property
from typing import Any, Callable, Sequence

from mmtools.errors import ModelError
from mmtools.models.device import dtype_for
from mmtools.models.encoder import Encoder, ImageBatch
from mmtools.models.image_preprocess import FastImagePreprocessor
from mmtools.models.registry import ModelRef
from mmtools.text.prepare import TextPreparer, TextRules

# What each family's text needs (see TextRules). SigLIP was trained on lower-cased text padded to 64 tokens;
# quality collapses without it. PhoBERT expects word-segmented input and takes at most 256 tokens.
SIGLIP_RULES = TextRules(max_length=64, lowercase=True, padding="max_length")
CLIP_RULES = TextRules(max_length=77)
PHOBERT_RULES = TextRules(max_length=256, segment=True)

SUPPORTED_TYPES = ("clip", "siglip", "siglip2", "vision-text-dual-encoder")


def default_text_rules(config: Any, tokenizer: Any) -> TextRules:
    model_type = config.model_type
    if model_type in ("siglip", "siglip2"):
        limit = getattr(config.text_config, "max_position_embeddings", 64) or 64
        return TextRules(max_length=min(64, limit), lowercase=True, padding="max_length")
    if model_type == "clip":
        return TextRules(max_length=getattr(config.text_config, "max_position_embeddings", 77) or 77)
    if _is_phobert(config, tokenizer):
        return PHOBERT_RULES
    limit = getattr(getattr(config, "text_config", config), "max_position_embeddings", 512) or 512
    # RoBERTa-style position tables reserve two slots for the padding offset.
    return TextRules(max_length=max(8, limit - 2) if limit > 64 else limit)


def _is_phobert(config: Any, tokenizer: Any) -> bool:
    text_config = getattr(config, "text_config", None)
    names = [type(tokenizer).__name__, str(getattr(text_config, "_name_or_path", "")),
             str(getattr(tokenizer, "name_or_path", ""))]
    return any("phobert" in n.lower() for n in names)


class HFDualEncoder(Encoder):
    def __init__(self, ref: ModelRef, device: str):
        self.name = ref.name
        self.location = ref.location
        self.family = ref.family
        self.device = device
        self._dtype = dtype_for(device)
        self.model, self.tokenizer, self.image_processor = _load(ref)
        self.model.to(device=device, dtype=self._dtype).eval()
        rules = default_text_rules(self.model.config, self.tokenizer)
        self.text_rules = rules.with_overrides(ref.manifest.get("text", {}))
        self._prepare_text = TextPreparer(self.text_rules)
        self._fast_images = FastImagePreprocessor.from_processor(self.image_processor)
        self._image_args = _accepted_args(self.model.get_image_features)
        self._text_args = _accepted_args(self.model.get_text_features)

    @cached_property
    def dim(self) -> int:  # type: ignore[override]
        return int(self.encode_texts(["a"]).shape[1])

    @property
    def image_size(self) -> int | None:
        sizes = []
        for attr in ("size", "crop_size"):
            value = getattr(self.image_processor, attr, None)
            if isinstance(value, int):
                sizes.append(value)
                continue
            for key in ("height", "width", "shortest_edge"):  # dict or transformers' SizeDict
                side = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
                if isinstance(side, int):
                    sizes.append(side)
        return max(sizes) if sizes else None

    def preprocess_images(self, images: Sequence[Any]) -> ImageBatch:
        if self._fast_images is not None and all(self._fast_images.fits(image) for image in images):
            return self._fast_images(images)
        return self.image_processor(images=list(images), return_tensors="pt")

    def encode_image_batch(self, batch: ImageBatch) -> Any:
        import torch

        inputs = {k: self._to_device(v) for k, v in batch.items() if k in self._image_args}
        with torch.inference_mode():
            output = self.model.get_image_features(**inputs)
        return _unit_vectors(output)

    def encode_texts(self, texts: Sequence[str], on_truncated: Callable[[int], None] | None = None) -> Any:
        import torch

        prepared = self._prepare_text(list(texts))
        rules = self.text_rules
        padding = "max_length" if rules.padding == "max_length" else True
        tokens = self.tokenizer(prepared, padding=padding, truncation=True, max_length=rules.max_length,
                                return_tensors="pt")
        if on_truncated is not None:
            for i in self._truncated(prepared, tokens):
                on_truncated(i)
        inputs = {k: v.to(self.device) for k, v in tokens.items() if k in self._text_args}
        with torch.inference_mode():
            output = self.model.get_text_features(**inputs)
        return _unit_vectors(output)

    def _truncated(self, texts: list[str], tokens: Any) -> list[int]:
        encodings = getattr(tokens, "encodings", None)
        if encodings:  # fast tokenizers keep what truncation cut off
            return [i for i, enc in enumerate(encodings) if enc.overflowing]
        full = self.tokenizer(texts, truncation=False)["input_ids"]
        return [i for i, ids in enumerate(full) if len(ids) > self.text_rules.max_length]

    def _to_device(self, value: Any) -> Any:
        if value.is_floating_point():
            return value.to(device=self.device, dtype=self._dtype)
        return value.to(self.device)


def _unit_vectors(output: Any) -> Any:
    import torch

    if not isinstance(output, torch.Tensor):  # transformers 5 returns an output object
        output = output.pooler_output
    return torch.nn.functional.normalize(output.float(), dim=-1).cpu().numpy()


def _accepted_args(method: Callable[..., Any]) -> set[str]:
    return set(inspect.signature(method).parameters)


def _load(ref: ModelRef) -> tuple[Any, Any, Any]:
    """Load model, tokenizer and image processor: from the local cache first, then the hub if allowed."""
    quiet_transformers()
    from transformers import AutoConfig

    if ref.is_local and not os.path.exists(os.path.join(ref.location, "config.json")):
        raise ModelError(f"model directory {ref.location} has no config.json",
                         hint="pass a directory written by save_pretrained or by mmtools train")
    offline = _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")
    attempts = [True] if ref.is_local or offline else [True, False]
    last_error: Exception | None = None
    for local_only in attempts:
        try:
            config = AutoConfig.from_pretrained(ref.location, local_files_only=local_only)
            if config.model_type not in SUPPORTED_TYPES:
                raise ModelError(
                    f"model {ref.name} is a {config.model_type!r} model; mmtools embeds with dual encoders "
                    f"({', '.join(SUPPORTED_TYPES)})")
            return _load_parts(ref.location, local_only)
        except ModelError:
            raise
        except Exception as exc:  # transformers raises OSError, ValueError, hub and network errors alike
            last_error = exc
    if ref.is_local:
        raise ModelError(f"model directory {ref.location} cannot be loaded: {_first_line(last_error)}")
    if not _cached(ref.location):
        reason = "the hub is disabled (HF_HUB_OFFLINE)" if offline else "the Hugging Face hub cannot be reached"
        raise ModelError(
            f"model {ref.name} is not in the local Hugging Face cache and {reason}",
            hint=(f"on a machine with internet run `hf download {ref.name}` and copy its cache here "
                  "(or set HF_HOME to it), or pass a local directory with --model ./DIR"),
        )
    raise ModelError(f"model {ref.name} cannot be loaded: {_first_line(last_error)}",
                     hint="its cached copy may be incomplete; download it again with `hf download`")


def _load_parts(location: str, local_only: bool) -> tuple[Any, Any, Any]:
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    # safetensors only: never unpickle weights; no remote code.
    model = AutoModel.from_pretrained(location, local_files_only=local_only, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
    image_processor = AutoImageProcessor.from_pretrained(location, local_files_only=local_only)
    return model, tokenizer, image_processor


def _cached(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
    except Exception:
        return False


def quiet_transformers() -> None:
    """transformers logs loading chatter and progress bars; mmtools keeps stderr for what matters."""
    if os.environ.get("MMTOOLS_DEBUG"):
        return
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0] if exc and str(exc).strip() else type(exc).__name__
