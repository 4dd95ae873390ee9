"""Naming models: short aliases, Hugging Face ids and local directories, and how each is loaded.

A model is named once (``--model`` or ``MMTOOLS_MODEL``) in any of three forms:

* a local directory saved with ``save_pretrained`` (or written by ``mmtools train``);
* a short alias from ALIASES;
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
        hub_id = ALIASES[given]
        return ModelRef(name=hub_id, location=hub_id, is_local=False)
    if _is_hub_id(given):
        return ModelRef(name=given, location=given, is_local=False)
    raise ModelError(
        f"unknown model {given!r}: not a directory, not an alias, and not a Hugging Face id (org/name)",
        hint="aliases: " + ", ".join(sorted(ALIASES)),
    )


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
