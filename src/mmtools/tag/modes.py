"""What a tagger read for one record: both modalities, or one of them (a listing without a photo)."""

from __future__ import annotations

MULTIMODAL, TEXT_ONLY, IMAGE_ONLY = "multimodal", "text-only", "image-only"
MODES = (MULTIMODAL, TEXT_ONLY, IMAGE_ONLY)


def mode_of(has_text: bool, has_image: bool) -> str:
    """The mode a record with (or without) a text and an image is read in."""
    if has_text and has_image:
        return MULTIMODAL
    return TEXT_ONLY if has_text else IMAGE_ONLY
