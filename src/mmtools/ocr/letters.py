"""The letters of a line, read by a neural recogniser: PP-OCRv4's CTC recogniser (Apache-2.0), whose ONNX file
ships inside the ``rapidocr_onnxruntime`` wheel beside the detector (mmtools.ocr.detect), run with ONNX Runtime.

It reads the letters of small, outlined, blurred text on a busy photo far better than Tesseract (on
benchmarks/ocr_scenes.py's tuning photos, about 0.07 of the letters wrong once accents are set aside, against
0.21 for Tesseract), but its alphabet is Chinese and English: every Vietnamese accent is lost ("Sửa" comes out
"Sua" or "Sura"). So it gives the letters, and mmtools.ocr.syllables puts the accents back from Tesseract's
reading of the same line and a Vietnamese language model.
"""

from __future__ import annotations

from typing import Any

from mmtools.errors import MissingDependencyError
from mmtools.ocr.detect import DETECTOR_PACKAGE, INSTALL_DETECTOR, onnx_session, detector_model_path

RECOGNISER_FILE = "models/ch_PP-OCRv4_rec_infer.onnx"
HEIGHT = 48  # pixels: the recogniser's input height
MIN_WIDTH = 320  # pixels: a shorter line is padded to this width, as the model was trained
MAX_WIDTH = 1600  # pixels at that height: a longer line is squeezed (a sign rarely holds more than 60 letters)


class CtcLetterReader:
    """Reads one upright line image into (text, score 0-1): greedy CTC decoding of PP-OCRv4's recogniser.
    Safe to call from several threads (ONNX Runtime sessions are)."""

    def __init__(self, threads: int = 1):
        path = detector_model_path().parent / RECOGNISER_FILE.split("/")[-1]
        if not path.is_file():
            raise MissingDependencyError(f"the line recogniser's model {path} is missing (another "
                                         f"{DETECTOR_PACKAGE} version?)", hint=INSTALL_DETECTOR)
        self.session = onnx_session(str(path), threads)
        self.input = self.session.get_inputs()[0].name
        characters = self.session.get_modelmeta().custom_metadata_map.get("character")
        if not characters:
            raise MissingDependencyError(f"the line recogniser's model {path} holds no alphabet",
                                         hint=INSTALL_DETECTOR)
        self.alphabet = ["", *characters.splitlines(), " "]  # 0 is CTC's blank; the space comes last

    def read(self, line: Any) -> tuple[str, float]:
        """``line``: a PIL image of one line of text, upright, left to right."""
        import cv2
        import numpy as np

        pixels = np.asarray(line.convert("RGB"))[:, :, ::-1]  # the model was trained on OpenCV's BGR
        width = min(MAX_WIDTH, max(HEIGHT // 4, int(np.ceil(HEIGHT * pixels.shape[1] / max(1, pixels.shape[0])))))
        pixels = cv2.resize(pixels, (width, HEIGHT), interpolation=cv2.INTER_LINEAR)
        batch = np.zeros((1, 3, HEIGHT, max(MIN_WIDTH, width)), np.float32)  # padded with mid-grey
        batch[0, :, :, :width] = ((pixels.astype(np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)
        probabilities = self.session.run(None, {self.input: batch})[0][0]
        best = probabilities.argmax(axis=1)
        keep = (best != 0) & np.concatenate([[True], best[1:] != best[:-1]])
        if not keep.any():
            return "", 0.0
        text = "".join(self.alphabet[i] for i in best[keep] if i < len(self.alphabet))
        return " ".join(text.split()), float(probabilities.max(axis=1)[keep].mean())
