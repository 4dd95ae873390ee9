"""Embedding pipelines: sources in, embedding records out, streaming.

Images: a thread pool decodes and preprocesses batches ahead of the model, so decoding overlaps the
forward pass; batches come out in input order, and only a bounded number are ever in flight, so memory
does not grow with the number of images. Texts: batched, with the model's text rules applied.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.images import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageSource, decode_sources
from mmtools.models.encoder import Encoder
from mmtools.records import (EMBEDDING, EMBEDDING_FINGERPRINT, EMBEDDING_KIND, EMBEDDING_MODEL, Record,
                             encode_vector, field_texts, record_id, text_id)

if TYPE_CHECKING:
    from mmtools.embed_cache import ImageVectorCache

log = logging.getLogger("mmtools")

Progress = Callable[[int], None]  # called with the number of inputs just finished
SORT_WINDOW = 16  # embed_texts sorts this many batches of texts by length at a time


CPU_IMAGE_BATCH = 8  # images per forward pass on a CPU: a base-size int8 tower ran as fast at 4-16 (1 was slower)


def default_workers(model_on_cpu: bool = False) -> int:
    """Decoding threads: up to one per CPU (at most 8) for a GPU to feed; for a model on the CPU, which takes
    every core itself, one per four cores (decoding a 640 px photo costs about 1/60 of SigLIP 2 base's int8
    forward pass there), so decoding keeps ahead without taking cores from the model."""
    from mmtools.models.runtime import available_cores

    cores = available_cores()
    return max(1, cores // 4) if model_on_cpu else max(1, min(8, cores))


def _model_on_cpu(encoder: Encoder, ready: bool) -> bool:
    """Where the model runs, without loading a model the embedding cache has not needed yet."""
    if ready:
        return str(getattr(encoder, "device", "cpu")).split(":", 1)[0] == "cpu"
    from mmtools.models.runtime import accelerator_present

    return not accelerator_present()


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def embedding_fields(vector: Any, encoder: Encoder, kind: str, vector_format: str) -> Record:
    return {EMBEDDING: encode_vector(vector, vector_format), EMBEDDING_MODEL: encoder.name,
            EMBEDDING_FINGERPRINT: encoder.fingerprint, EMBEDDING_KIND: kind}


# ------------------------------------------------------------------------------------------------ images


@dataclass
class _DecodedBatch:
    sources: list[ImageSource]  # readable images, in input order (cached ones included)
    pixels: Any  # the preprocessed images of the sources that have no cached vector
    problems: list[Problem] = field(default_factory=list)
    known: list[tuple[Any, Any]] = field(default_factory=list)  # per source: (FileFacts, cached vector or None)
    vectors: Any = None  # the pixels' vectors, where the worker encoded them (encoder.image_batches_at_once)


def embed_images(
    sources: Iterable[ImageSource],
    encoder: Encoder,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    prefetch: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    vector_format: str = "base64",
    cache: "ImageVectorCache | None" = None,
    on_problem: ProblemHandler = raise_problem,
    progress: Progress | None = None,
) -> Iterator[Record]:
    """Yield one embedding record per readable image, in input order; report unreadable ones.

    Records carry the file's size, mtime and SHA-256, and ``taken_at`` and ``gps`` where the photo's EXIF
    holds them (``mmtools.images.photo_fields``); with a ``cache`` (mmtools.embed_cache), files whose
    content was encoded before by the same model are not decoded or encoded again. ``batch_size`` None:
    chosen from free GPU memory on CUDA (``mmtools.gpu``), CPU_IMAGE_BATCH on a CPU, 32 elsewhere.
    ``workers`` None: ``default_workers`` for where the model runs, or one per core where the encoder takes
    batches at once.
    """
    from mmtools import gpu

    # A model the cache has not needed yet is not loaded just to ask where it runs: re-runs over unchanged
    # files never load it (embed_cache.LazyEncoder); such a run decodes on the CPU.
    ready = getattr(encoder, "loaded", True)
    on_cpu = _model_on_cpu(encoder, ready)
    default_batch = CPU_IMAGE_BATCH if on_cpu else 32
    batch_size = batch_size or (gpu.auto_image_batch_size(encoder, default=default_batch) if ready
                                else default_batch)
    gpu_decoder = gpu.jpeg_decoder(encoder) if ready else None  # None unless CUDA and torchvision
    fit_in_memory = gpu.OomFallback()
    # On a CPU a runtime may take several batches at once (OnnxEncoder.image_batches_at_once): then each worker
    # decodes and encodes its batch, one worker per core unless ``workers`` says how many. (Asked of the
    # encoder in the worker, once loaded.)
    at_once = on_cpu and gpu_decoder is None
    if workers is None and at_once:
        from mmtools.models.runtime import physical_cores

        workers = max(default_workers(on_cpu), physical_cores())
    workers = workers or default_workers(on_cpu)
    prefetch = prefetch or workers + 1  # batches decoded ahead of the model
    pending: deque[Future[_DecodedBatch]] = deque()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmtools-decode")

    def finish(future: Future[_DecodedBatch]) -> Iterator[Record]:
        decoded = future.result()
        for problem in decoded.problems:
            on_problem(problem)
        if decoded.sources:
            fresh = iter(decoded.vectors if decoded.vectors is not None
                         else fit_in_memory(encoder.encode_image_batch, decoded.pixels)
                         if decoded.pixels is not None else ())
            vectors = [cached if cached is not None else next(fresh) for _facts, cached in decoded.known]
            if cache is not None:
                for source, (facts, cached), vector in zip(decoded.sources, decoded.known, vectors):
                    if cached is None:
                        cache.store(source, facts, vector)
                cache.commit()  # an interrupted run, started again, keeps what this batch did
            for source, (facts, _cached), vector in zip(decoded.sources, decoded.known, vectors):
                record = {**source.record, "id": source.id, **facts.fields(),
                          **embedding_fields(vector, encoder, "image", vector_format)}
                for name, value in facts.photo.items():  # EXIF's taken_at, gps; a record's own win
                    record.setdefault(name, value)
                yield record
        if progress:
            progress(len(decoded.sources) + len(decoded.problems))

    try:
        for batch in batched(sources, batch_size):
            pending.append(executor.submit(_decode_batch, batch, encoder, max_pixels, cache, gpu_decoder,
                                           at_once))
            if len(pending) > prefetch:
                yield from finish(pending.popleft())
        while pending:
            yield from finish(pending.popleft())
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _decode_batch(batch: list[ImageSource], encoder: Encoder, max_pixels: int,
                  cache: "ImageVectorCache | None" = None, gpu_decoder: Any = None,
                  may_encode: bool = False) -> _DecodedBatch:
    """Decode and preprocess a batch (in a worker thread). Files the cache knows are not decoded; on CUDA the
    pixels are pinned and already on their way to the GPU. ``may_encode``: encode it here too where the
    encoder takes several batches at once."""
    from mmtools import gpu
    from mmtools.embed_cache import look_up

    looked_up: list[tuple[ImageSource, Any, Any]] = []
    problems: list[Problem] = []
    for source in batch:
        try:
            looked_up.append((source, *look_up(source, cache)))
        except ImageDecodeError as exc:
            problems.append(Problem(source.where, str(exc)))
    todo = [source for source, _facts, cached in looked_up if cached is None]
    if not todo:
        decoded = _DecodedBatch([], None)
    elif gpu_decoder is not None:
        decoded = _DecodedBatch(*gpu.decode_on_gpu(gpu_decoder, todo, max_pixels,
                                                   lambda rest: _decode_on_cpu(rest, encoder, max_pixels)))
    else:
        decoded = _decode_on_cpu(todo, encoder, max_pixels)
        decoded.pixels = gpu.stage(decoded.pixels, encoder.device) if decoded.sources else None
    # Pixels follow the decoded sources in input order, which is the order of the uncached entries kept.
    decoded_ids = {id(source) for source in decoded.sources}
    kept = [(s, facts, cached) for s, facts, cached in looked_up if cached is not None or id(s) in decoded_ids]
    vectors = None
    if may_encode and decoded.pixels is not None and encoder.image_batches_at_once > 1:
        vectors = encoder.encode_image_batch_alone(decoded.pixels)
    return _DecodedBatch([s for s, _, _ in kept], decoded.pixels, problems + decoded.problems,
                         [(facts, cached) for _, facts, cached in kept], vectors)


def _decode_on_cpu(batch: list[ImageSource], encoder: Encoder, max_pixels: int) -> _DecodedBatch:
    good: list[ImageSource] = []
    images: list[Any] = []
    problems: list[Problem] = []
    for source, image in decode_sources(batch, max_pixels=max_pixels, draft_size=encoder.image_size):
        if isinstance(image, ImageDecodeError):
            problems.append(Problem(source.where, str(image)))
        else:
            images.append(image)
            good.append(source)
    if not images:
        return _DecodedBatch([], None, problems)
    try:
        return _DecodedBatch(good, encoder.preprocess_images(images), problems)
    except Exception:
        # One odd image (e.g. 1×1 pixel) can fail the processor for the whole batch: find it, keep the rest.
        return _preprocess_one_by_one(good, images, encoder, problems)


def _preprocess_one_by_one(sources: list[ImageSource], images: list[Any], encoder: Encoder,
                           problems: list[Problem]) -> _DecodedBatch:
    good, kept = [], []
    for source, image in zip(sources, images):
        try:
            encoder.preprocess_images([image])
        except Exception as exc:
            problems.append(Problem(source.where, f"the model's image processor rejected it ({exc})"))
            continue
        good.append(source)
        kept.append(image)
    pixels = encoder.preprocess_images(kept) if kept else None
    return _DecodedBatch(good, pixels, problems)


# ------------------------------------------------------------------------------------------------- texts


@dataclass
class TextItem:
    id: str
    text: str
    record: Record = field(default_factory=dict)


def text_items_from_records(records: Iterable[Record], field_name: str = "text",
                            on_problem: ProblemHandler = raise_problem) -> Iterator[TextItem]:
    """Texts from records' ``field_name``. A list of strings gives one item per string, with id ``ID#N``."""
    for number, record in enumerate(records, 1):
        value = record.get(field_name)
        texts = field_texts(value)
        rid = record_id(record, "")
        if texts is None:
            reason = "record has no {!r} field" if value is None else "field {!r} is not text (or a list of texts)"
            on_problem(Problem(rid or f"record {number}", reason.format(field_name) + ", skipped"))
        elif isinstance(value, str):
            yield TextItem(rid or text_id(value), value, record)
        else:
            base = rid or text_id(texts[0])
            for i, text in enumerate(texts):
                yield TextItem(f"{base}#{i}", text, {**record, field_name: text, "source_id": base})


