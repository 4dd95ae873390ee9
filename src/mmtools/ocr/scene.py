"""Text in real scenes: a detector finds each line, each is straightened and read on its own, lines come out in
reading order with their boxes.

Tesseract finds text on a page well and in a photo badly (small, slanted, outlined letters on a busy background);
read line by line, it keeps Vietnamese accents that the peers' recognisers (PP-OCR's Chinese/English model, as
immich ships it) drop. So a scene-text detector (mmtools.ocr.detect) finds the lines, each quadrilateral is warped
to an upright rectangle (perspective and rotation undone; a line much taller than wide is turned a quarter and
read if confidently read), and a line recogniser (mmtools.ocr.recognise) reads it. Measured on
benchmarks/ocr_scenes.py.
"""

from __future__ import annotations

from typing import Any, Callable

from mmtools.ocr.detect import TextDetector
from mmtools.ocr.engine import MIN_LINE_CHARACTERS, OcrLine, OcrResult
from mmtools.ocr.recognise import LineReading, LineRecogniser

MAX_LONG_SIDE = 2000  # pixels: larger photos are read scaled down (boxes are mapped back)
TALL = 1.5  # a line this many times taller than wide is vertical text
VERTICAL_CONFIDENCE = 80.0  # vertical text turned a quarter is kept only when read this confidently
MIN_CONFIDENCE = 50.0  # a line read less confidently than this on average is texture more often than text


class SceneEngine:
    """Detector + line recogniser behind the ``OcrEngine`` seam (``locate`` a batch, ``recognise`` each photo)."""

    def __init__(self, detector: TextDetector, recogniser: LineRecogniser,
                 correct: Callable[[str], str] | None = None):
        self.detector = detector
        self.recogniser = recogniser
        self.correct = correct  # a read line's text put right (mmtools.ocr.lexicon.correct_line for Vietnamese)

    def locate(self, images: list[Any]) -> list[list[Any]]:
        """Each photo's text lines (quadrilaterals in the photo's pixels), found in one batch."""
        import numpy as np

        arrays, scales = [], []
        for image in images:
            scaled, scale = _capped(image.convert("RGB"))
            arrays.append(np.asarray(scaled))
            scales.append(scale)
        return [[quad / scale for quad in quads] for quads, scale in zip(self.detector.detect(arrays), scales)]

    def recognise(self, image: Any, located: list[Any]) -> OcrResult:
        """Read the lines found on one photo; lines in reading order (top to bottom, rows left to right)."""
        image = image.convert("RGB")
        lines = []
        for quad in located:
            reading = self._read(image, quad)
            if reading is None:
                continue
            xs, ys = quad[:, 0], quad[:, 1]
            box = [int(xs.min()), int(ys.min()), int(round(xs.max() - xs.min())), int(round(ys.max() - ys.min()))]
            text = self.correct(reading.text) if self.correct else reading.text
            if text:
                lines.append(OcrLine(text, box, reading.confidence))
        return OcrResult(reading_order(lines))

    def _read(self, image: Any, quad: Any) -> LineReading | None:
        line = rectify(image, quad)
        vertical = line.height >= TALL * line.width
        if vertical:
            line = line.rotate(90, expand=True)  # top-to-bottom text, read left to right
        reading = self.recogniser.recognise(line)
        if not reading.words or sum(c.isalnum() for c in reading.text) < MIN_LINE_CHARACTERS:
            return None
        if reading.confidence < (VERTICAL_CONFIDENCE if vertical else MIN_CONFIDENCE):
            return None
        return reading


def rectify(image: Any, quad: Any) -> Any:
    """The quadrilateral (four corners clockwise from the top left) warped to an upright rectangle as wide as its
    longer top or bottom edge and as tall as its longer side."""
    import numpy as np
    from PIL import Image

    top_left, top_right, bottom_right, bottom_left = quad
    width = max(np.linalg.norm(top_right - top_left), np.linalg.norm(bottom_right - bottom_left))
    height = max(np.linalg.norm(bottom_left - top_left), np.linalg.norm(bottom_right - top_right))
    width, height = max(1, int(round(width))), max(1, int(round(height)))
    target = [(0, 0), (width, 0), (width, height), (0, height)]
    return image.transform((width, height), Image.PERSPECTIVE, perspective_coefficients(target, quad), Image.BICUBIC)


def perspective_coefficients(target: list[tuple[float, float]], source: Any) -> list[float]:
    """PIL's perspective coefficients mapping each output (target) point back to its source point."""
    import numpy as np

    rows, values = [], []
    for (x, y), (u, v) in zip(target, source):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        values += [u, v]
    return list(np.linalg.solve(np.array(rows, dtype=float), np.array(values, dtype=float)))


def reading_order(lines: list[OcrLine]) -> list[OcrLine]:
    """Lines grouped into rows (sharing most of their height), rows top to bottom, each left to right."""
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda line: line.box[1] + line.box[3] / 2):
        middle = line.box[1] + line.box[3] / 2
        for row in rows:
            top = min(other.box[1] for other in row)
            bottom = max(other.box[1] + other.box[3] for other in row)
            if top <= middle <= bottom and abs(row[0].box[3] - line.box[3]) < 0.5 * max(row[0].box[3], line.box[3]):
                row.append(line)
                break
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda line: line.box[0])]


def _capped(image: Any) -> tuple[Any, float]:
    from PIL import Image

    scale = min(1.0, MAX_LONG_SIDE / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)
    return image, scale
