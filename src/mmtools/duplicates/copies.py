"""Near-identical copies of a photo, made the way they arise in a real collection, for tests and benchmarks:
a shrunk and heavily re-compressed copy (a photo sent through a chat app), and a lightly cropped one (an
edited or screenshot copy)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

COPY_KINDS = ("small", "crop")


def shrunk_copy(image: Any, scale: float = 0.6) -> Any:
    """The photo resized to ``scale`` of its width and height (to be saved at a low JPEG quality)."""
    from PIL import Image

    width, height = image.size
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.LANCZOS)


def cropped_copy(image: Any, rng: random.Random, low: float = 0.05, high: float = 0.08) -> Any:
    """The photo with ``low``–``high`` of its width and of its height cut off, shared unevenly between the
    two sides (a light crop, as when a copy is trimmed by hand)."""
    width, height = image.size
    cut_x, cut_y = rng.uniform(low, high) * width, rng.uniform(low, high) * height
    left, top = rng.uniform(0, cut_x), rng.uniform(0, cut_y)
    return image.crop((round(left), round(top), round(width - (cut_x - left)), round(height - (cut_y - top))))


def write_copies(original: str | Path, folder: str | Path, rng: random.Random, stem: str | None = None
                 ) -> dict[str, Path]:
    """Write both copies of ``original`` into ``folder`` as JPEG files; ``{kind: path}``."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or Path(original).stem
    with Image.open(original) as opened:
        image = opened.convert("RGB")
    paths = {"small": folder / f"{stem}-small.jpg", "crop": folder / f"{stem}-crop.jpg"}
    shrunk_copy(image).save(paths["small"], quality=40)
    cropped_copy(image, rng).save(paths["crop"], quality=85)
    return paths
