"""Model management behind `mmtools models`: what is on this machine (Hugging Face cache and imported
names), what a model is (family, dimension, text rules, fingerprint, licence), downloading ahead for machines
that will be offline, importing local directories under short names, and removing either.

Listing reads config files only (no torch, no transformers), so it is quick even with many cached models.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from mmtools.errors import ModelError, UsageError
from mmtools.models.registry import ALIASES, KNOWN_LICENCES, ONNX_TWINS, ModelRef, resolve_model

# What `models pull` downloads: weights as safetensors, configs, tokenizer files, and the model card (for its
# licence). Never pickled weights (*.bin, *.pt), ONNX or other exports, except from a repository of ONNX towers
# (mmtools.models.onnx_prebuilt.HUB_PATTERNS: its fp32 towers).
PULL_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.model", "*.codes", "README.md"]


# ------------------------------------------------------------------------------------------------ facts


def read_config(directory: Path) -> dict[str, Any]:
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def embedding_dim(config: dict[str, Any]) -> int | None:
    """The length of the vectors the model writes, from its config (no weights loaded)."""
    model_type = config.get("model_type")
    if model_type in ("clip", "vision-text-dual-encoder"):
        return _int(config.get("projection_dim"))
    if model_type in ("siglip", "siglip2"):
        text = config.get("text_config") or {}
        return _int(text.get("projection_size")) or _int(text.get("hidden_size"))
    return _int(config.get("projection_dim"))


def size_on_disk(path: Path) -> int:
    """Bytes of every file below ``path``, following the cache's symlinks and counting each real file once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for current, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            try:
                stat = os.stat(os.path.join(current, name))
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


def licence_of(name: str, directory: Path | None) -> str | None:
    """A known alias's licence, else the ``license:`` of the model card's front matter, if there is one."""
    if name in KNOWN_LICENCES:
        return KNOWN_LICENCES[name]
    if directory is None:
        return None
    try:
        card = (directory / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    front = re.match(r"---\s*\n(.*?)\n---", card, re.S)
    found = re.search(r"^licen[sc]e:\s*(\S.*)$", front.group(1), re.M) if front else None
    return found.group(1).strip().strip("'\"") if found else None


def aliases_of(hub_id: str) -> list[str]:
    """The aliases naming ``hub_id``, or the model whose ONNX twin it is (what they load without PyTorch)."""
    return sorted(alias for alias, target in ALIASES.items() if hub_id in (target, ONNX_TWINS.get(target)))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ------------------------------------------------------------------------------------------------- list


def cached_hub_models() -> list[dict[str, Any]]:
    """Model repositories in the Hugging Face cache, each with its newest snapshot directory."""
    from mmtools.models.hub import hub_cache_dir

    cache = hub_cache_dir()
    if not cache.is_dir():
        return []
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(cache)
    except Exception as exc:  # a cache folder that is not one (CacheNotFound, CorruptedCacheException)
        raise ModelError(f"the Hugging Face cache {cache} cannot be read: {exc}") from None
    found = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        newest = max(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified))
        found.append({"name": repo.repo_id, "snapshot": Path(newest.snapshot_path), "size_bytes": repo.size_on_disk,
                      "repo_path": Path(repo.repo_path), "revisions": [r.commit_hash for r in repo.revisions]})
    return found


def list_models(include_aliases: bool = False) -> list[dict[str, Any]]:
    """One record per imported name and per cached hub model (and, with ``include_aliases``, per alias that is
    not cached yet): name, source, family, dim, size_bytes, location."""
    from mmtools.models.imported import imported_models

    records = []
    for name, entry in sorted(imported_models().items()):
        directory = Path(entry["path"])
        exists = directory.is_dir()
        location = _model_location(directory) if exists else directory
        config = read_config(location)
        records.append({"name": name, "source": "imported", "family": config.get("model_type"),
                        "dim": embedding_dim(config), "size_bytes": size_on_disk(directory) if exists else None,
                        "location": str(directory), **({} if exists else {"missing": True})})
    cached = set()
    for repo in cached_hub_models():
        cached.add(repo["name"])
        config = read_config(repo["snapshot"])
        records.append({"name": repo["name"], "source": "hub-cache", "family": config.get("model_type"),
                        "dim": embedding_dim(config), "size_bytes": repo["size_bytes"],
                        "location": str(repo["snapshot"]), "aliases": aliases_of(repo["name"])})
    if include_aliases:
        from mmtools.models.runtime import torch_installed

        for alias, hub_id in sorted(ALIASES.items()):
            hub_id = hub_id if torch_installed() else ONNX_TWINS.get(hub_id, hub_id)  # what the alias loads here
            if hub_id not in cached:
                records.append({"name": hub_id, "source": "not downloaded", "family": None, "dim": None,
                                "size_bytes": None, "location": None, "aliases": [alias]})
    return records


