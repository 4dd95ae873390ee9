"""Vietnamese text: normalisation (``normalize_text``) and word segmentation (``get_segmenter``).

Importing this package is instant; a segmentation back end is imported when its segmenter is created.
"""

from mmtools.text.normalize import TONE_STYLES, normalize_text
from mmtools.text.segment import BACKENDS, DEFAULT_BACKEND, Segmenter, get_segmenter, load_dictionary

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "TONE_STYLES",
    "Segmenter",
    "get_segmenter",
    "load_dictionary",
    "normalize_text",
]