def text_items_from_lines(lines: Iterable[tuple[str, str]], field_name: str = "text") -> Iterator[TextItem]:
    """Texts from ``(where, line)`` pairs (records.read_text_lines); ids are stable hashes of the text."""
    for _where, line in lines:
        yield TextItem(text_id(line), line, {field_name: line})


def embed_texts(
    items: Iterable[TextItem],
    encoder: Encoder,
    *,
    batch_size: int = 64,
    vector_format: str = "base64",
    on_problem: ProblemHandler = raise_problem,
    progress: Progress | None = None,
) -> Iterator[Record]:
    """Yield one embedding record per non-empty text, in input order.

    Texts are padded to the longest in their batch, so a window of SORT_WINDOW batches is sorted by length
    before batching (short texts no longer pay for a long neighbour's padding) and the records are put back
    in input order after. Models that pad every text to a fixed length (SigLIP) gain nothing and skip it.
    """
    truncation = TruncationReport(encoder.text_rules.max_length)
    sort = getattr(encoder.text_rules, "padding", None) != "max_length"
    for window in batched(_non_empty(items, on_problem), batch_size * SORT_WINDOW if sort else batch_size):
        order = sorted(range(len(window)), key=lambda i: len(window[i].text)) if sort else range(len(window))
        records: list[Record | None] = [None] * len(window)
        for positions in batched(order, batch_size):
            batch = [window[i] for i in positions]
            vectors = encoder.encode_texts([item.text for item in batch],
                                           on_truncated=lambda i, b=batch: truncation.add(b[i].id))
            for position, item, vector in zip(positions, batch, vectors):
                records[position] = {**item.record, "id": item.id,
                                     **embedding_fields(vector, encoder, "text", vector_format)}
            if progress:
                progress(len(batch))
        yield from records  # type: ignore[misc]
    truncation.finish()