def _model_location(directory: Path) -> Path:
    """The directory holding the weights: a training run's manifest points at its best model."""
    try:
        return Path(resolve_model(str(directory)).location)
    except ModelError:
        return directory


# ------------------------------------------------------------------------------------------------- info


def model_info(name: str | None) -> dict[str, Any]:
    """What a model is, without loading its weights: family, dimension, text rules, fingerprint, licence."""
    ref = resolve_model(name)
    directory = _local_directory(ref)
    info: dict[str, Any] = {"name": name or ref.name, "model": ref.name, "source": _source(name, ref),
                            "location": ref.location if ref.is_local else None}
    if aliases_of(ref.name):
        info["aliases"] = aliases_of(ref.name)
    if directory is None:
        info.update({"downloaded": False, "licence": licence_of(ref.name, None)})
        return info
    if ref.family == "onnx-dual-encoder":
        return {**info, **_prebuilt_info(ref, directory)}
    config = read_config(directory)
    rules = _text_rules(ref, directory)
    info.update({
        "downloaded": True,
        "directory": str(directory),
        "family": config.get("model_type"),
        "loader": ref.family,
        "dim": embedding_dim(config),
        "image_size": _int((config.get("vision_config") or {}).get("image_size")),
        "text_rules": dataclasses.asdict(rules) if rules is not None else None,
        "fingerprint": _fingerprint(directory, rules, ref.family),
        "licence": licence_of(ref.name, directory),
        "size_bytes": size_on_disk(directory),
        "onnx": onnx_status(ref),
    })
    return info


def _prebuilt_info(ref: ModelRef, directory: Path) -> dict[str, Any]:
    """What `models info` says of towers already in ONNX (mmtools.models.onnx_prebuilt), from their files."""
    from mmtools.models.onnx_prebuilt import onnx_layout, open_prebuilt

    export = open_prebuilt(directory)
    meta = export.meta
    return {"downloaded": True, "directory": str(directory), "family": read_config(directory).get("model_type"),
            "loader": ref.family, "layout": onnx_layout(directory), "dim": meta.get("dim"),
            "image_size": meta.get("image_size"), "text_rules": meta.get("text_rules"),
            "fingerprint": export.fingerprint, "licence": licence_of(ref.name, directory),
            "size_bytes": size_on_disk(directory),
            "towers": ", ".join(t for t in ("text", "image") if export.path(t).is_file())}


def _source(given: str | None, ref: ModelRef) -> str:
    from mmtools.models.imported import lookup_imported

    if given and lookup_imported(given) is not None:
        return "imported"
    if given in ALIASES:
        return "alias"
    return "directory" if ref.is_local else "hub"


def _local_directory(ref: ModelRef) -> Path | None:
    if ref.is_local:
        return Path(ref.location)
    from mmtools.models.fingerprint import model_directory

    try:
        return model_directory(ref.location)
    except ModelError:
        return None


def _text_rules(ref: ModelRef, directory: Path):
    """The model's text rules exactly as the encoder derives them (its config and tokenizer; no weights)."""
    from mmtools.models.hf_dual import default_text_rules, quiet_transformers

    quiet_transformers()
    try:
        from transformers import AutoConfig, AutoTokenizer

        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as exc:  # transformers raises many kinds for unusable directories
        raise ModelError(f"model {ref.name} cannot be read: {str(exc).strip().splitlines()[0] if str(exc) else exc}")
    return default_text_rules(config, tokenizer).with_overrides(ref.manifest.get("text", {}))


