"""A folder searched in one step (rclip's way): its photos embedded and indexed into an index of its own, kept
in the cache and brought up to date before each search.

The index is ``cache_dir()/folders/KEY/idx.faiss``, KEY a hash of the folder's real path and the model's name,
with ``folder.json`` beside it saying which folder and model it holds. Updating is the ordinary pipeline:
images found below the folder, embedded through the embedding cache (a photo encoded before, here or by any
other command, is not encoded again; when nothing changed the model is not even loaded), then written with
``--sync`` semantics (records of files that are gone are removed; the sync guard keeps an index whose folder
went missing). Ids are absolute paths, so the same folder named from anywhere is one index.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mmtools.errors import ProblemHandler, UsageError, raise_problem

FOLDERS = "folders"
INDEX_NAME = "idx.faiss"


@dataclass
class FolderIndex:
    """The folder's index after an update, and what the update changed (an ``IndexSummary``)."""

    path: Path
    folder: str
    model: str
    summary: object


def folder_index_path(folder: str | os.PathLike[str], model_name: str) -> Path:
    """Where the index of ``folder`` under ``model_name`` lives (nothing is created)."""
    from mmtools.paths import cache_dir

    real = os.path.realpath(folder)
    key = hashlib.sha256(f"{real}\0{model_name}".encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return cache_dir() / FOLDERS / key / INDEX_NAME


def update_folder_index(folder: str | os.PathLike[str], *, model: str | None = None, device: str | None = None,
                        runtime: str = "auto", on_problem: ProblemHandler = raise_problem,
                        progress: Callable[[int], None] | None = None,
                        on_wait: Callable[[], None] | None = None) -> FolderIndex:
    """Bring the folder's own index up to date with the photos below ``folder`` and return it. Unreadable
    photos go to ``on_problem`` (the rest are indexed); a folder that is missing or holds no photo is a
    UsageError (an index is never emptied because a disk was not mounted)."""
    from mmtools.embed import embed_images
    from mmtools.embed_cache import cached_image_encoder
    from mmtools.images import discover_images
    from mmtools.index import index_records
    from mmtools.models import load_encoder, resolve_model

    real = os.path.realpath(folder)
    if not os.path.isdir(real):
        raise UsageError(f"{folder}: no such folder", hint="give a folder that holds photos")
    sources = list(discover_images([real], root=real, on_problem=on_problem))
    if not sources:
        raise UsageError(f"{folder}: no photos in this folder (JPEG, PNG, WebP, ...)",
                         hint="give the folder that holds the photos; hidden folders are skipped")
    ref = resolve_model(model)
    path = folder_index_path(real, ref.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    about = path.parent / "folder.json"
    if not about.exists():
        from mmtools.records import atomic_path

        with atomic_path(about) as tmp:
            tmp.write_text(json.dumps({"folder": real, "model": ref.name}, ensure_ascii=False) + "\n",
                           encoding="utf-8")
    encoder, cache = cached_image_encoder(model, device,
                                          load=lambda name, where: load_encoder(name, where, runtime))
    records = embed_images(sources, encoder, cache=cache, on_problem=on_problem, progress=progress)
    summary = index_records(records, path, model=ref.name, sync=True, root=real, on_problem=on_problem,
                            on_wait=on_wait)
    return FolderIndex(path, real, ref.name, summary)
