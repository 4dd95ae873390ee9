"""A model's identity: a short hash of what decides its vectors (weights, config, text rules, family).

Indexes and embedding records keep it beside the readable model name, so a model retrained into the same
directory is told apart from its earlier self, and a model directory that was moved or copied is still
recognised. File hashes are cached (mmtools.filehash), so a fingerprint costs a stat per file after the first
time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmtools.errors import ModelError
from mmtools.filehash import file_sha256

if TYPE_CHECKING:
    from mmtools.text.prepare import TextRules

PREFIX = "fp-"
# What decides a model's vectors. Tokenizer files count too: a changed vocabulary changes every text vector.
WEIGHT_SUFFIXES = (".safetensors",)
DECIDING_FILES = ("config.json", "tokenizer.json", "vocab.txt", "bpe.codes", "vocab.json", "merges.txt",
                  "spiece.model", "sentencepiece.bpe.model", "preprocessor_config.json", "mmtools.json")


def model_files(directory: Path) -> list[Path]:
    """The files below ``directory`` whose contents decide the model's vectors, in a stable order.

    A linked folder is followed only when it resolves inside ``directory`` and was not walked already, so a
    loop (``latest -> .``) or a link to somewhere else (``data -> /``) is never walked into; linked files
    (the Hugging Face cache links each file to its blob) count as their contents."""
    found = []
    top = os.path.realpath(directory)
    walked = {top}

    def keep(current: str, name: str) -> bool:
        if name.startswith(".") or name == "checkpoint":
            return False
        path = os.path.join(current, name)
        if not os.path.islink(path):
            return True
        real = os.path.realpath(path)
        inside = os.path.commonpath([real, top]) == top
        if not inside or real in walked:
            return False
        walked.add(real)
        return True

    for current, dirs, files in os.walk(directory, followlinks=True):
        walked.add(os.path.realpath(current))
        dirs[:] = sorted(d for d in dirs if keep(current, d))
        for name in sorted(files):
            if name.endswith(WEIGHT_SUFFIXES) or name in DECIDING_FILES:
                found.append(Path(current) / name)
    return found


def model_directory(location: str | os.PathLike[str]) -> Path:
    """The local directory holding a model: the path itself, or a hub id's snapshot in the Hugging Face cache."""
    path = Path(location)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(str(location), "config.json")
    except Exception:
        config = None
    if not isinstance(config, str):
        raise ModelError(f"model {location} is not on this machine, so it has no fingerprint yet",
                         hint="download it first (any mmtools command that loads it does)")
    return Path(config).parent


def model_fingerprint(location: str | os.PathLike[str], text_rules: "TextRules | dict[str, Any] | None" = None,
                      family: str = "hf-dual-encoder") -> str:
    """``fp-`` and 16 hex digits; equal for equal model contents wherever they lie, different otherwise."""
    directory = model_directory(location)
    files = model_files(directory)
    if not any(f.name.endswith(WEIGHT_SUFFIXES) for f in files):
        raise ModelError(f"model directory {directory} holds no safetensors weights",
                         hint="mmtools loads weights from safetensors files only")
    rules = dataclasses.asdict(text_rules) if dataclasses.is_dataclass(text_rules) else dict(text_rules or {})
    identity = {
        "family": family,
        "text_rules": rules,
        "files": {f.relative_to(directory).as_posix(): file_sha256(f) for f in files if f.name != "mmtools.json"},
        # the manifest counts without volatile fields (it may record when and where it was written)
        "manifest": _stable_manifest(directory),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return PREFIX + digest[:16]


def _stable_manifest(directory: Path) -> dict[str, Any]:
    path = directory / "mmtools.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict):
        return {}
    return {k: v for k, v in manifest.items() if k not in ("created_at", "mmtools_version", "fingerprint")}
