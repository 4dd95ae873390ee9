"""Naming models: short aliases, Hugging Face ids and local directories, and how each is loaded.

A model is named once (``--model`` or ``MMTOOLS_MODEL``) in any of three forms:

* a local directory saved with ``save_pretrained`` (or written by ``mmtools train``);
* a short alias from ALIASES, or a name given to a local directory with `mmtools models import`;
* a Hugging Face id (``org/name``), downloaded once into the usual Hugging Face cache and used offline after.

A directory may carry an ``mmtools.json`` manifest (MANIFEST) that names its family and overrides its text
rules; a manifest written by a newer mmtools is refused with a clear message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmtools.errors import ModelError

DEFAULT_MODEL = "google/siglip2-base-patch16-224"

ALIASES: dict[str, str] = {
    "siglip2-base": "google/siglip2-base-patch16-224",
    "siglip2-base-256": "google/siglip2-base-patch16-256",
    "siglip2-large": "google/siglip2-large-patch16-256",
    "siglip2-so400m": "google/siglip2-so400m-patch16-384",
    "siglip-base": "google/siglip-base-patch16-224",
    "clip-b32": "openai/clip-vit-base-patch32",
    "clip-b16": "openai/clip-vit-base-patch16",
    "clip-l14": "openai/clip-vit-large-patch14",
}

# Licences of the aliased models, as their model cards give them (shown by `mmtools models info`).
KNOWN_LICENCES: dict[str, str] = {
    "google/siglip2-base-patch16-224": "Apache-2.0",
    "google/siglip2-base-patch16-256": "Apache-2.0",
    "google/siglip2-large-patch16-256": "Apache-2.0",
    "google/siglip2-so400m-patch16-384": "Apache-2.0",
    "google/siglip-base-patch16-224": "Apache-2.0",
    # conversions to ONNX keep the licence of what they converted
    "onnx-community/siglip2-base-patch16-224-ONNX": "Apache-2.0",
    "Xenova/siglip-base-patch16-224": "Apache-2.0",
    "Xenova/clip-vit-base-patch32": "MIT",
    "Xenova/clip-vit-base-patch16": "MIT",
    # OpenAI's CLIP code and weights are released under MIT (github.com/openai/CLIP).
    "openai/clip-vit-base-patch32": "MIT",
    "openai/clip-vit-base-patch16": "MIT",
    "openai/clip-vit-large-patch14": "MIT",
}

# The same models' towers already exported to ONNX (Transformers.js layout), for installs without PyTorch: there,
# naming the model (or its alias, or leaving the default) loads these instead (mmtools.models.onnx_prebuilt). They
# are their own models to indexes (a fingerprint of their own): nothing here proves they hold the same weights.
ONNX_TWINS: dict[str, str] = {
    "google/siglip2-base-patch16-224": "onnx-community/siglip2-base-patch16-224-ONNX",
    "google/siglip-base-patch16-224": "Xenova/siglip-base-patch16-224",
    "openai/clip-vit-base-patch32": "Xenova/clip-vit-base-patch32",
    "openai/clip-vit-base-patch16": "Xenova/clip-vit-base-patch16",
}

MANIFEST = "mmtools.json"
MANIFEST_FORMAT = "mmtools-model"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ModelRef:
    """A resolved model name. ``name`` is what indexes record; ``location`` is what the loader opens."""

    name: str
    location: str
    is_local: bool
    manifest: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def family(self) -> str:
        return self.manifest.get("family", "hf-dual-encoder")


def resolve_model(name: str | None) -> ModelRef:
    """Turn what the user typed into a ModelRef; raises ModelError with a hint when it names nothing."""
    given = (name or os.environ.get("MMTOOLS_MODEL") or DEFAULT_MODEL).strip()
    if not given:
        given = DEFAULT_MODEL
    path = Path(given).expanduser()
    if path.is_dir():
        return _local_model(path)
    if path.exists():
        raise ModelError(f"model {given} is a file, not a model directory",
                         hint="pass a directory saved with save_pretrained, an alias, or a Hugging Face id")
    if given.startswith((".", "/", "~")):
        raise ModelError(f"model directory {given} does not exist",
                         hint="pass a directory saved with save_pretrained, an alias, or a Hugging Face id")
    if given in ALIASES:
        return _hub_model(ALIASES[given])
    imported = _imported_directory(given)
    if imported is not None:
        return _local_model(imported)
    if _is_hub_id(given):
        return _hub_model(given)
    raise ModelError(
        f"unknown model {given!r}: not a directory, not an alias, and not a Hugging Face id (org/name)",
        hint="aliases: " + ", ".join(sorted(ALIASES)) + "; `mmtools models list` shows imported names",
    )


def _hub_model(hub_id: str) -> ModelRef:
    """A hub model; without PyTorch, its ONNX twin where the registry knows one. ONNX repositories run on ONNX
    Runtime (mmtools.models.onnx_prebuilt)."""
    from mmtools.models.onnx_prebuilt import ONNX_FAMILY, is_onnx_repo
    from mmtools.models.runtime import torch_installed

    if hub_id in ONNX_TWINS and not torch_installed():
        hub_id = ONNX_TWINS[hub_id]
    manifest = {"family": ONNX_FAMILY} if is_onnx_repo(hub_id) else {}
    return ModelRef(name=hub_id, location=hub_id, is_local=False, manifest=manifest)


def _imported_directory(name: str) -> Path | None:
    """The directory imported under ``name`` (`mmtools models import`), checked to still be there."""
    if "/" in name:
        return None
    from mmtools.models.imported import lookup_imported

    location = lookup_imported(name)
    if location is None:
        return None
    path = Path(location)
    if not path.is_dir():
        raise ModelError(f"model {name} was imported from {location}, which no longer exists",
                         hint=f"import it again from its new place (mmtools models import DIR --name {name} "
                              f"--replace), or forget it: mmtools models remove {name}")
    return path


def _local_model(path: Path) -> ModelRef:
    """A model directory, or a training run's directory (``mmtools train``), whose manifest points at the best
    model it has saved so far."""
    name = str(path.resolve())
    manifest = read_manifest(path)
    if manifest.get("kind") == "training-run":
        model_dir = path / str(manifest.get("model", "model"))
        if not model_dir.is_dir():
            raise ModelError(f"training run {path} has no model yet (its first epoch has not finished)",
                             hint="wait for the first epoch, or resume the run with --resume")
        return ModelRef(name=name, location=str(model_dir.resolve()), is_local=True,
                        manifest=read_manifest(model_dir))
    if not manifest.get("family"):
        from mmtools.models.onnx_prebuilt import ONNX_FAMILY, onnx_layout
        from mmtools.models.runtime import torch_installed

        # Towers already in ONNX (Transformers.js, `mmtools models export`): run as such, unless the directory
        # also holds the PyTorch weights and PyTorch is here (then they are the model, exported on first use).
        if onnx_layout(path) is not None and not (torch_installed() and any(path.glob("*.safetensors"))):
            manifest = {**manifest, "family": ONNX_FAMILY}
    return ModelRef(name=name, location=name, is_local=True, manifest=manifest)


def read_manifest(directory: Path) -> dict[str, Any]:
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        return {}
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model manifest {manifest_path} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ModelError(f"{manifest_path} is not an mmtools model manifest")
    version = manifest.get("format_version", 1)
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise ModelError(
            f"model {directory} was written by a newer mmtools (manifest format {version}; "
            f"this mmtools reads up to {MANIFEST_VERSION})",
            hint="upgrade mmtools",
        )
    return manifest


def _is_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts)
