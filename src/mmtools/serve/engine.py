"""The warm engine behind both doors of the server: models, opened indexes, and the work they do.

Models come from the process-wide cache (``mmtools.models.default_cache``), one copy each, wrapped so that
concurrent requests share forward passes (``MicroBatcher``). Indexes stay open, and are opened again when
their files change on disk (a nightly ``mmtools index`` run replaces them atomically), so a warm server never
answers from a stale index. Searching an index is serialised by a lock per index; encoding is not under it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Iterable, Iterator

from mmtools.errors import IndexFileError, ProblemHandler, UsageError, raise_problem
from mmtools.index.backends import resolve_location, short_name
from mmtools.records import Record
from mmtools.search import Query
from mmtools.serve.batcher import MicroBatcher

log = logging.getLogger("mmtools")

REOPEN_RETRY_S = 0.05  # an index being replaced has its two files renamed one after the other


@dataclass
class LabelledQuery(Query):
    """A query whose displayed ``query`` field is fixed by the client (its image path as the user typed it)."""

    shown: str = ""

    @property
    def label(self) -> str:
        return self.shown


def labelled(query: Query, cwd: str | None) -> LabelledQuery:
    """The query with its image path made absolute against the client's folder, showing what the client saw."""
    values = {f.name: getattr(query, f.name) for f in fields(Query)}
    if query.image is not None and cwd and not os.path.isabs(query.image):
        values["image"] = os.path.join(cwd, query.image)
    return LabelledQuery(**values, shown=query.label)


class BatchedEncoder:
    """An encoder whose text and image encodings go through micro-batchers; everything else is delegated."""

    def __init__(self, encoder: Any, max_batch: int = 64):
        self.inner = encoder
        self.texts = MicroBatcher(self._encode_texts, max_batch, name="texts")
        self.images = MicroBatcher(self._encode_images, max_batch, name="images")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode_texts(self, texts, on_truncated=None):
        import numpy as np

        results = self.texts(list(texts))
        if on_truncated is not None:
            for i, (_vector, truncated) in enumerate(results):
                if truncated:
                    on_truncated(i)
        return np.stack([vector for vector, _ in results]) if results else np.zeros((0, 0), np.float32)

    def encode_images(self, images):
        import numpy as np

        return np.stack(self.images(list(images)))

    def _encode_texts(self, texts: list[str]) -> list[tuple[Any, bool]]:
        truncated: set[int] = set()
        vectors = self.inner.encode_texts(texts, on_truncated=truncated.add)
        return [(vectors[i], i in truncated) for i in range(len(texts))]

    def _encode_images(self, images: list[Any]) -> list[Any]:
        return list(self.inner.encode_images(images))

    def close(self) -> None:
        self.texts.close()
        self.images.close()


class _LockedReader:
    """What ``mmtools.search.search`` needs of a reader (info, search), with the index's lock around search."""

    def __init__(self, reader: Any, lock: threading.Lock):
        self._reader = reader
        self._lock = lock
        self.info = reader.info

    def search(self, vectors: Any, k: int = 10, min_score: float | None = None):
        with self._lock:
            return self._reader.search(vectors, k=k, min_score=min_score)


@dataclass
class _OpenIndex:
    reader: Any
    signature: tuple
    lock: threading.Lock
    searches: int = 0


