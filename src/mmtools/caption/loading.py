"""Naming and loading captioners: aliases, the default model, and a process-wide cache of loaded generators.

A captioner is named like any mmtools model (a directory, an imported name, a Hugging Face id, or an alias of
CAPTION_ALIASES); a `train captioner` run directory loads its best model. Weights load from safetensors only
and never with remote code; a hub model is taken from the local cache first, and the hub is asked only when
it can be reached (mmtools.models.hf_dual's loading, with the captioner's own parts).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from mmtools.errors import ModelError
from mmtools.models.registry import ModelRef, resolve_model

# Qwen2-VL reads and writes Vietnamese among its listed languages, is Apache-2.0 and needs no remote code.
DEFAULT_CAPTIONER = "Qwen/Qwen2-VL-2B-Instruct"
CAPTION_ALIASES: dict[str, str] = {
    "qwen2-vl-2b": "Qwen/Qwen2-VL-2B-Instruct",
    "qwen2.5-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen2.5-vl-7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "smolvlm-256m": "HuggingFaceTB/SmolVLM-256M-Instruct",
    "smolvlm-500m": "HuggingFaceTB/SmolVLM-500M-Instruct",
    "blip-base": "Salesforce/blip-image-captioning-base",
    "blip-large": "Salesforce/blip-image-captioning-large",
    "git-base": "microsoft/git-base-coco",
    "vit-gpt2": "nlpconnect/vit-gpt2-image-captioning",
}
CAPTIONER_FAMILY = "captioner"  # mmtools.json "family" of a directory `train captioner` writes


def resolve_captioner(name: str | None) -> ModelRef:
    """What ``--model`` names (``MMTOOLS_CAPTION_MODEL``, else the default), aliases first."""
    given = (name or os.environ.get("MMTOOLS_CAPTION_MODEL") or DEFAULT_CAPTIONER).strip() or DEFAULT_CAPTIONER
    return resolve_model(CAPTION_ALIASES.get(given, given))


class GeneratorCache:
    """Generators by model and device: each loaded once per process, on the device chosen for it."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, model: str | None = None, device: str | None = None, *, for_training: bool = False) -> Any:
        from mmtools.models.device import choose_device

        ref = resolve_captioner(model)
        if ref.family not in (CAPTIONER_FAMILY, "hf-dual-encoder"):  # a tagger's or two-tower's manifest
            raise ModelError(f"model {ref.name} is a {ref.family} model, not a captioner",
                             hint="caption with a captioner (e.g. --model qwen2-vl-2b, or a train captioner run)")
        from mmtools.models.hf_dual import check_obtainable

        check_obtainable(ref)  # an offline machine hears so before torch is imported
        chosen = choose_device(device)
        if for_training:  # training moves and casts the model itself: never share it with inference
            return load_generator(ref, "cpu", half=False)
        key = (ref.name, chosen)
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = load_generator(ref, chosen)
            return self._loaded[key]


default_generators = GeneratorCache()


def load_captioner(model: str | None = None, device: str | None = None) -> Any:
    """The process-wide generator for ``model`` on ``device`` (auto: cuda, then mps, then cpu)."""
    return default_generators.get(model, device or os.environ.get("MMTOOLS_DEVICE"))


def load_generator(ref: ModelRef, device: str, *, half: bool = True) -> Any:
    """A Generator of the model's family, in eval mode on ``device`` (half precision on a GPU when ``half``)."""
    from mmtools.caption.families import ChatVlmGenerator
    from mmtools.models.hf_dual import _load

    if ref.is_local and not os.path.exists(os.path.join(ref.location, "config.json")):
        raise ModelError(f"model directory {ref.location} has no config.json",
                         hint="pass a directory written by save_pretrained or by mmtools train captioner")
    kind, model, tokenizer, image_processor, processor = _load(ref, _load_parts)
    dtype = _dtype(device, kind is ChatVlmGenerator) if half else None
    model.to(device=device, dtype=dtype).eval()
    generator = kind(ref.name, model, tokenizer, image_processor, processor, device=device, dtype=dtype)
    generator.location, generator.manifest = ref.location, ref.manifest
    return generator


def _dtype(device: str, chat: bool) -> Any:
    """fp16 on GPUs; chat VLMs (LLM decoders, trained in bf16) in bf16 where the GPU has it; fp32 on CPUs."""
    import torch

    from mmtools.models.device import dtype_for

    dtype = dtype_for(device)
    if chat and dtype == torch.float16 and device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return dtype


def _load_parts(ref: ModelRef, location: str, local_only: bool) -> tuple[Any, ...]:
    from transformers import AutoConfig

    from mmtools.caption.families import ChatVlmGenerator, EncoderDecoderGenerator, family_for

    config = AutoConfig.from_pretrained(location, local_files_only=local_only)  # no remote code
    kind = family_for(config)
    options = {"local_files_only": local_only}
    if kind is EncoderDecoderGenerator:
        from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

        model = VisionEncoderDecoderModel.from_pretrained(location, use_safetensors=True, **options)
        tokenizer = AutoTokenizer.from_pretrained(location, **options)
        return kind, model, tokenizer, AutoImageProcessor.from_pretrained(location, **options), None
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if kind is ChatVlmGenerator:
        model = AutoModelForImageTextToText.from_pretrained(location, use_safetensors=True, **options)
    else:  # BLIP and GIT captioners by their own classes (the auto class would pick BLIP's VQA head)
        from transformers import BlipForConditionalGeneration, GitForCausalLM

        cls = BlipForConditionalGeneration if config.model_type == "blip" else GitForCausalLM
        model = cls.from_pretrained(location, use_safetensors=True, **options)
    processor = AutoProcessor.from_pretrained(location, **options)
    tokenizer = getattr(processor, "tokenizer", None)
    image_processor = getattr(processor, "image_processor", None)
    if tokenizer is None or image_processor is None:
        raise ModelError(f"model {ref.name} has no tokenizer or image processor beside its weights")
    return kind, model, tokenizer, image_processor, processor
