"""Text and image towers for the trained tagger: loading them from a model directory, a hub id, or both
towers of a dual encoder, and writing / reading a whole tagger directory.

A tagger directory holds ``mmtools.json`` (family ``mmtools-tagger``: labels, thresholds, fusion, text rules),
``model.safetensors`` (every weight of the network), ``text/`` (the text tower's config and tokenizer) and
``image/`` (the image tower's config and image processor). It loads without the hub.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mmtools.errors import ModelError
from mmtools.models.registry import MANIFEST, MANIFEST_FORMAT, MANIFEST_VERSION, resolve_model
from mmtools.tag.spec import POOLER_TEXT_TYPES, TaggerSpec
from mmtools.text.prepare import TextRules

FAMILY = "mmtools-tagger"
WEIGHTS = "model.safetensors"
NO_MASK_TEXT_TYPES = ("siglip_text_model", "siglip2_text_model")
DUAL_TYPES = ("clip", "siglip", "siglip2", "vision-text-dual-encoder")


@dataclass
class Towers:
    """What a tagger is built from. Each part is None when the modality is not used."""

    text_model: Any = None
    tokenizer: Any = None
    text_rules: TextRules | None = None
    image_model: Any = None
    image_processor: Any = None


def _pretrained(loader: Any, location: str, what: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` for a local directory or a hub id (cache first); a clear ModelError else."""
    from mmtools.models.hf_dual import quiet_transformers

    quiet_transformers()
    ref = resolve_model(location)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    last: Exception | None = None
    for local_only in ([True] if ref.is_local or offline else [True, False]):
        try:
            return loader.from_pretrained(ref.location, local_files_only=local_only, **kwargs)
        except Exception as exc:  # transformers raises OSError, ValueError, hub errors alike
            last = exc
    first = str(last).strip().splitlines()[0] if last and str(last).strip() else type(last).__name__
    raise ModelError(f"{what} {location} cannot be loaded: {first}",
                     hint="pass a local directory saved with save_pretrained, or a Hugging Face id that is "
                          "in the local cache")


def text_rules_for(config: Any, tokenizer: Any) -> TextRules:
    """The text rules of a standalone text tower (a dual encoder's text half gets its family's rules)."""
    from mmtools.models.hf_dual import default_text_rules

    model_type = config.model_type
    for family in ("siglip2", "siglip", "clip"):
        if model_type == f"{family}_text_model":
            return default_text_rules(SimpleNamespace(model_type=family, text_config=config), tokenizer)
    return default_text_rules(config, tokenizer)


def load_towers(modality: str, *, base: str | None = None, text_model: str | None = None,
                image_model: str | None = None) -> Towers:
    """The towers a ``modality`` needs, from ``base`` (a dual encoder) or ``text_model`` / ``image_model``."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    towers = Towers()
    needs_text, needs_image = modality in ("text", "both"), modality in ("image", "both")
    if base is not None:
        towers = split_dual_encoder(base)
    if text_model is not None and needs_text:
        towers.text_model = _pretrained(AutoModel, text_model, "text model", use_safetensors=True)
        towers.tokenizer = _pretrained(AutoTokenizer, text_model, "tokenizer of")
        towers.text_rules = text_rules_for(towers.text_model.config, towers.tokenizer)
    if image_model is not None and needs_image:
        towers.image_model = _pretrained(AutoModel, image_model, "image model", use_safetensors=True)
        towers.image_processor = _pretrained(AutoImageProcessor, image_model, "image processor of")
    if needs_text and towers.text_model is None:
        raise ModelError("no text tower given", hint="pass --text-model DIR_OR_ID or --base DUAL_ENCODER")
    if needs_image and towers.image_model is None:
        raise ModelError("no image tower given", hint="pass --image-model DIR_OR_ID or --base DUAL_ENCODER")
    if not needs_text:
        towers.text_model = towers.tokenizer = towers.text_rules = None
    if not needs_image:
        towers.image_model = towers.image_processor = None
    return towers


def split_dual_encoder(location: str) -> Towers:
    """Both towers of a CLIP / SigLIP / VisionTextDualEncoder as standalone models (projections dropped)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer, PreTrainedModel

    from mmtools.models.hf_dual import default_text_rules

    config = _pretrained(AutoConfig, location, "model")
    if config.model_type not in DUAL_TYPES:
        raise ModelError(f"--base {location} is a {config.model_type!r} model, not a dual encoder "
                         f"({', '.join(DUAL_TYPES)})", hint="use --text-model / --image-model for single towers")
    dual = _pretrained(AutoModel, location, "model", use_safetensors=True)
    tokenizer = _pretrained(AutoTokenizer, location, "tokenizer of")
    rules = default_text_rules(dual.config, tokenizer)
    ref = resolve_model(location)
    rules = rules.with_overrides(ref.manifest.get("text", {}))

    def standalone(module: Any, sub_config: Any) -> Any:
        if isinstance(module, PreTrainedModel):
            return module
        tower = AutoModel.from_config(sub_config)
        for child in tower.children():
            if type(child) is type(module):
                child.load_state_dict(module.state_dict())
                return tower
        raise ModelError(f"cannot take the towers out of {location} ({config.model_type})")

    return Towers(text_model=standalone(dual.text_model, dual.config.text_config), tokenizer=tokenizer,
                  text_rules=rules, image_model=standalone(dual.vision_model, dual.config.vision_config),
                  image_processor=_pretrained(AutoImageProcessor, location, "image processor of"))


