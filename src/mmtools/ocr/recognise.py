"""What a found line says: a recogniser reads one rectified line image into words with confidences.

``LineRecogniser`` is the seam. ``FusedLineRecogniser``, for Vietnamese, takes a line's letters from a neural reader
(mmtools.ocr.letters), which sees small outlined letters well but knows no accents, and its accents from
Tesseract, and puts the two together into Vietnamese syllables (mmtools.ocr.syllables). ``TesseractLineRecogniser``
reads with Tesseract alone: its LSTM with the language's data, in single-line mode, kept loaded in the process through ``tesserocr`` (one Tesseract per
thread: starting the ``tesseract`` program for each line costs about half a second, reading a line 20-40 ms).
Each line is read as it is (grey) and, unless that reading is confident, from its colour layers (the letters'
fill, their outline and the background apart), at the letter height Tesseract reads best; the reading with the
most confidently read letters is kept, and words read with low confidence, or bare symbols, are dropped, as in
the page engine (mmtools.ocr.engine).
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from mmtools.errors import MissingDependencyError
from mmtools.ocr.engine import DEFAULT_LANGUAGES, SHORT_WORD_CONFIDENCE, available_languages, tessdata_path

INSTALL_TESSEROCR = "pip install 'mmtools[ocr]' (it brings tesserocr, Tesseract's library for Python)"
BORDER = 8  # pixels of the line's own edge added around it: Tesseract reads letters touching the edge badly
WORD_CONFIDENCE = 20.0  # a word read less confidently is dropped (a line that is found drops few words)
# How a line is read, in turn until one reading is confident: (colour layers, 1 for the grey line itself;
# Tesseract's page segmentation mode, 7 a single line, 13 a raw line; letter height in pixels). Chosen on
# benchmarks/ocr_scenes.py's tuning photos (0-39).
READINGS = ((1, 7, 56), (3, 7, 40), (4, 13, 40))
LETTER_SCORE = 0.5  # a line the letter reader reads less surely than this (0-1) is left to Tesseract alone
CONFIDENT = 88.0  # a line read this confidently (mean word confidence) is not read again another way
LAYER_HEIGHT = 48  # pixels: lines are split into colour layers at this height


@dataclass
class LineReading:
    words: list[tuple[str, float]]  # each word and its confidence, 0-100

    @property
    def text(self) -> str:
        return " ".join(word for word, _ in self.words)

    @property
    def confidence(self) -> float:
        return sum(c for _, c in self.words) / len(self.words) if self.words else 0.0

    @property
    def score(self) -> float:
        return sum(len(word) * confidence for word, confidence in self.words)


class LineRecogniser(Protocol):
    def recognise(self, line: Any) -> LineReading:
        """Read one line: a PIL image holding a single line of text, upright, left to right."""

    def readings(self, line: Any) -> list[LineReading]:
        """Each way the line was read (``recognise`` gives the best)."""


class TesseractLineRecogniser:
    """Tesseract through tesserocr; safe to call from several threads (each has its own Tesseract)."""

    def __init__(self, languages: str = DEFAULT_LANGUAGES, min_confidence: float = WORD_CONFIDENCE):
        try:
            import tesserocr
        except ImportError:
            raise MissingDependencyError("the scene-text reader needs tesserocr", hint=INSTALL_TESSEROCR) from None
        self.tesserocr = tesserocr
        self.languages = languages
        self.path = tessdata_path()
        missing = [lang for lang in languages.split("+") if lang not in available_languages()]
        if missing:
            raise MissingDependencyError(f"Tesseract has no data for {', '.join(missing)}",
                                         hint=f"install the Tesseract language data for {', '.join(missing)}")
        self.min_confidence = min_confidence
        self.local = threading.local()
        self._api()  # fails here, not in a worker, when the data cannot be loaded

    def _api(self) -> Any:
        api = getattr(self.local, "api", None)
        if api is None:
            try:
                api = self.tesserocr.PyTessBaseAPI(path=self.path, lang=self.languages,
                                                   psm=self.tesserocr.PSM.SINGLE_LINE)
            except RuntimeError as exc:
                raise MissingDependencyError(f"tesserocr cannot load Tesseract's {self.languages} data from "
                                             f"{self.path} ({exc})", hint=INSTALL_TESSEROCR) from None
            self.local.api = api
        return api

    def recognise(self, line: Any) -> LineReading:
        """The reading with the most confidently read letters among ``readings``."""
        return max(self.readings(line), key=lambda reading: reading.score)

    def readings(self, line: Any) -> list[LineReading]:
        """Read the line as it is (grey), then, unless that reading is already confident, its colour layers
        (``colour_layers``) a few ways (``READINGS``): outlined letters on a busy photo are read from their fill."""
        from PIL import ImageOps

        best, done = LineReading([]), [LineReading([])]
        rgb = line.convert("RGB")
        for layers, mode, height in READINGS:
            images = [ImageOps.grayscale(rgb)] if layers == 1 else colour_layers(rgb, layers)
            for image in images:
                done.append(self._read(image, mode, height))
                if done[-1].score > best.score:
                    best = done[-1]
            if best.confidence >= CONFIDENT and len(best.text) >= 3:
                break
        return done

    def _read(self, line: Any, mode: int, height: int) -> LineReading:
        from PIL import Image, ImageOps

        scale = height / max(1, line.height)
        line = line.resize((max(1, round(line.width * scale)), height), Image.BICUBIC)
        line = ImageOps.expand(line, BORDER, fill=_edge_colour(line))
        api = self._api()
        api.SetPageSegMode(mode)
        api.SetImage(line)
        api.Recognize()
        return LineReading(self._words(api))

    def _words(self, api: Any) -> list[tuple[str, float]]:
        words = []
        level = self.tesserocr.RIL.WORD
        iterator = api.GetIterator()
        if iterator is None:
            return words
        for word in self.tesserocr.iterate_level(iterator, level):
            try:
                text = unicodedata.normalize("NFC", (word.GetUTF8Text(level) or "").strip())
            except RuntimeError:  # an empty word: tesserocr says "No text returned"
                continue
            confidence = word.Confidence(level)
            if not any(c.isalnum() for c in text) or confidence < self.min_confidence:
                continue
            if len(text) <= 2 and not any(c.isdigit() for c in text) and confidence < SHORT_WORD_CONFIDENCE - 30:
                continue
            words.append((text, confidence))
        return words


class FusedLineRecogniser:
    """Letters from ``letters`` (a reader with ``read(line) -> (text, score 0-1)``), accents from ``accents``
    (Tesseract: the words of every way it read the line), put together by ``decoder`` (``decode(letters,
    accented_words) -> text``). A line the letter reader reads unsurely is Tesseract's alone, put right by
    ``correct``. Confidence: the letter reader's score (0-100), since its letters are what the line says."""

    def __init__(self, letters: Any, accents: LineRecogniser, decoder: Any,
                 correct: Callable[[str], str] | None = None):
        self.letters, self.accents, self.decoder, self.correct = letters, accents, decoder, correct

    def recognise(self, line: Any) -> LineReading:
        text, score = self.letters.read(line)
        readings = self.accents.readings(line)
        if not text or score < LETTER_SCORE:
            reading = max(readings, key=lambda reading: reading.score)
            if self.correct is None:
                return reading
            return LineReading([(word, confidence) for word, confidence in
                                ((self.correct(w), c) for w, c in reading.words) if word])
        words = [word for reading in readings for word in reading.words]  # each way Tesseract read it
        return LineReading([(word, 100 * score) for word in self.decoder.decode(text, words).split()])


def colour_layers(line: Any, layers: int) -> list[Any]:
    """The line's pixels grouped into ``layers`` colours (k-means in Lab), and each group that is not mostly the
    line's border (the background) drawn black on white: the fill of outlined letters comes out as plain print."""
    import cv2
    import numpy as np
    from PIL import Image

    pixels = np.asarray(line)
    scale = LAYER_HEIGHT / max(1, pixels.shape[0])
    pixels = cv2.resize(pixels, (max(1, round(pixels.shape[1] * scale)), LAYER_HEIGHT), interpolation=cv2.INTER_CUBIC)
    lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    if len(lab) < layers:
        return []
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    cv2.setRNGSeed(0)
    _, labels, _ = cv2.kmeans(lab, layers, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    labels = labels.reshape(pixels.shape[:2])
    found = []
    for layer in range(layers):
        mask = labels == layer
        if np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]]).mean() > 0.5:
            continue  # the background
        found.append(Image.fromarray(np.where(mask, 0, 255).astype(np.uint8)))
    return found


def _edge_colour(image: Any) -> int:
    """The median grey of the image's border: what the background around the letters most likely is."""
    import numpy as np

    pixels = np.asarray(image)
    edge = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return int(np.median(edge))
