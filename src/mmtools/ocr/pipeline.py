"""OCR over image sources: records in, the same records with ``ocr_text`` (and ``ocr_lines``) out, in order.

Tesseract runs as a separate process per image (pytesseract), so threads give real parallelism; each is
limited to one OpenMP thread so ``jobs`` processes share the cores instead of fighting over them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.images import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageSource, load_image
from mmtools.ocr.engine import OcrResult, TesseractEngine
from mmtools.ocr.prepare import prepare_for_ocr
from mmtools.records import Record

OCR_TEXT = "ocr_text"
OCR_LINES = "ocr_lines"


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def ocr_records(
    sources: Iterable[ImageSource], engine: TesseractEngine, *, jobs: int | None = None, boxes: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS, on_problem: ProblemHandler = raise_problem,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Record]:
    """One record per readable image, in input order, at most ``2 * jobs`` images in flight."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # read by each tesseract process pytesseract starts
    jobs = jobs or default_jobs()

    def read(source: ImageSource) -> OcrResult | Problem:
        try:
            image = load_image(source.path, max_pixels=max_pixels)
        except ImageDecodeError as exc:
            return Problem(source.path, str(exc))
        try:
            return engine.read(*prepare_for_ocr(image))
        except Exception as exc:  # Tesseract failing on one image must not stop the others
            return Problem(source.path, f"Tesseract could not read it ({str(exc).strip() or type(exc).__name__})")

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mmtools-ocr") as pool:
        pending: list[tuple[ImageSource, Any]] = []
        iterator = iter(sources)
        while True:
            while len(pending) < 2 * jobs and (source := next(iterator, None)) is not None:
                pending.append((source, pool.submit(read, source)))
            if not pending:
                break
            source, future = pending.pop(0)
            result = future.result()
            if progress:
                progress(1)
            if isinstance(result, Problem):
                on_problem(result)
                continue
            record = {**source.record, "id": source.id, OCR_TEXT: result.text}
            if boxes:
                record[OCR_LINES] = [line.to_record() for line in result.lines]
            yield record
