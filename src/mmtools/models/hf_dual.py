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
SIGLIP_RULES = TextRules(max_length=64, lowercase=True, padding="max_length", attention_mask=False)
CLIP_RULES = TextRules(max_length=77)
PHOBERT_RULES = TextRules(max_length=256, segment=True)

SUPPORTED_TYPES = ("clip", "siglip", "siglip2", "vision-text-dual-encoder")


def default_text_rules(config: Any, tokenizer: Any) -> TextRules:
    model_type = config.model_type
    if model_type in ("siglip", "siglip2"):
        limit = getattr(config.text_config, "max_position_embeddings", 64) or 64
        return TextRules(max_length=min(64, limit), lowercase=True, padding="max_length", attention_mask=False)
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
        return processor_image_size(self.image_processor)

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
        tokens = tokenize(self.tokenizer, prepared, self.text_rules)
        if on_truncated is not None:
            for i in self._truncated(prepared, tokens):
                on_truncated(i)
        inputs = {k: v.to(self.device) for k, v in self._text_inputs(tokens).items()}
        with torch.inference_mode():
            output = self.model.get_text_features(**inputs)
        return _unit_vectors(output)

    def _text_inputs(self, tokens: Any) -> dict[str, Any]:
        return {k: v for k, v in model_text_inputs(tokens, self.text_rules).items() if k in self._text_args}

    def export_spec(self) -> Any:
        """The towers as ONNX export sees them (mmtools.models.onnx_export)."""
        from mmtools.models.onnx_export import TowerSpec

        model = self.model

        def text(**inputs: Any) -> Any:
            return _features(model.get_text_features(**inputs))

        def image(pixel_values: Any) -> Any:
            return _features(model.get_image_features(pixel_values=pixel_values))

        return TowerSpec(text=text, image=image, text_inputs=lambda prepared: self._text_inputs(
                             tokenize(self.tokenizer, prepared, self.text_rules)),
                         prepare_text=self._prepare_text, tokenizer=self.tokenizer, tokenizer_dir=".",
                         image_dir=".", fast_images=self._fast_images, image_processor=self.image_processor,
                         image_size=self.image_size, logit=self.logit_scale_and_bias(), modules=[model])

    def logit_scale_and_bias(self) -> tuple[float, float | None]:
        """The scale (already exponentiated) and bias the model applies to cosine similarities in training.

        SigLIP models have both (their probabilities are sigmoid(scale * cos + bias)); CLIP-style models have
        only a scale (bias None), with which a softmax over candidates gives their training distribution.
        """
        scale = getattr(self.model, "logit_scale", None)
        bias = getattr(self.model, "logit_bias", None)
        value = float(scale.detach().float().exp().reshape(-1)[0]) if scale is not None else 100.0
        return value, (float(bias.detach().float().reshape(-1)[0]) if bias is not None else None)

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


def processor_image_size(processor: Any) -> int | None:
    """The side length an image processor resizes to (None when it does not say)."""
    sizes = []
    for attr in ("size", "crop_size"):
        value = getattr(processor, attr, None)
        if isinstance(value, int):
            sizes.append(value)
            continue
        for key in ("height", "width", "shortest_edge"):  # dict or transformers' SizeDict
            side = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
            if isinstance(side, int):
                sizes.append(side)
    return max(sizes) if sizes else None


def tokenize(tokenizer: Any, prepared: list[str], rules: TextRules) -> Any:
    """Tokenise prepared texts as the family's rules say (padding, length); encoding and training share it."""
    padding = "max_length" if rules.padding == "max_length" else True
    return tokenizer(prepared, padding=padding, truncation=True, max_length=rules.max_length,
                     return_tensors="pt")


def model_text_inputs(tokens: Any, rules: TextRules) -> dict[str, Any]:
    """The tokenizer's output as the text tower was trained to see it: without the mask when the family
    was trained without one (SigLIP, SigLIP 2)."""
    return {k: v for k, v in tokens.items() if rules.attention_mask or k != "attention_mask"}


def _features(output: Any) -> Any:
    import torch

    if not isinstance(output, torch.Tensor):  # transformers 5 returns an output object
        output = output.pooler_output
    return output


def _unit_vectors(output: Any) -> Any:
    import torch

    return torch.nn.functional.normalize(_features(output).float(), dim=-1).cpu().numpy()


def _accepted_args(method: Callable[..., Any]) -> set[str]:
    return set(inspect.signature(method).parameters)


