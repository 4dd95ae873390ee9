"""Towers already exported to ONNX: a model that runs on ONNX Runtime with no PyTorch anywhere.

Two layouts are read, from a local directory or (the first) from a Hugging Face repository:

* Transformers.js / onnx-community: ``config.json``, ``preprocessor_config.json``, ``tokenizer.json`` (with
  ``tokenizer_config.json``, ``special_tokens_map.json``), ``onnx/text_model.onnx`` and
  ``onnx/vision_model.onnx`` (the fp32 towers; ``_quantized``, ``_fp16``... variants are not used). Their
  outputs are ``text_embeds`` / ``image_embeds`` or ``pooler_output``, not yet unit vectors.
* the directory `mmtools models export` writes (mmtools.models.onnx_export): ``meta.json``, ``text.onnx``,
  ``image.onnx``, ``tokenizer.json``...

Fingerprints, honestly: an mmtools export keeps the fingerprint of the PyTorch model it was exported from,
because the export checked that its towers give that model's vectors (cosine >= FP32_MIN_COSINE). A
Transformers.js repository holds no weights mmtools can compare with the PyTorch model's, so it has a
fingerprint of its own (its graphs, config, tokenizer and preprocessing, and the text rules): vectors from it
are never mixed with the PyTorch model's, even where it was converted from the same weights. Nor does it hold
the model's logit scale and bias, which zero-shot tag probabilities need.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mmtools.errors import ModelError
from mmtools.models.onnx_export import EXPORT_FORMAT, META, Export

ONNX_FAMILY = "onnx-dual-encoder"
TOWER_FILES = {"text": "onnx/text_model.onnx", "image": "onnx/vision_model.onnx"}
# What a Transformers.js repository's towers give, best first (the projected embedding, else the pooled output).
OUTPUTS = {"text": ("text_embeds", "pooler_output"), "image": ("image_embeds", "pooler_output")}
SIDE_FILES = ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json")
# What is downloaded from a hub repository: the fp32 towers (and their external data, if any) and the side files.
HUB_PATTERNS = [*SIDE_FILES, "README.md", "onnx/text_model.onnx", "onnx/text_model.onnx_data*",
                "onnx/vision_model.onnx", "onnx/vision_model.onnx_data*"]


def onnx_layout(directory: Path) -> str | None:
    """"transformers.js", "mmtools-export", or None when ``directory`` holds neither layout."""
    if all((directory / name).is_file() for name in TOWER_FILES.values()):
        return "transformers.js"
    if (directory / META).is_file() and (directory / "text.onnx").is_file() and (directory / "image.onnx").is_file():
        return "mmtools-export"
    return None


def is_onnx_repo(hub_id: str) -> bool:
    """Whether a hub id names a repository of ONNX towers (the registry's twins, onnx-community, Xenova, *-ONNX)."""
    from mmtools.models.registry import ONNX_TWINS

    org = hub_id.split("/", 1)[0].lower()
    return hub_id in ONNX_TWINS.values() or org in ("onnx-community", "xenova") or hub_id.lower().endswith("-onnx")


class PrebuiltExport(Export):
    """A Transformers.js directory read as an export: the same encoder runs it (mmtools.models.onnx_encoder),
    taking the named output and making unit vectors of it. Only the fp32 towers: no int8 query path."""

    def __init__(self, directory: Path, meta: dict[str, Any]):
        self.directory = directory
        self.meta = meta

    def path(self, tower: str, int8: bool = False) -> Path:
        return self.directory / (TOWER_FILES[tower].replace(".onnx", "_quantized.onnx") if int8
                                 else TOWER_FILES[tower])

    def output_name(self, tower: str, session: Any) -> str | None:
        names = [output.name for output in session.get_outputs()]
        for wanted in OUTPUTS[tower]:
            if wanted in names:
                return wanted
        raise ModelError(f"the ONNX {tower} tower of {self.directory} has none of the outputs "
                         f"{' or '.join(OUTPUTS[tower])} (it has {', '.join(names)})",
                         hint="export the model with Transformers.js' or optimum's scripts, or with "
                              "`mmtools models export`")

    def agreement(self) -> dict[str, Any]:
        return {"indexes": {}}


def open_prebuilt(directory: Path) -> Export:
    """The ONNX towers in ``directory`` (either layout), ready for OnnxEncoder; ModelError when unusable."""
    layout = onnx_layout(directory)
    if layout == "mmtools-export":
        export = Export(directory)
        if export.refused or export.meta.get("format") != EXPORT_FORMAT:
            raise ModelError(f"{directory} is an ONNX export that "
                             + ("was refused: " + export.refused if export.refused else "another mmtools made"),
                             hint="export the model again with `mmtools models export` (needs PyTorch)")
        return export
    if layout is None:
        raise ModelError(f"{directory} holds no ONNX towers ({' and '.join(TOWER_FILES.values())}, or an "
                         "export by `mmtools models export`)")
    return PrebuiltExport(directory, _describe(directory))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} cannot be read: {exc}") from None
    return value if isinstance(value, dict) else {}


def _namespace(value: Any) -> Any:
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _namespace(v) for k, v in value.items() if k.isidentifier()})
    return value