def _non_empty(items: Iterable[TextItem], on_problem: ProblemHandler) -> Iterator[TextItem]:
    from mmtools.text.prepare import has_letters_or_digits

    for item in items:
        if not item.text.strip():
            on_problem(Problem(item.id, "text is empty, skipped"))
            continue
        if not has_letters_or_digits(item.text):
            log.warning("%s: text has no letters or digits (only punctuation, symbols or emoji); "
                        "embedded anyway", item.id)
        yield item


class TruncationReport:
    """Names the first truncated text, then counts the rest: one warning per run, not one per text."""

    def __init__(self, max_length: int):
        self.max_length = max_length
        self.count = 0

    def add(self, item_id: str) -> None:
        self.count += 1
        if self.count == 1:
            log.warning("%s: text is longer than the model's %d tokens and was truncated "
                        "(further truncations are counted, not listed)", item_id, self.max_length)

    def finish(self) -> None:
        if self.count > 1:
            log.warning("%d texts in all were truncated to %d tokens", self.count, self.max_length)


def encode_query_texts(encoder: Encoder, texts: Sequence[str]) -> Any:
    """Vectors for a few query texts (search, tag): same rules as embed-texts, truncation logged."""
    truncation = TruncationReport(encoder.text_rules.max_length)
    vectors = encoder.encode_texts(list(texts), on_truncated=lambda i: truncation.add(repr(texts[i][:40])))
    truncation.finish()
    return vectors
