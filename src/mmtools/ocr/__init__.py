"""Text in photos: Tesseract (with its Vietnamese data) reads signs, menus and screenshots into records."""

from mmtools.ocr.engine import OcrLine, OcrResult, TesseractEngine
from mmtools.ocr.pipeline import ocr_records

__all__ = ["OcrLine", "OcrResult", "TesseractEngine", "ocr_records"]
