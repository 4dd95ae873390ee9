"""Shared fixtures: tiny randomly initialised models built and saved locally, and small image sets.

Nothing here touches the network: HF_HUB_OFFLINE is set before transformers is imported, and the models
load through the same code path as real ones (a directory saved with save_pretrained).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
# Caches and the home of imported model names go to a private scratch place, never the user's own.
_SCRATCH = tempfile.mkdtemp(prefix="mmtools-tests-")
os.environ["MMTOOLS_CACHE_DIR"] = os.path.join(_SCRATCH, "cache")
os.environ["MMTOOLS_HOME"] = os.path.join(_SCRATCH, "home")
os.environ.pop("MMTOOLS_MODEL", None)
os.environ.pop("MMTOOLS_INDEX", None)
os.environ.pop("MMTOOLS_DEVICE", None)
os.environ["MMTOOLS_SERVER"] = "off"  # a developer's running `mmtools serve` must not answer the tests

REPO = Path(__file__).resolve().parents[1]
SHARED_PHOTOS = REPO.parent / "shared" / "data" / "vi-photos"


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, str]:
    from mmtools.models.synthetic import build_random_model

    root = tmp_path_factory.mktemp("models")
    return {arch: str(build_random_model(root / arch, arch)) for arch in ("siglip-tiny", "clip-tiny")}


@pytest.fixture(scope="session")
def siglip_dir(model_dirs) -> str:
    return model_dirs["siglip-tiny"]


@pytest.fixture(scope="session")
def clip_dir(model_dirs) -> str:
    return model_dirs["clip-tiny"]


@pytest.fixture
def photos(tmp_path) -> Path:
    """Eight real JPEGs (from ../shared/data/vi-photos) in a folder with a nested subfolder."""
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    sources = sorted((SHARED_PHOTOS / "images").glob("*.jpg"))[:8]
    if len(sources) < 8:  # the shared data is missing: generate distinct images instead
        from PIL import Image

        for i in range(8):
            target = folder / ("nested" if i >= 6 else "") / f"gen{i}.jpg"
            Image.new("RGB", (64 + 8 * i, 48), (30 * i, 255 - 30 * i, 90)).save(target)
        return folder
    for i, source in enumerate(sources):
        shutil.copy(source, folder / ("nested" if i >= 6 else "") / source.name)
    return folder


@pytest.fixture
def broken_files(tmp_path) -> dict[str, Path]:
    """Inputs that must be refused one by one: text named .jpg, empty file, truncated JPEG."""
    from PIL import Image

    folder = tmp_path / "broken"
    folder.mkdir()
    text = folder / "notes.jpg"
    text.write_text("this is not an image")
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    whole = folder / "whole.jpg"
    Image.new("RGB", (200, 150), "red").save(whole, quality=95)
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(whole.read_bytes()[:300])
    whole.unlink()
    return {"text": text, "empty": empty, "truncated": truncated}