def _fingerprint(directory: Path, rules, family: str) -> str | None:
    from mmtools.models.fingerprint import model_fingerprint

    try:
        return model_fingerprint(directory, rules, family)
    except ModelError:
        return None


# ----------------------------------------------------------------------------------------------- import


def import_model(directory: str | os.PathLike[str], name: str, *, replace: bool = False) -> dict[str, Any]:
    """Register ``directory`` under ``name`` after checking that it holds a model mmtools can load."""
    from mmtools.models.hf_dual import SUPPORTED_TYPES
    from mmtools.models.imported import add_imported, check_name

    check_name(name)
    if name in ALIASES:
        raise UsageError(f"{name!r} is already an alias of {ALIASES[name]}", hint="choose another --name")
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise UsageError(f"model directory {directory} does not exist" if not path.exists()
                         else f"{directory} is a file, not a model directory",
                         hint="pass a directory saved with save_pretrained or written by mmtools train")
    ref = resolve_model(str(path))
    location = Path(ref.location)
    config = read_config(location)
    if not config:
        raise ModelError(f"model directory {location} has no readable config.json",
                         hint="pass a directory saved with save_pretrained or written by mmtools train")
    if config.get("model_type") not in SUPPORTED_TYPES:
        raise ModelError(f"model directory {location} holds a {config.get('model_type')!r} model; mmtools "
                         f"loads dual encoders ({', '.join(SUPPORTED_TYPES)})")
    if not any(location.glob("*.safetensors")):
        raise ModelError(f"model directory {location} has no safetensors weights",
                         hint="mmtools loads weights from safetensors only; re-save the model with "
                              "save_pretrained(..., safe_serialization=True)")
    entry = add_imported(name, path, replace=replace)
    return {"name": name, "source": "imported", "family": config.get("model_type"), "dim": embedding_dim(config),
            "location": entry["path"]}


# ----------------------------------------------------------------------------------------------- remove


def remove_model(name: str, *, delete_cached: bool = False) -> dict[str, Any]:
    """Forget an imported name (its directory stays), or delete a hub model from the Hugging Face cache
    (only with ``delete_cached``: it is a download of up to several GB)."""
    from mmtools.models.imported import remove_imported

    entry = remove_imported(name)
    if entry is not None:
        return {"name": name, "removed": "imported name", "location": entry["path"],
                "note": "the directory itself was left in place"}
    ref = resolve_model(name)
    if ref.is_local:
        raise UsageError(f"{name} is a model directory, not an imported name or a cached download",
                         hint="mmtools never deletes model directories; remove it yourself if you mean to")
    repo = next((r for r in cached_hub_models() if r["name"] == ref.name), None)
    if repo is None:
        raise ModelError(f"model {ref.name} is neither an imported name nor in the Hugging Face cache",
                         hint="`mmtools models list` shows what is here")
    if not delete_cached:
        raise UsageError(f"removing {ref.name} deletes {human_size(repo['size_bytes'])} from the Hugging Face "
                         f"cache ({repo['repo_path']})", hint="add --yes to delete it")
    from huggingface_hub import scan_cache_dir

    from mmtools.models.hub import hub_cache_dir

    scan_cache_dir(hub_cache_dir()).delete_revisions(*repo["revisions"]).execute()
    return {"name": ref.name, "removed": "hub-cache", "location": str(repo["repo_path"]),
            "size_bytes": repo["size_bytes"]}


# ------------------------------------------------------------------------------------------------- pull


