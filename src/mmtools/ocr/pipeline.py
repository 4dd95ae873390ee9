"""OCR over image sources: records in, the same records with ``ocr_text`` (and ``ocr_lines``) out, in order.

An engine (the ``OcrEngine`` seam) works in two stages: ``locate`` finds the text on a batch of photos at once (the
scene engine's detector, batched; nothing for the page engine) in the calling thread, and ``recognise`` reads one
photo in a worker thread, ``jobs`` at once: Tesseract, in its own process or in-process through tesserocr,
releases the interpreter while it reads, so threads give real parallelism; each Tesseract is limited to one
OpenMP thread so they share the cores instead of fighting over them. Photos of the next batch are detected while
the workers read the previous ones.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Protocol

from mmtools.errors import MissingDependencyError, Problem, ProblemHandler, raise_problem
from mmtools.images import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageSource, load_image
from mmtools.ocr.engine import DEFAULT_LANGUAGES, OcrResult, TesseractEngine
from mmtools.records import Record

OCR_TEXT = "ocr_text"
OCR_LINES = "ocr_lines"
BATCH = 4  # photos detected at once


class OcrEngine(Protocol):
    def locate(self, images: list[Any]) -> list[Any]:
        """Where the text is on each of a batch of PIL images (whatever ``recognise`` takes)."""

    def recognise(self, image: Any, located: Any) -> OcrResult:
        """The lines of one image; called from several threads at once."""


def open_engine(languages: str = DEFAULT_LANGUAGES, on_warning: Callable[[str], None] | None = None) -> OcrEngine:
    """The scene engine (text detector, then each line read: for Vietnamese, letters by PP-OCRv4's recogniser
    and accents by Tesseract; else Tesseract alone), or, when the detector or tesserocr is not
    installed, the page engine (Tesseract alone), saying so once through ``on_warning``."""
    page = TesseractEngine(languages)  # checks Tesseract and its language data first: needed either way
    try:
        from mmtools.ocr.detect import DbnetDetector
        from mmtools.ocr.lexicon import correct_line, syllable_counts
        from mmtools.ocr.recognise import TesseractLineRecogniser

        detector, tesseract = DbnetDetector(), TesseractLineRecogniser(languages)
        if "vie" in languages.split("+") and syllable_counts():
            return _vietnamese_engine(detector, tesseract, correct_line)
        from mmtools.ocr.scene import SceneEngine

        return SceneEngine(detector, tesseract)
    except MissingDependencyError as exc:
        if on_warning:
            on_warning(f"{exc}; reading with Tesseract alone, which misses small and slanted text in photos "
                       f"({exc.hint})" if exc.hint else f"{exc}; reading with Tesseract alone")
        return page


def _vietnamese_engine(detector: Any, tesseract: Any, correct: Callable[[str], str]) -> OcrEngine:
    """Letters from the neural line reader, accents from Tesseract, syllables from the accent restorer's language
    model (mmtools.ocr.syllables)."""
    from mmtools.ocr.letters import CtcLetterReader
    from mmtools.ocr.recognise import FusedLineRecogniser
    from mmtools.ocr.scene import SceneEngine
    from mmtools.ocr.syllables import SyllableDecoder
    from mmtools.text.accent_model import general_model

    decoder = SyllableDecoder(general_model())
    return SceneEngine(detector, FusedLineRecogniser(CtcLetterReader(), tesseract, decoder, correct))


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def ocr_records(
    sources: Iterable[ImageSource], engine: OcrEngine, *, jobs: int | None = None, boxes: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS, on_problem: ProblemHandler = raise_problem,
    progress: Callable[[int], None] | None = None, batch: int = BATCH,
) -> Iterator[Record]:
    """One record per readable image, in input order, at most ``2 * jobs + batch`` images in flight."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # read by each Tesseract pytesseract or tesserocr starts
    jobs = jobs or default_jobs()

    def recognise(source: ImageSource, image: Any, located: Any) -> OcrResult | Problem:
        try:
            return engine.recognise(image, located)
        except Exception as exc:  # Tesseract failing on one image must not stop the others
            return Problem(source.path, f"Tesseract could not read it ({str(exc).strip() or type(exc).__name__})")

    def start(chunk: list[ImageSource], pool: ThreadPoolExecutor) -> list[tuple[ImageSource, Future | Problem]]:
        loaded: list[tuple[ImageSource, Any]] = []
        for source in chunk:
            try:
                loaded.append((source, load_image(source.path, max_pixels=max_pixels)))
            except ImageDecodeError as exc:
                loaded.append((source, Problem(source.path, str(exc))))
        images = [image for _, image in loaded if not isinstance(image, Problem)]
        try:
            located = iter(engine.locate(images))
        except Exception as exc:  # a detector failing on a batch: its photos are named, the rest go on
            reason = f"text detection failed ({str(exc).strip() or type(exc).__name__})"
            return [(source, image if isinstance(image, Problem) else Problem(source.path, reason))
                    for source, image in loaded]
        return [(source, image if isinstance(image, Problem) else pool.submit(recognise, source, image, next(located)))
                for source, image in loaded]

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mmtools-ocr") as pool:
        pending: deque[tuple[ImageSource, Future | Problem]] = deque()
        iterator = iter(sources)
        exhausted = False
        while True:
            if not exhausted and len(pending) < 2 * jobs:
                chunk = list(islice(iterator, batch))
                exhausted = len(chunk) < batch
                pending.extend(start(chunk, pool))
                continue
            if not pending:
                break
            source, item = pending.popleft()
            result = item if isinstance(item, Problem) else item.result()
            if progress:
                progress(1)
            if isinstance(result, Problem):
                on_problem(result)
                continue
            record = {**source.record, "id": source.id, OCR_TEXT: result.text}
            if boxes:
                record[OCR_LINES] = [line.to_record() for line in result.lines]
            yield record
