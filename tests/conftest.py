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
# The real photos and captions the tests read are in the repository (tests/data/vi-photos/ATTRIBUTION.md): a clone
# tests itself with nothing beside it. ../shared/data is for benchmarks only. Sorted by name, its images are
# 8 for general use, 20 for OCR (signs drawn on them) and 10 for duplicates; captions.jsonl holds all 626 records.
TEST_PHOTOS = REPO / "tests" / "data" / "vi-photos"
SHARED_PHOTOS = TEST_PHOTOS  # the former name, kept so that tests written against it still find the data


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
    """Eight real JPEGs (from tests/data/vi-photos) in a folder with a nested subfolder."""
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    sources = sorted((TEST_PHOTOS / "images").glob("*.jpg"))[:8]
    assert len(sources) == 8, f"{TEST_PHOTOS / 'images'} holds fewer than 8 photos"
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


@pytest.fixture(scope="session")
def tagging_data(tmp_path_factory) -> dict[str, Path]:
    """Synthetic tagging data (text tags decided by words, image tags by colour) and tiny towers for it."""
    import orjson

    from mmtools.tag.synthetic import build_image_tower, build_text_tower, synthetic_tagging_data

    root = tmp_path_factory.mktemp("tagging")
    train = synthetic_tagging_data(root, 128, seed=1, name="train")
    val = synthetic_tagging_data(root, 48, seed=2, name="val")
    test = synthetic_tagging_data(root, 64, seed=3, name="test")
    texts = [orjson.loads(line)["text"] for line in train.read_text(encoding="utf-8").splitlines()]
    return {"root": root, "train": train, "val": val, "test": test,
            "text_tower": build_text_tower(root / "text-tower", texts),
            "image_tower": build_image_tower(root / "image-tower")}
