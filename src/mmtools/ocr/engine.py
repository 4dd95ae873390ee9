"""Tesseract through pytesseract: one image in, its lines (text, box, confidence) out in reading order.

Photos are not pages: a sign sits on grass, water or a wall, and Tesseract's global (Otsu) binarisation
sometimes merges the board with its background, while its local (Sauvola) binarisation loses other signs,
and small print is only found once enlarged. So each image is read in sparse-text mode (which finds text
scattered over a photo where page layout analysis often finds none) in a few ways (``PASSES``), and the
reading with the most confidently read characters is kept. Texture read as letters comes out as
low-confidence words or bare symbols and is dropped. Measured on photos with drawn Vietnamese signs
(benchmarks/ocr_signs.py): this roughly thirds the character error rate of a single reading.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from mmtools.errors import MissingDependencyError

DEFAULT_LANGUAGES = "vie"
INSTALL_TESSERACT = ("install Tesseract and its Vietnamese data: apt-get install tesseract-ocr tesseract-ocr-vie "
                     "(Debian/Ubuntu; scripts/install-system.sh ocr does it), brew install tesseract "
                     "tesseract-lang (macOS)")
# (Tesseract's thresholding_method: 0 global Otsu, 2 local Sauvola; enlargement)
PASSES = ((0, 1.0), (2, 1.0), (0, 1.6))
SHORT_WORD_CONFIDENCE = 92.0


@dataclass
class OcrLine:
    text: str
    box: list[int]  # [left, top, width, height] in the original image's pixels
    confidence: float  # mean word confidence, 0-100

    def to_record(self) -> dict[str, Any]:
        return {"text": self.text, "box": self.box, "confidence": round(self.confidence, 1)}


@dataclass
class OcrResult:
    lines: list[OcrLine] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


@dataclass
class _Word:
    text: str
    confidence: float
    left: int
    top: int
    right: int
    bottom: int


class TesseractEngine:
    """Reads images with Tesseract. ``languages`` as Tesseract names them, joined by ``+`` (``vie+eng``)."""

    def __init__(self, languages: str = DEFAULT_LANGUAGES, min_confidence: float = 85.0):
        self.pytesseract = _pytesseract()
        missing = [lang for lang in languages.split("+") if lang not in available_languages()]
        if missing:
            raise MissingDependencyError(
                f"Tesseract has no data for {', '.join(missing)} "
                f"(it has: {', '.join(available_languages()) or 'none'})",
                hint=INSTALL_TESSERACT if "vie" in missing else
                f"install the Tesseract language data for {', '.join(missing)} (e.g. tesseract-ocr-{missing[0]})")
        self.languages = languages
        self.min_confidence = min_confidence

    def read(self, image: Any, scale: float = 1.0) -> OcrResult:
        """Read a prepared (grey) image; ``scale`` is how much it was resized, to map boxes back."""
        readings = []
        for method, enlarge in PASSES:
            page = image if enlarge == 1 else image.resize((round(image.width * enlarge),
                                                            round(image.height * enlarge)), 3)
            data = self.pytesseract.image_to_data(
                page, lang=self.languages, config=f"--psm 11 -c thresholding_method={method}",
                output_type=self.pytesseract.Output.DICT)
            readings.append(_confident_words(data, self.min_confidence, enlarge))
        words = max(readings, key=lambda found: sum(len(word.text) * word.confidence for word in found))
        return OcrResult([_line(group, scale) for group in _lay_out(words)])


def _confident_words(data: dict[str, list[Any]], min_confidence: float, enlarge: float = 1.0) -> list[_Word]:
    words = []
    for i, raw in enumerate(data["text"]):
        text = unicodedata.normalize("NFC", str(raw).strip())
        confidence = float(data["conf"][i])
        if not any(c.isalnum() for c in text) or confidence < min_confidence:
            continue
        if len(text) <= 2 and confidence < SHORT_WORD_CONFIDENCE:
            continue
        left, top = data["left"][i] / enlarge, data["top"][i] / enlarge
        words.append(_Word(text, confidence, round(left), round(top), round(left + data["width"][i] / enlarge),
                           round(top + data["height"][i] / enlarge)))
    return words


def _lay_out(words: list[_Word]) -> list[list[_Word]]:
    """Words into lines (left to right, following a slight tilt), lines top to bottom."""
    lines: list[list[_Word]] = []
    for word in sorted(words, key=lambda w: w.left):
        for line in lines:
            last = line[-1]
            shared = min(last.bottom, word.bottom) - max(last.top, word.top)
            if shared > 0.5 * min(last.bottom - last.top, word.bottom - word.top) and word.left >= last.left:
                line.append(word)
                break
        else:
            lines.append([word])
    return sorted(lines, key=lambda line: (min(w.top for w in line), line[0].left))


def _line(words: list[_Word], scale: float) -> OcrLine:
    left, top = min(w.left for w in words), min(w.top for w in words)
    right, bottom = max(w.right for w in words), max(w.bottom for w in words)
    box = [round(left / scale), round(top / scale), round((right - left) / scale), round((bottom - top) / scale)]
    return OcrLine(" ".join(w.text for w in words), box, sum(w.confidence for w in words) / len(words))


def _pytesseract() -> Any:
    try:
        import pytesseract
    except ImportError:
        raise MissingDependencyError("mmtools ocr needs the pytesseract package",
                                     hint="pip install 'mmtools[ocr]'") from None
    if shutil.which(pytesseract.pytesseract.tesseract_cmd) is None:
        raise MissingDependencyError("mmtools ocr needs the tesseract program, which is not on PATH",
                                     hint=INSTALL_TESSERACT)
    return pytesseract


@lru_cache(maxsize=1)
def available_languages() -> tuple[str, ...]:
    try:
        out = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(line.strip() for line in out.stdout.splitlines()[1:] if line.strip())
