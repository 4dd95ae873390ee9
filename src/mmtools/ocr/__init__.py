"""Text in photos: a scene-text detector finds the lines, a neural reader reads their letters and Tesseract (with its
Vietnamese data) their accents, into records; without the detector, Tesseract reads alone."""

from mmtools.ocr.engine import OcrLine, OcrResult, TesseractEngine
from mmtools.ocr.pipeline import OcrEngine, ocr_records, open_engine

__all__ = ["OcrEngine", "OcrLine", "OcrResult", "TesseractEngine", "ocr_records", "open_engine"]
