"""Images made ready for Tesseract: grey, and very large photos scaled down.

Large photos cost reading time and gain no accuracy, so the long side is capped at ``MAX_LONG_SIDE``; small
print is handled by the engine, which also reads an enlarged copy (mmtools.ocr.engine.PASSES). EXIF
orientation is applied by the decoder (mmtools.images.load_image) before this step.
"""

from __future__ import annotations

from typing import Any

MAX_LONG_SIDE = 2000  # pixels


def prepare_for_ocr(image: Any) -> tuple[Any, float]:
    """The grey image to read, and the scale applied (boxes are divided by it to map back)."""
    from PIL import Image, ImageOps

    grey = ImageOps.grayscale(image)
    scale = min(1.0, MAX_LONG_SIDE / max(grey.size))
    if scale < 1.0:
        grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))), Image.BICUBIC)
    return grey, scale
