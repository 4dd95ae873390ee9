"""Captioning and answering over image sources: records in, the same records with a text field out, in order.

Images (files, or video frames of keyframe records) are decoded in threads a few batches ahead of the model,
as embed-images does; unreadable ones are reported and skipped, the rest go on.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.images import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageSource, decode_sources
from mmtools.records import Record

PromptOf = Callable[[Record], "str | None"]  # the prompt or question of a record; raises ValueError if none


def generate_records(
    sources: Iterable[ImageSource], generator: Any, *, field: str = "caption", prompt_of: PromptOf | None = None,
    batch_size: int = 8, max_new_tokens: int = 30, num_beams: int = 1, workers: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS, on_problem: ProblemHandler = raise_problem,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Record]:
    """One record per readable image, in input order, with ``field`` set to the generated text. ``prompt_of``
    gives each record's prompt (None: the model's own default); a record it refuses (ValueError) is
    reported and skipped."""
    prompt_of = prompt_of or (lambda record: None)
    pending: deque[Future[tuple[list[tuple[ImageSource, Any, str | None]], list[Problem]]]] = deque()

    def prepare(batch: list[ImageSource]):
        problems: list[Problem] = []
        asked: list[tuple[ImageSource, str | None]] = []
        for source in batch:
            try:
                asked.append((source, prompt_of(source.record)))
            except ValueError as exc:
                problems.append(Problem(source.where, f"{exc}, skipped"))
        decoded = decode_sources([s for s, _ in asked], max_pixels=max_pixels,
                                 draft_size=getattr(generator, "image_size", None))
        ready = []
        for (source, image), (_, prompt) in zip(decoded, asked):
            if isinstance(image, ImageDecodeError):
                problems.append(Problem(source.where, str(image)))
            else:
                ready.append((source, image, prompt))
        return ready, problems

    def finish(future) -> Iterator[Record]:
        ready, problems = future.result()
        for problem in problems:
            on_problem(problem)
        if ready:
            texts = generator.generate([image for _, image, _ in ready], [prompt for _, _, prompt in ready],
                                       max_new_tokens=max_new_tokens, num_beams=num_beams)
            for (source, _, _), text in zip(ready, texts):
                yield {**source.record, "id": source.id, field: text}
        if progress:
            progress(len(ready) + len(problems))

    executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="mmtools-caption")
    try:
        batch: list[ImageSource] = []
        for source in sources:
            batch.append(source)
            if len(batch) == batch_size:
                pending.append(executor.submit(prepare, batch))
                batch = []
                if len(pending) > max(1, workers):
                    yield from finish(pending.popleft())
        if batch:
            pending.append(executor.submit(prepare, batch))
        while pending:
            yield from finish(pending.popleft())
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def question_of(fixed: str | None, field: str = "question") -> PromptOf:
    """``ask``'s prompt: ``fixed`` for every record, else the record's ``field`` (ValueError when missing)."""
    def prompt(record: Record) -> str:
        if fixed:
            return fixed
        value = record.get(field)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"record has no {field!r} text and no question was given")
        return value.strip()
    return prompt