def pull_model(name: str, *, progress: bool = False) -> dict[str, Any]:
    """Download a hub model (alias or id) into the Hugging Face cache ahead of time: safetensors weights,
    configs and tokenizer files only. Fails within seconds, with what to do, where the hub cannot be reached."""
    ref = resolve_model(name)
    if ref.is_local:
        raise UsageError(f"{name} is a local model, there is nothing to download",
                         hint="pull takes an alias or a Hugging Face id (org/name)")
    from mmtools.models.hf_dual import offline_hint
    from mmtools.models.hub import hub_cache_dir, hub_unavailable_reason, quiet_hub

    unavailable = hub_unavailable_reason()
    if unavailable:
        raise ModelError(f"model {ref.name} cannot be downloaded: {unavailable}", hint=offline_hint(ref.name))
    quiet_hub()
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    (enable_progress_bars if progress else disable_progress_bars)()
    from mmtools.models.onnx_prebuilt import HUB_PATTERNS, ONNX_FAMILY, onnx_layout

    onnx = ref.family == ONNX_FAMILY  # towers already in ONNX (the default model without PyTorch): those files
    try:
        snapshot = Path(snapshot_download(ref.location, allow_patterns=HUB_PATTERNS if onnx else PULL_PATTERNS,
                                          cache_dir=hub_cache_dir()))
    except Exception as exc:  # HTTP, repository-not-found, disk-full errors alike
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"model {ref.name} cannot be downloaded: {text}",
                         hint="check the name on huggingface.co, and that this machine can reach it") from None
    config = read_config(snapshot)
    if onnx and onnx_layout(snapshot) is None:
        raise ModelError(f"model {ref.name} has no ONNX towers (onnx/text_model.onnx, onnx/vision_model.onnx) "
                         "on the hub")
    if not onnx and not any(snapshot.glob("*.safetensors")):
        raise ModelError(f"model {ref.name} has no safetensors weights on the hub; mmtools does not load "
                         "pickled weights")
    return {"name": ref.name, "source": "hub-cache", "family": config.get("model_type"),
            "dim": embedding_dim(config), "size_bytes": size_on_disk(snapshot), "location": str(snapshot)}


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


# ------------------------------------------------------------------------------------------------ ONNX


def onnx_summary(export: Any) -> dict[str, Any]:
    """An export in a few flat fields: where, which towers, and the agreement measured (per index too)."""
    from mmtools.models.onnx_export import export_size

    meta = export.meta
    summary: dict[str, Any] = {"exported": not export.refused, "directory": str(export.directory),
                               "size": human_size(export_size(export.directory))}
    if export.refused:
        summary["refused"] = export.refused
        return summary
    summary["towers"] = ", ".join(sorted(p.stem for p in export.directory.glob("*.onnx")))
    agreement = meta.get("agreement", {})
    for part, label in (("fp32_text", "fp32 text"), ("fp32_image", "fp32 image"), ("int8_text", "int8 text"),
                        ("int8_image", "int8 image")):
        figures = agreement.get(part)
        if figures:
            verdict = "" if figures.get("ok", True) else " (refused)"
            summary[f"{label} min cosine"] = f"{figures['min_cosine']}{verdict}"
    for key, figures in sorted(export.agreement().get("indexes", {}).items()):
        summary[f"int8 queries on {key}"] = (f"top-10 overlap {figures['top10_overlap']}, min cosine "
                                             f"{figures['min_cosine']}: {'used' if figures['ok'] else 'fp32 used'}")
    return summary


def onnx_status(ref: ModelRef) -> dict[str, Any]:
    from mmtools.models.onnx_export import exports_root, find_export

    export = find_export(ref.location, ref.family, ref.manifest)
    if export is not None:
        return onnx_summary(export)
    return {"exported": False, "directory": str(exports_root()),
            "size": "made on first use on a CPU: about 1.25x the model's weights (fp32 and int8 towers)"}


def export_onnx(name: str | None, *, int8: bool = False) -> dict[str, Any]:
    """Export a model to ONNX now (what the first use would do), with the int8 image tower if ``int8``."""
    from mmtools.models.cache import load_encoder
    from mmtools.models.onnx_export import export_model
    from mmtools.models.runtime import INSTALL_HINT, TORCH_HINT, onnxruntime_installed, torch_installed

    if not onnxruntime_installed():
        raise UsageError("exporting to ONNX needs ONNX Runtime, which is not installed", hint=INSTALL_HINT)
    if not torch_installed():
        raise UsageError("exporting to ONNX needs PyTorch, which this install leaves out", hint=TORCH_HINT)
    encoder = load_encoder(name, "cpu", "torch")
    export = export_model(encoder, int8_images=int8)
    if export.refused:
        raise ModelError(f"model {encoder.name} cannot run on ONNX Runtime: {export.refused}",
                         hint="it runs on PyTorch (--runtime torch is what auto does for it)")
    return {"name": name or encoder.name, "model": encoder.name, "fingerprint": export.fingerprint,
            **onnx_summary(export)}
