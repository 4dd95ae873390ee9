"""Where the text is: a scene-text detector finds each line in a photo as a quadrilateral.

``TextDetector`` is the seam; ``DbnetDetector`` its implementation: PP-OCRv4's DBNet detector (Apache-2.0), whose
ONNX file ships inside the ``rapidocr_onnxruntime`` wheel (no download), run with ONNX Runtime. Photos are
detected in batches (scaled to one size, padded to the batch's largest), and the ONNX session is loaded once per
process (``onnx_session``), so a long-running ``serve`` or a second engine reuses it.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from mmtools.errors import MissingDependencyError

DETECTOR_PACKAGE = "rapidocr_onnxruntime"
DBNET_FILE = "models/ch_PP-OCRv4_det_infer.onnx"
INSTALL_DETECTOR = "pip install 'mmtools[ocr]' (it brings rapidocr_onnxruntime==1.4.4, whose wheel holds the model)"
LONG_SIDE = 960  # pixels: photos are detected at this size (letters of 10 px and more are found)
MEAN, STD = 0.5, 0.5
THRESHOLD = 0.3  # a pixel is text above this probability
BOX_THRESHOLD = 0.5  # a found region is kept if its mean probability is above this
UNCLIP = 1.6  # DBNet finds the shrunk core of a line: grown back by area * UNCLIP / perimeter
MIN_SIDE = 4  # pixels in the photo


class TextDetector(Protocol):
    def detect(self, images: list[Any]) -> list[list[Any]]:
        """For each RGB image (a numpy array, height x width x 3, uint8), its text lines as quadrilaterals:
        float32 arrays of four (x, y) corners in the image's pixels, clockwise from the top left."""


def detector_model_path() -> Path:
    """The DBNet ONNX file inside the installed ``rapidocr_onnxruntime`` package (not imported: only found)."""
    spec = importlib.util.find_spec(DETECTOR_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("the scene-text detector (rapidocr_onnxruntime) is not installed",
                                     hint=INSTALL_DETECTOR)
    path = Path(list(spec.submodule_search_locations)[0]) / DBNET_FILE
    if not path.is_file():
        raise MissingDependencyError(f"the scene-text detector's model {path} is missing (another "
                                     f"rapidocr_onnxruntime version?)", hint=INSTALL_DETECTOR)
    return path


@lru_cache(maxsize=4)
def onnx_session(path: str, threads: int = 0) -> Any:
    """One ONNX Runtime session per model file and thread count for the whole process (the detector's, and the
    line reader's of mmtools.ocr.letters)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    # No busy-waiting between operators: Tesseract threads read lines while a batch is detected, and spinning
    # threads took their cores (detection cost 0.80 CPU s a photo spinning, 0.58 not, same wall time).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class DbnetDetector:
    """PP-OCRv4 DBNet through ONNX Runtime. Its map of text probability is turned into lines as PaddleOCR does
    (regions above a threshold, each grown back by its shrink distance), except that each region is fitted with a
    quadrilateral rather than a rotated rectangle, so a line seen in perspective can be warped flat."""

    def __init__(self, long_side: int = LONG_SIDE, threads: int = 0):
        path = detector_model_path()
        try:
            import cv2  # noqa: F401  (the post-processing needs OpenCV and pyclipper, both rapidocr's)
            import pyclipper  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError(f"the scene-text detector cannot start ({exc})",
                                         hint=INSTALL_DETECTOR) from None
        self.session = onnx_session(str(path), threads)
        self.input = self.session.get_inputs()[0].name
        self.long_side = long_side

    def detect(self, images: list[Any]) -> list[list[Any]]:
        import cv2
        import numpy as np

        if not images:
            return []
        sizes = []
        for image in images:
            height, width = image.shape[:2]
            scale = self.long_side / max(height, width)
            sizes.append((max(32, round(height * scale / 32) * 32), max(32, round(width * scale / 32) * 32)))
        batch = np.zeros((len(images), 3, max(h for h, _ in sizes), max(w for _, w in sizes)), np.float32)
        for i, (image, (height, width)) in enumerate(zip(images, sizes)):
            resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            batch[i, :, :height, :width] = ((resized.astype(np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1)
        maps = self.session.run(None, {self.input: batch})[0]
        return [_lines(probability[0, :height, :width], image.shape[1] / width, image.shape[0] / height)
                for image, (height, width), probability in zip(images, sizes, maps)]


def _lines(probability: Any, x_scale: float, y_scale: float) -> list[Any]:
    """The text lines of one probability map, as quadrilaterals in the image's pixels."""
    import cv2
    import numpy as np

    mask = cv2.dilate((probability > THRESHOLD).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    lines = []
    for contour in contours:
        if min(cv2.minAreaRect(contour)[1]) < 3:
            continue
        region = np.zeros_like(mask)
        x, y, w, h = cv2.boundingRect(contour)
        cv2.drawContours(region[y:y + h, x:x + w], [contour - (x, y)], -1, 1, -1)
        if cv2.mean(probability[y:y + h, x:x + w], region[y:y + h, x:x + w])[0] < BOX_THRESHOLD:
            continue
        quad = _grow(_quadrilateral(contour))
        if quad is None:
            continue
        quad = quad * np.float32([x_scale, y_scale])
        if min(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[0] - quad[3])) >= MIN_SIDE:
            lines.append(quad)
    return lines


def _quadrilateral(contour: Any) -> Any:
    """Four corners that follow the region's outline (its convex hull simplified until four remain), clockwise
    from the top left; its rotated bounding rectangle where the outline is no quadrilateral."""
    import cv2
    import numpy as np

    hull = cv2.convexHull(contour)
    perimeter = cv2.arcLength(hull, True)
    for fraction in (0.01, 0.02, 0.04, 0.06, 0.09, 0.13):
        corners = cv2.approxPolyDP(hull, fraction * perimeter, True)
        if len(corners) == 4 and cv2.contourArea(corners) >= 0.85 * cv2.contourArea(hull):
            return _clockwise(corners.reshape(4, 2).astype(np.float32))
        if len(corners) < 4:
            break
    return _clockwise(cv2.boxPoints(cv2.minAreaRect(contour)).astype(np.float32))


def _grow(quad: Any) -> Any | None:
    """The quadrilateral pushed out on every side by DBNet's shrink distance (area * UNCLIP / perimeter), corners
    kept sharp; None if that does not leave a quadrilateral."""
    import cv2
    import numpy as np
    import pyclipper

    area, perimeter = cv2.contourArea(quad), cv2.arcLength(quad, True)
    if perimeter == 0:
        return None
    offset = pyclipper.PyclipperOffset()
    offset.AddPath([tuple(map(int, np.round(p * 8))) for p in quad], pyclipper.JT_MITER, pyclipper.ET_CLOSEDPOLYGON)
    grown = offset.Execute(area * UNCLIP / perimeter * 8)
    if len(grown) != 1 or len(grown[0]) != 4:
        return _clockwise(cv2.boxPoints(cv2.minAreaRect(np.array(grown[0], np.float32) / 8))) if grown else None
    return _clockwise(np.array(grown[0], np.float32) / 8)


def _clockwise(points: Any) -> Any:
    """Corners ordered clockwise (on screen) from the one nearest the top left."""
    import numpy as np

    centre = points.mean(axis=0)
    points = points[np.argsort(np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0]))]
    return np.roll(points, -int(np.argmin(points.sum(axis=1))), axis=0).astype(np.float32)