def _load(ref: ModelRef, load_from: Callable[[ModelRef, str, bool], Any] | None = None) -> Any:
    """Load model, tokenizer and image processor: from the local cache first (no network at all), and only
    when that fails from the hub, after a quick check that it can be reached (a few seconds at most, so an
    offline machine gets one clear error instead of half a minute of retries). ``load_from(ref, location,
    local_only)`` loads the parts (other model kinds, e.g. captioners, pass their own)."""
    load_from = load_from or _load_from
    require_torch(ref)
    if ref.is_local and not os.path.exists(os.path.join(ref.location, "config.json")):
        raise ModelError(f"model directory {ref.location} has no config.json",
                         hint="pass a directory written by save_pretrained or by mmtools train")
    from mmtools.models.hub import hub_unavailable_reason, quiet_hub

    check_obtainable(ref)
    # A cached hub model is opened as the local snapshot directory it is: given the hub id, transformers
    # still asks the hub for optional files (adapter_config.json) even with local_files_only, and retries.
    snapshot = None if ref.is_local else _cached_snapshot(ref.location)
    quiet_transformers()
    try:
        return load_from(ref, snapshot or ref.location, True)
    except ModelError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, hub and network errors alike
        local_error = exc
    if ref.is_local:
        raise ModelError(f"model directory {ref.location} cannot be loaded: {_first_line(local_error)}")
    unavailable = hub_unavailable_reason()
    if unavailable:
        raise ModelError(f"model {ref.name} is only partly in the local Hugging Face cache "
                         f"({_first_line(local_error)}) and {unavailable}", hint=offline_hint(ref.name))
    quiet_hub()
    try:
        return load_from(ref, ref.location, False)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"model {ref.name} cannot be downloaded from the Hugging Face hub: {_first_line(exc)}",
                         hint="check the name (aliases: mmtools models list --all), or download it with "
                              f"`mmtools models pull {ref.name}`") from None


def check_obtainable(ref: ModelRef) -> None:
    """Raise at once (before torch or transformers are imported) for a hub model that is not cached while the
    hub cannot be reached. Costs nothing for local and cached models: it only reads the cache."""
    require_torch(ref)
    if ref.is_local or _cached_snapshot(ref.location) is not None:
        return
    from mmtools.models.hub import hub_unavailable_reason

    unavailable = hub_unavailable_reason()
    if unavailable:
        raise ModelError(f"model {ref.name} is not in the local Hugging Face cache and {unavailable}",
                         hint=offline_hint(ref.name))


def require_torch(ref: ModelRef) -> None:
    """Raise, before anything is downloaded, when PyTorch (which these models run on) is not installed."""
    from mmtools.models.runtime import TORCH_HINT, torch_installed

    if not torch_installed():
        raise ModelError(f"model {ref.name} runs on PyTorch, which this install leaves out", hint=TORCH_HINT)


def offline_hint(name: str) -> str:
    return (f"on a machine with internet run `mmtools models pull {name}` and copy its Hugging Face cache "
            "here (or point HF_HOME at it); or copy a model directory here and pass --model DIR "
            "(`mmtools models import DIR --name NAME` gives it a short name)")


def _load_from(ref: ModelRef, location: str, local_only: bool) -> tuple[Any, Any, Any]:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(location, local_files_only=local_only)
    if config.model_type not in SUPPORTED_TYPES:
        raise ModelError(
            f"model {ref.name} is a {config.model_type!r} model; mmtools embeds with dual encoders "
            f"({', '.join(SUPPORTED_TYPES)})")
    return _load_parts(location, local_only)


def _load_parts(location: str, local_only: bool) -> tuple[Any, Any, Any]:
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    # safetensors only: never unpickle weights; no remote code.
    model = AutoModel.from_pretrained(location, local_files_only=local_only, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
    image_processor = AutoImageProcessor.from_pretrained(location, local_files_only=local_only)
    return model, tokenizer, image_processor


def _cached_snapshot(hub_id: str) -> str | None:
    """The snapshot directory of ``hub_id`` in the local Hugging Face cache (holding its config), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(hub_id, "config.json")
    except Exception:
        return None
    return os.path.dirname(config) if isinstance(config, str) else None


def quiet_transformers() -> None:
    """transformers logs loading chatter and progress bars; mmtools keeps stderr for what matters."""
    if os.environ.get("MMTOOLS_DEBUG"):
        return
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0] if exc and str(exc).strip() else type(exc).__name__