class Engine:
    """Models and indexes kept warm; ``search``, ``embed_texts``, ``embed_images`` and ``tag`` on them."""

    def __init__(self, *, device: str | None = None, models: Iterable[str] = (), indexes: Iterable[str] = (),
                 max_batch: int = 64):
        self.device = device
        self.max_batch = max_batch
        self.started = time.time()
        self._lock = threading.Lock()
        self._encoders: dict[str, BatchedEncoder] = {}
        self._indexes: dict[str, _OpenIndex] = {}
        self.index_names: dict[str, str] = {}  # the indexes named at start-up, by name and by location
        self.model_names: list[str] = list(models)
        for path in indexes:
            resolved = resolve_location(path)
            self.index_names.setdefault(short_name(resolved), resolved)
            self.index_names.setdefault(str(path), resolved)
            self.index_names.setdefault(resolved, resolved)
        self.default_index = resolve_location(next(iter(indexes))) if self.index_names else None

    # -------------------------------------------------------------------------------------- warm parts
    def warm_up(self) -> None:
        """Open the named indexes and load their models (and the named models) before the first request.

        FAISS is set to one thread: the server's requests are small and run side by side in their own
        threads, and FAISS's OpenMP threads spinning against each other cost a single query 5× its time on a
        busy 2-core machine (benchmarks/bench_serve.py).
        """
        try:
            import faiss

            faiss.omp_set_num_threads(1)
        except ImportError:
            pass
        for path in sorted(set(self.index_names.values())):
            with self.reader(path) as reader:
                self.encoder(reader.info.model)
        for model in self.model_names:
            self.encoder(model)

    def encoder(self, model: str | None) -> BatchedEncoder:
        from mmtools.models import load_encoder

        inner = load_encoder(model, self.device)
        with self._lock:
            wrapped = self._encoders.get(inner.name)
            if wrapped is None or wrapped.inner is not inner:
                wrapped = self._encoders[inner.name] = BatchedEncoder(inner, self.max_batch)
            return wrapped

    @contextmanager
    def reader(self, path: str | os.PathLike[str]) -> Iterator[_LockedReader]:
        """The open index at ``path``, opened again first if its files changed since it was opened."""
        entry = self._open_index(resolve_location(path))
        entry.searches += 1
        yield _LockedReader(entry.reader, entry.lock)

    def _open_index(self, path: str) -> _OpenIndex:
        from mmtools.index.backends import open_reader, signature as index_signature

        known = self._indexes.get(path)
        signature = index_signature(path, known.reader if known else None)
        with self._lock:
            entry = self._indexes.get(path)
            if entry is not None and entry.signature == signature:
                return entry
            try:
                reader = open_reader(path)
            except IndexFileError:
                time.sleep(REOPEN_RETRY_S)  # caught between the renames of an update: look again
                signature = index_signature(path)
                reader = open_reader(path)
            if signature is None:  # a Milvus collection: the reader knows what it opened
                signature = index_signature(path, reader)
            fresh = self._indexes[path] = _OpenIndex(reader, signature, threading.Lock())
        if entry is not None:
            # The old copy is not closed here: a search may still hold it; it closes when the last one drops it.
            log.info("index %s changed on disk; opened again (%d records)", path, reader.info.count)
        return fresh

    def named_index(self, name: str | None) -> str:
        """An index named at start-up (by name, path or file stem); the first one when ``name`` is empty."""
        if not name:
            if self.default_index is None:
                raise UsageError("this server was started without an index", hint="start it with --index FILE")
            return self.default_index
        found = self.index_names.get(name) or self.index_names.get(resolve_location(name))
        if found is None:
            raise LookupError(f"index {name!r} is not served here (served: {', '.join(self.served_indexes())})")
        return found

    def served_indexes(self) -> list[str]:
        return sorted({short_name(path) for path in self.index_names.values()})

    def served_model(self, name: str | None) -> str:
        """A model this server may load for web requests: one named at start-up or one of its indexes'."""
        allowed = list(self.model_names)
        for path in sorted(set(self.index_names.values())):
            with self.reader(path) as reader:
                allowed.append(reader.info.model)
        if not allowed:
            raise UsageError("this server has no model", hint="start it with --model or --index")
        if not name:
            return allowed[0]
        from mmtools.models import resolve_model

        for candidate in allowed:
            if name == candidate or resolve_model(candidate).name == name:
                return candidate
        raise LookupError(f"model {name!r} is not served here (served: {', '.join(dict.fromkeys(allowed))})")

    # -------------------------------------------------------------------------------------------- work
    def search(self, index: str | os.PathLike[str], queries: Iterable[Query], *, k: int = 10,
               min_score: float | None = None, check_model: str | None = None,
               on_problem: ProblemHandler = raise_problem) -> Iterator[Record]:
        from mmtools.search import query_encoder, search

        with self.reader(index) as reader:
            # The same model check as in-process search: by fingerprint, so a moved model directory works.
            get_encoder = query_encoder(reader.info, str(index), self.encoder, check_model)
            if check_model is not None:
                get_encoder()
            yield from search(reader, queries, get_encoder, k=k, min_score=min_score, on_problem=on_problem)

    def embed_texts(self, items: Iterable[Any], *, model: str | None, batch_size: int = 64,
                    vector_format: str = "base64", on_problem: ProblemHandler = raise_problem) -> Iterator[Record]:
        from mmtools.embed import embed_texts

        yield from embed_texts(items, self.encoder(model), batch_size=batch_size, vector_format=vector_format,
                               on_problem=on_problem)

    def embed_image(self, path: str, record: Record, *, model: str | None, vector_format: str = "base64",
                    max_pixels: int | None = None) -> Record:
        """One embedding record for one image file (raises ImageDecodeError for an unusable one)."""
        from mmtools.embed import embedding_fields
        from mmtools.images import DEFAULT_MAX_PIXELS, load_image

        encoder = self.encoder(model)
        image = load_image(path, max_pixels=max_pixels or DEFAULT_MAX_PIXELS, draft_size=encoder.image_size)
        vector = encoder.encode_images([image])[0]
        return {**record, **embedding_fields(vector, encoder, "image", vector_format)}

    def tag(self, labels: list[str], *, model: str | None, text: str | None = None, image: str | None = None,
            template: str | None = None, max_pixels: int | None = None) -> list[dict[str, Any]]:
        """Every label with its score, best first: `mmtools tag`'s zero-shot scoring (mmtools.tag.zero_shot),
        averaged over the text and the image when both are given."""
        import numpy as np

        from mmtools.images import DEFAULT_MAX_PIXELS, load_image
        from mmtools.tag.labels import Thresholds, select_tags
        from mmtools.tag.zero_shot import DEFAULT_TEMPLATES, ZeroShotTagger

        if not labels:
            raise ValueError("no labels to score")
        if text is None and image is None:
            raise ValueError("nothing to tag: give a text, an image, or both")
        encoder = self.encoder(model)
        tagger = ZeroShotTagger(encoder, list(labels), [template] if template else list(DEFAULT_TEMPLATES),
                                top_k=None)
        scores = []
        if text is not None:
            scores.append(tagger.scoring.scores(encoder.encode_texts([text]) @ tagger.label_vectors.T, "text")[0])
        if image is not None:
            picture = load_image(image, max_pixels=max_pixels or DEFAULT_MAX_PIXELS, draft_size=encoder.image_size)
            vector = encoder.encode_images([picture])
            scores.append(tagger.scoring.scores(vector @ tagger.label_vectors.T, "image")[0])
        return select_tags(tagger.labels, np.mean(scores, axis=0), Thresholds(), None)

    # ------------------------------------------------------------------------------------------ status
    def health(self) -> dict[str, Any]:
        with self._lock:
            models = {name: {"device": getattr(e.inner, "device", None), "dim": e.inner.dim,
                             "text_batches": e.texts.batches, "texts": e.texts.items,
                             "image_batches": e.images.batches, "images": e.images.items}
                      for name, e in self._encoders.items()}
            indexes = {str(path): {"records": entry.reader.info.count, "model": entry.reader.info.model,
                                   "kind": entry.reader.info.kind, "searches": entry.searches}
                       for path, entry in self._indexes.items()}
        from mmtools import __version__

        return {"status": "ok", "version": __version__, "pid": os.getpid(),
                "uptime_s": round(time.time() - self.started, 3), "models": models, "indexes": indexes}

    def close(self) -> None:
        with self._lock:
            for entry in self._indexes.values():
                with entry.lock:
                    entry.reader.close()
            self._indexes.clear()
            for encoder in self._encoders.values():
                encoder.close()
            self._encoders.clear()