def _describe(directory: Path) -> dict[str, Any]:
    """What OnnxEncoder needs, read from the repository's configs (what an mmtools export keeps in meta.json)."""
    import dataclasses

    from mmtools.models.hf_dual import default_text_rules
    from mmtools.models.image_preprocess import FastImagePreprocessor
    from mmtools.models.manage import embedding_dim

    config = _read_json(directory / "config.json")
    if not config:
        raise ModelError(f"ONNX model {directory} has no config.json")
    if not (directory / "tokenizer.json").is_file():
        raise ModelError(f"ONNX model {directory} has no tokenizer.json (a fast tokenizer is needed to run "
                         "without PyTorch)")
    tokenizer_config = _read_json(directory / "tokenizer_config.json")
    rules = default_text_rules(_namespace(config), SimpleNamespace(name_or_path=str(directory)))
    manifest = _read_json(directory / "mmtools.json")
    rules = rules.with_overrides(manifest.get("text", {}) if manifest.get("format") == "mmtools-model" else {})
    dim = embedding_dim(config)
    if dim is None:
        raise ModelError(f"ONNX model {directory}: its config.json does not say how long its vectors are")
    processor = _read_json(directory / "preprocessor_config.json")
    fast = FastImagePreprocessor.from_config(processor) if processor else None
    image_size = (fast.height or fast.shortest_edge) if fast is not None else \
        (config.get("vision_config") or {}).get("image_size")
    text_rules = dataclasses.asdict(rules)
    return {"format": EXPORT_FORMAT, "layout": "transformers.js", "name": str(directory), "family": ONNX_FAMILY,
            "fingerprint": _fingerprint(directory, text_rules), "dim": int(dim), "text_rules": text_rules,
            "image_size": image_size, "image_dir": ".", "tokenizer_dir": ".",
            "fast_images": fast.to_dict() if fast is not None else None, "tokenizer": "tokenizers",
            "pad_token": _pad_token(directory, tokenizer_config), "pad_id": _config_pad_id(config),
            "padding_side": tokenizer_config.get("padding_side") or "right",
            "text_inputs": None,  # read from the text tower's session
            "logit_scale": None, "logit_bias": None, "logit_unknown": True}


def _pad_token(directory: Path, tokenizer_config: dict[str, Any]) -> str | None:
    """The token the tokenizer pads with (tokenizer_config.json, else special_tokens_map.json): its id is looked
    up when the tokenizer is loaded for the first text (mmtools.models.onnx_encoder.FastTokens)."""
    pad = tokenizer_config.get("pad_token") or _read_json(directory / "special_tokens_map.json").get("pad_token")
    if isinstance(pad, dict):
        pad = pad.get("content")
    return pad if isinstance(pad, str) else None


def _config_pad_id(config: dict[str, Any]) -> int:
    """The text config's pad_token_id (else 0): the padding id where the tokenizer names no pad token."""
    value = (config.get("text_config") or {}).get("pad_token_id", config.get("pad_token_id"))
    return int(value) if isinstance(value, int) else 0


def _fingerprint(directory: Path, text_rules: dict[str, Any]) -> str:
    """``fp-`` and 16 hex digits over what decides the vectors: the fp32 graphs (and external data), the side
    files and the text rules. File hashes are cached (mmtools.filehash)."""
    from mmtools.filehash import file_sha256
    from mmtools.models.fingerprint import PREFIX

    files = [directory / name for name in SIDE_FILES if (directory / name).is_file()]
    files += sorted(p for p in (directory / "onnx").iterdir()
                    if p.name.startswith(("text_model.onnx", "vision_model.onnx")))
    identity = {"family": ONNX_FAMILY, "text_rules": text_rules,
                "files": {f.relative_to(directory).as_posix(): file_sha256(f) for f in files}}
    return PREFIX + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ the hub


def prebuilt_directory(location: str, *, download: bool = True) -> Path:
    """The local directory of ONNX towers ``location`` names: the directory itself, or a hub repository's
    snapshot in the Hugging Face cache, downloaded once (the fp32 towers and side files only)."""
    path = Path(location)
    if path.is_dir():
        return path
    cached = _cached(location)
    if cached is not None or not download:
        if cached is None:
            raise ModelError(f"ONNX model {location} is not on this machine")
        return cached
    from mmtools.models.hf_dual import offline_hint
    from mmtools.models.hub import hub_unavailable_reason, quiet_hub

    unavailable = hub_unavailable_reason()
    if unavailable:
        raise ModelError(f"ONNX model {location} is not in the local Hugging Face cache and {unavailable}",
                         hint=offline_hint(location))
    quiet_hub()
    from mmtools.notices import tell

    tell(f"downloading the ONNX towers of {location} once, into the Hugging Face cache", 0, 1)
    try:
        from huggingface_hub import snapshot_download

        from mmtools.models.hub import hub_cache_dir

        snapshot = Path(snapshot_download(location, allow_patterns=HUB_PATTERNS, cache_dir=hub_cache_dir()))
    except Exception as exc:  # hub and network errors alike
        raise ModelError(f"ONNX model {location} cannot be downloaded from the Hugging Face hub: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                         hint=f"check the name, or download it where there is internet: mmtools models pull "
                              f"{location}") from None
    if onnx_layout(snapshot) is None:
        raise ModelError(f"hub repository {location} holds no {' and '.join(TOWER_FILES.values())}",
                         hint="name a repository in the Transformers.js layout (e.g. onnx-community/...)")
    tell(f"downloaded {location} into {snapshot}", 1, 1)
    return snapshot


def _cached(hub_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = [try_to_load_from_cache(hub_id, name) for name in ("config.json", *TOWER_FILES.values())]
    except Exception:
        return None
    if not all(isinstance(f, str) for f in found):
        return None
    return Path(os.path.dirname(str(found[0])))