def spec_for(towers: Towers, spec: TaggerSpec) -> TaggerSpec:
    """Fill in what the towers decide: their widths, the text pooling, whether the text takes a mask."""
    if towers.text_model is not None:
        config = towers.text_model.config
        spec.text_dim = int(config.hidden_size)
        if config.model_type in POOLER_TEXT_TYPES:
            spec.text_pooling = "pooler"
        spec.text_uses_mask = config.model_type not in NO_MASK_TEXT_TYPES
    if towers.image_model is not None:
        config = towers.image_model.config
        width = getattr(config, "hidden_size", None)
        spec.image_dim = int(width if isinstance(width, int) else config.hidden_sizes[-1])
    return spec


# ------------------------------------------------------------------------------------------ tagger dirs


def save_tagger(directory: Path, model: Any, towers: Towers, thresholds: dict[str, float],
                info: dict[str, Any] | None = None,
                mode_thresholds: dict[str, dict[str, float]] | None = None) -> None:
    """Write a complete tagger into ``directory`` (which should be new and empty: callers swap it in).
    ``thresholds`` are for records read with both modalities (or the one the tagger reads);
    ``mode_thresholds`` for a two-tower tagger reading one of them ("text-only", "image-only")."""
    from safetensors.torch import save_model

    from mmtools import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec: TaggerSpec = model.spec
    if towers.text_model is not None:
        towers.text_model.config.save_pretrained(directory / "text")
        towers.tokenizer.save_pretrained(directory / "text")
    if towers.image_model is not None:
        towers.image_model.config.save_pretrained(directory / "image")
        towers.image_processor.save_pretrained(directory / "image")
    save_model(model, str(directory / WEIGHTS))
    manifest = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, "family": FAMILY,
                "mmtools_version": __version__, "tagger": spec.to_dict(),
                "thresholds": {label: round(float(thresholds.get(label, 0.5)), 4) for label in spec.labels},
                **({"mode_thresholds": {mode: {label: round(float(values.get(label, 0.5)), 4)
                                               for label in spec.labels}
                                        for mode, values in mode_thresholds.items()}} if mode_thresholds else {}),
                "text": asdict(towers.text_rules) if towers.text_rules is not None else None,
                # Some tower classes (SigLIP's text model) are not in AutoModel's table: name them.
                "tower_classes": {name: type(tower).__name__ for name, tower in
                                  (("text", towers.text_model), ("image", towers.image_model)) if tower is not None},
                **({"training": info} if info else {})}
    (directory / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n",
                                      encoding="utf-8")


def load_tagger_parts(directory: Path, manifest: dict[str, Any]) -> tuple[Any, Towers, dict[str, float]]:
    """The network (weights loaded), its towers' tokenizer / processor, and the thresholds."""
    from safetensors.torch import load_model
    from transformers import AutoConfig

    from mmtools.models.hf_dual import quiet_transformers
    from mmtools.tag.model import TaggerModel

    quiet_transformers()
    directory = Path(directory)
    try:
        spec = TaggerSpec.from_dict(manifest["tagger"])
        towers = Towers()
        classes = manifest.get("tower_classes", {})
        if spec.uses_text:
            from transformers import AutoTokenizer

            towers.text_model = _tower(classes.get("text"), AutoConfig.from_pretrained(directory / "text",
                                                                                       local_files_only=True))
            towers.tokenizer = AutoTokenizer.from_pretrained(directory / "text", local_files_only=True)
            rules = manifest.get("text") or {}
            towers.text_rules = TextRules(**{k: v for k, v in rules.items() if k in TextRules.__dataclass_fields__})
        if spec.uses_image:  # the image classes cost seconds to import: only for taggers that look at images
            from transformers import AutoImageProcessor

            towers.image_model = _tower(classes.get("image"), AutoConfig.from_pretrained(directory / "image",
                                                                                         local_files_only=True))
            towers.image_processor = AutoImageProcessor.from_pretrained(directory / "image",
                                                                        local_files_only=True)
        with _weights_left_empty():  # every weight is read from the file next: drawing random ones is wasted
            model = TaggerModel(spec, towers.text_model, towers.image_model)
        missing, unexpected = load_model(model, str(directory / WEIGHTS), strict=False)
        if missing or unexpected:
            raise ValueError(f"weights do not fit the network ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected tensors)")
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"tagger {directory} cannot be loaded: {str(exc).splitlines()[0] if str(exc) else exc}",
                         hint="it may be incomplete or from another mmtools; train it again") from None
    thresholds = {label: float(manifest.get("thresholds", {}).get(label, 0.5)) for label in spec.labels}
    return model, towers, thresholds


def _tower(class_name: str | None, config: Any) -> Any:
    """An empty tower of the saved class (only transformers' own classes: never code from the directory), its
    weights left uninitialised: the tagger's file holds them all (a missing one is refused when loading)."""
    import transformers
    from transformers import AutoModel, PreTrainedModel

    cls = getattr(transformers, class_name, None) if class_name else None
    with _weights_left_empty():
        if isinstance(cls, type) and issubclass(cls, PreTrainedModel):
            return cls(config)
        return AutoModel.from_config(config)


def _weights_left_empty() -> Any:
    """A context in which new layers skip drawing random weights (seconds for a real-size tower)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4
        from transformers.modeling_utils import no_init_weights
    return no_init_weights()
