"""Tesseract through pytesseract: one image in, its lines (text, box, confidence) out in reading order.

Photos are not pages: a sign sits on grass, water or a wall, and Tesseract's global (Otsu) binarisation
sometimes merges the board with its background, while its local (Sauvola) binarisation loses other signs,
and small print is only found once enlarged. So each image is read in sparse-text mode (which finds text
scattered over a photo where page layout analysis often finds none) in a few ways (``PASSES``); the passes
miss different words, so their words are pooled (the more confident kept where two overlap) and grouped into
lines, and each line is read once more on its own in single-line mode, at the letter height Tesseract reads
best, which recovers the words the sparse reading dropped. Texture read as letters comes out as
low-confidence words, bare symbols or lone one- or two-character lines, and is dropped. Measured on photos
with drawn Vietnamese signs (benchmarks/ocr_signs.py).
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
LINE_HEIGHT = 48  # pixels: a re-read line is scaled to this height (letters about 30-40 px)
LINE_WIDEN = 1.5  # line heights added on each side of a re-read line
LINE_CONFIDENCE = 70.0
MIN_LINE_CHARACTERS = 3  # a lone line of one or two characters is texture far more often than text


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

    def locate(self, images: list[Any]) -> list[None]:
        """Nothing to find ahead (the ``OcrEngine`` seam): each photo is searched while it is read."""
        return [None] * len(images)

    def recognise(self, image: Any, located: None = None) -> OcrResult:
        """Read one photo (any PIL image)."""
        from mmtools.ocr.prepare import prepare_for_ocr

        return self.read(*prepare_for_ocr(image))

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
        words = _combine(readings)
        lines = [self._reread(image, group) for group in _lay_out(words)]
        return OcrResult([_line(line, scale) for line in lines
                          if sum(c.isalnum() for w in line for c in w.text) >= MIN_LINE_CHARACTERS])

    def _reread(self, image: Any, words: list[_Word]) -> list[_Word]:
        """The line read again on its own (single-line mode), widened to catch the words the sparse reading
        dropped and scaled so its letters are the height Tesseract reads best; kept if more confidently read."""
        left, top = min(w.left for w in words), min(w.top for w in words)
        right, bottom = max(w.right for w in words), max(w.bottom for w in words)
        height = bottom - top
        if height < 4:
            return words
        box = (max(0, left - round(LINE_WIDEN * height)), max(0, top - height // 3),
               min(image.width, right + round(LINE_WIDEN * height)), min(image.height, bottom + height // 3))
        enlarge = LINE_HEIGHT / height
        crop = image.crop(box)
        crop = crop.resize((max(1, round(crop.width * enlarge)), max(1, round(crop.height * enlarge))), 3)
        data = self.pytesseract.image_to_data(crop, lang=self.languages, config="--psm 7",
                                              output_type=self.pytesseract.Output.DICT)
        found = [_Word(w.text, w.confidence, w.left + box[0], w.top + box[1], w.right + box[0], w.bottom + box[1])
                 for w in _confident_words(data, LINE_CONFIDENCE, enlarge)]
        return found if found and _score(found) > _score(words) else words


def _combine(readings: list[list[_Word]]) -> list[_Word]:
    """Every pass's words, where two passes read the same place the more confident (longer) reading kept:
    the passes miss different words of one line."""
    kept: list[_Word] = []
    for word in sorted((w for found in readings for w in found), key=lambda w: -len(w.text) * w.confidence):
        if not any(_overlap(word, other) > 0.3 for other in kept):
            kept.append(word)
    return kept


def _overlap(a: _Word, b: _Word) -> float:
    width = min(a.right, b.right) - max(a.left, b.left)
    height = min(a.bottom, b.bottom) - max(a.top, b.top)
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((a.right - a.left) * (a.bottom - a.top), (b.right - b.left) * (b.bottom - b.top))
    return width * height / max(1, smaller)


def _score(words: list[_Word]) -> float:
    return sum(len(word.text) * word.confidence for word in words)


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
        for line in lines:  # Tesseract's word boxes wobble: compared with the line's whole extent
            top, bottom = min(w.top for w in line), max(w.bottom for w in line)
            shared = min(bottom, word.bottom) - max(top, word.top)
            if shared > 0.5 * min(line[-1].bottom - line[-1].top, word.bottom - word.top) \
                    and word.left >= line[-1].left:
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
def _list_languages() -> str:
    try:
        out = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout


def available_languages() -> tuple[str, ...]:
    return tuple(line.strip() for line in _list_languages().splitlines()[1:] if line.strip())


def tessdata_path() -> str:
    """The folder of Tesseract's language data, as the installed ``tesseract`` reports it (``TESSDATA_PREFIX``
    when set): Tesseract's library, used in-process, does not find it on its own."""
    if os.environ.get("TESSDATA_PREFIX"):
        return os.environ["TESSDATA_PREFIX"]
    first = _list_languages().splitlines()[:1]
    if first and '"' in first[0]:
        return first[0].split('"')[1]
    return ""
