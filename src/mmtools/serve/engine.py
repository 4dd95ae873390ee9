"""The warm engine behind both doors of the server: models, opened indexes, and the work they do.

Models are retrieval encoders or trained taggers, one copy each, wrapped so that concurrent requests share
forward passes (``MicroBatcher``). Both follow what is on disk: a model retrained in place is loaded again
(its files' stat is looked at, at most every ``MODEL_CHECK_S`` seconds, and at once when an index names a
fingerprint the loaded copy lacks), and an index is opened again when its files change (a nightly
``mmtools index`` run replaces them atomically), so a warm server answers as a fresh process would.

Loading a model or opening an index holds up only the requests that need that model or index: the engine's
own lock guards its tables, never a load. Searching an index is serialised by a lock per index; encoding is
not under it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MethodType
from typing import Any, Iterable, Iterator

from collections import OrderedDict

from mmtools.errors import IndexFileError, ModelError, ProblemHandler, UsageError, raise_problem
from mmtools.index.backends import resolve_location, short_name
from mmtools.records import Record
from mmtools.search import Query
from mmtools.serve.batcher import MicroBatcher

log = logging.getLogger("mmtools")

REOPEN_RETRY_S = 0.05  # an index being replaced has its two files renamed one after the other
MODEL_CHECK_S = 1.0  # how stale a served model may be after it was retrained in place
LABEL_CACHE_LABELS = 20_000  # zero-shot label vectors kept in memory for web requests (a few tens of MB)
MAX_OPEN_INDEXES = 32  # indexes kept open (those named at start-up always are); the least recently used go
MAX_MODELS = 8  # models kept loaded (those named at start-up, and their indexes', always are)
RETRIEVAL, TAGGER = "retrieval", "tagger"


LabelledQuery = Query  # a query whose ``shown`` label the client fixed (Query.shown)


class BatchedEncoder:
    """An encoder whose text and image encodings go through micro-batchers; everything else is delegated."""

    def __init__(self, encoder: Any, max_batch: int = 64):
        self.inner = encoder
        self.max_batch = max_batch
        self.texts = MicroBatcher(self._encode_texts, max_batch, name="texts")
        self.images = MicroBatcher(self._encode_images, max_batch, name="images")
        self._variants: dict[int, BatchedEncoder] = {}
        self._variants_lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def for_index(self, info: Any, sample: Any = None) -> "BatchedEncoder":
        """The towers the model picks for this index (mmtools.models.agreement), batched like this one."""
        choose = getattr(self.inner, "for_index", None)
        chosen = choose(info, sample) if choose is not None else self.inner
        if chosen is self.inner:
            return self
        with self._variants_lock:
            wrapped = self._variants.get(id(chosen))
            if wrapped is None or wrapped.inner is not chosen:
                wrapped = self._variants[id(chosen)] = BatchedEncoder(chosen, self.max_batch)
            return wrapped

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


class BatchedTagger:
    """A trained tagger (mmtools.tag.trained.TrainedTagger) whose forward passes go through a micro-batcher;
    everything else is delegated, so ``mmtools.tag.trained.tag_records`` takes it as it is."""

    def __init__(self, tagger: Any, max_batch: int = 64):
        self.inner = tagger
        self.passes = MicroBatcher(self._probabilities, max_batch, name="tagger")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def probabilities(self, examples):
        import numpy as np

        rows = self.passes(list(examples))
        return np.stack(rows) if rows else np.zeros((0, len(self.inner.labels)), np.float32)

    def _probabilities(self, examples: list[Any]) -> list[Any]:
        return list(self.inner.probabilities(examples))

    def close(self) -> None:
        self.passes.close()


@dataclass
class ServedModel:
    """A loaded model: ``model`` is a BatchedEncoder (kind "retrieval") or a BatchedTagger ("tagger")."""

    name: str
    kind: str
    model: Any
    fingerprint: str
    signature: tuple | None  # the stat of the files that decide it; None: it cannot change in place
    checked: float = 0.0  # time.monotonic() of the last look at the files


def _model_signature(ref: Any) -> tuple | None:
    """What changes when a local model is written again: its deciding files' inode, mtime and size."""
    if not ref.is_local:
        return None  # a hub snapshot is never rewritten in place
    from mmtools.models.fingerprint import model_files

    result = []
    for file in model_files(Path(ref.location)):
        try:
            info = os.stat(file)
        except FileNotFoundError:
            continue
        result.append((str(file), info.st_ino, info.st_mtime_ns, info.st_size))
    return tuple(result)


class _LockedReader:
    """A reader whose methods (search, get, and the ranking channels' look-ups) each run under the index's
    lock, and whose iterators (scan, ids, stored_texts, export) take it for each step: the SQLite connection
    is shared between threads, so no call on it, a cursor's next row included, runs outside the lock. Plain
    attributes (info) are read as they are."""

    def __init__(self, reader: Any, lock: threading.Lock):
        self._reader = reader
        self._lock = lock
        self.info = reader.info

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._reader, name)
        if not isinstance(value, MethodType):  # plain values, and objects such as the SQLite connection
            return value

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                result = value(*args, **kwargs)
            if isinstance(result, Iterator) and not isinstance(result, (list, tuple, dict)):
                return self._stepped(result)
            return result
        return locked

    def _stepped(self, iterator: Iterator[Any]) -> Iterator[Any]:
        try:
            while True:
                with self._lock:
                    try:
                        item = next(iterator)
                    except StopIteration:
                        return
                yield item
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                with self._lock:
                    close()


@dataclass
class _OpenIndex:
    reader: Any
    signature: tuple
    lock: threading.Lock
    searches: int = 0
    users: int = 0  # requests using it now
    retired: bool = False  # a newer copy replaced it: closed once its last user is done
    closed: bool = False
    selections: Any = None  # what --where conditions selected in this copy (filters.SelectionCache)


def _close_reader(entry: _OpenIndex) -> None:
    with entry.lock:
        entry.reader.close()


class Engine:
    """Models and indexes kept warm; search, embedding and tagging with them."""

    def __init__(self, *, device: str | None = None, models: Iterable[str] = (), indexes: Iterable[str] = (),
                 max_batch: int = 64, runtime: str | None = None, max_pixels: int | None = None):
        from mmtools.images import DEFAULT_MAX_PIXELS

        self.device = device
        self.runtime = runtime  # mmtools.models.runtime: auto, torch, onnx, onnx-fp32
        self.max_batch = max_batch
        self.max_pixels = max_pixels or DEFAULT_MAX_PIXELS  # for every image a request sends (see picture)
        self.started = time.time()
        self._lock = threading.Lock()  # guards the tables below; never held while loading or opening
        # Bounded: any client may name an index or model; the least recently used beyond the bound are let go
        # (an index closed once its last search ends). Those named at start-up are kept.
        self._models: OrderedDict[str, ServedModel] = OrderedDict()
        self._model_locks: dict[str, threading.Lock] = {}
        self._indexes: OrderedDict[str, _OpenIndex] = OrderedDict()
        self._index_locks: dict[str, threading.Lock] = {}
        self._label_vectors: OrderedDict[tuple, Any] = OrderedDict()
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
        from mmtools.models.agreement import index_sample

        for path in sorted(set(self.index_names.values())):
            with self.reader(path) as reader:
                # the towers for this index are chosen (and an int8 query tower checked on it) now, not on
                # the first request
                self.encoder(reader.info.model).for_index(reader.info, lambda: index_sample(reader))
        for model in self.model_names:
            self.model(model)
        # The accent restorers of the indexes (a few seconds, mostly the general lexicon) are built aside, so
        # the port opens meanwhile and the first unaccented query finds them ready.
        threading.Thread(target=self._build_restorers, name="mmtools-restorers", daemon=True).start()

    def _build_restorers(self) -> None:
        from mmtools.text.restore import load_restorer

        for path in sorted(set(self.index_names.values())):
            entry = self._indexes.get(path)
            try:
                load_restorer(path, entry.signature if entry is not None else None)
            except Exception as exc:  # noqa: BLE001 - a query will meet the same error, and say it
                log.debug("accent restorer for %s not built: %s", path, exc)

    def model(self, name: str | None, *, expect: str | None = None) -> ServedModel:
        """The loaded model ``name`` (a retrieval model or a tagger), loaded first if it is not yet, or again
        if its files changed. ``expect``: a fingerprint the caller needs (an index's), which makes it look
        at the files now rather than within ``MODEL_CHECK_S``."""
        from mmtools.models import resolve_model

        ref = resolve_model(name)
        with self._lock:
            served = self._models.get(ref.name)
            if served is not None:
                self._models.move_to_end(ref.name)
            loading = self._model_locks.setdefault(ref.name, threading.Lock())
        if served is not None and self._current(served, expect):
            return served
        with loading:  # one load per model at a time; other models' requests go on meanwhile
            with self._lock:
                served = self._models.get(ref.name)
            if served is not None and self._current(served, expect):
                return served  # looked at (or loaded) by another request while this one waited
            signature = _model_signature(ref)
            if served is not None and signature == served.signature:
                served.checked = time.monotonic()
                return served
            fresh = self._load(name, ref, signature)
            with self._lock:
                self._models[ref.name] = fresh
                self._models.move_to_end(ref.name)
                self._evict_models()
        if served is not None:  # the old copy is not closed: a request may still be using it
            log.info("model %s changed on disk; loaded again (fingerprint %s)", ref.name, fresh.fingerprint)
        return fresh

    def _kept_models(self) -> set[str]:
        """The models never let go: those named at start-up and those of the indexes named at start-up."""
        from mmtools.models import resolve_model

        kept = set()
        for given in self.model_names:
            try:
                kept.add(resolve_model(given).name)
            except ModelError:
                pass
        for path in set(self.index_names.values()):
            entry = self._indexes.get(path)
            if entry is not None:
                kept.add(entry.reader.info.model)
                try:
                    kept.add(resolve_model(entry.reader.info.model).name)
                except ModelError:
                    pass
        return kept

    def _evict_models(self) -> None:
        """Under the engine's lock: the least recently used models beyond MAX_MODELS let go (a request still
        holding one finishes with it)."""
        if len(self._models) <= MAX_MODELS:
            return
        kept = self._kept_models()
        for name in list(self._models):
            if len(self._models) <= MAX_MODELS:
                break
            if name not in kept:
                log.info("model %s let go (more than %d loaded)", name, MAX_MODELS)
                del self._models[name]
                self._model_locks.pop(name, None)

    @staticmethod
    def _current(served: ServedModel, expect: str | None) -> bool:
        if expect is not None and expect != served.fingerprint:
            return False
        return time.monotonic() - served.checked < MODEL_CHECK_S

    def _load(self, name: str | None, ref: Any, signature: tuple | None) -> ServedModel:
        if ref.family == "mmtools-tagger":  # mmtools.tag.towers.FAMILY, not imported: it imports torch
            from mmtools.models.fingerprint import model_fingerprint
            from mmtools.tag.towers import FAMILY as TAGGER_FAMILY
            from mmtools.tag.trained import TrainedTagger

            tagger = TrainedTagger(ref.location, self.device or os.environ.get("MMTOOLS_DEVICE"))
            return ServedModel(ref.name, TAGGER, BatchedTagger(tagger, self.max_batch),
                               model_fingerprint(ref.location, family=TAGGER_FAMILY), signature, time.monotonic())
        from mmtools.models import ModelCache

        # A cache of its own: the process-wide one would hand back the copy loaded before a retraining.
        inner = ModelCache().get(name, self.device or os.environ.get("MMTOOLS_DEVICE"), self.runtime)
        fingerprint = getattr(inner, "fingerprint", "") or inner.name  # computed now, for the files just read
        return ServedModel(inner.name, RETRIEVAL, BatchedEncoder(inner, self.max_batch), fingerprint, signature,
                           time.monotonic())

    def encoder(self, model: str | None, *, expect: str | None = None) -> BatchedEncoder:
        served = self.model(model, expect=expect)
        if served.kind != RETRIEVAL:
            raise ModelError(f"model {served.name} is a trained tagger, not a retrieval model",
                             hint="tag with it (POST /tag, /api/extract-features, mmtools tag); embed and search "
                                  "with a retrieval model")
        return served.model

    def tagger(self, model: str | None) -> BatchedTagger:
        served = self.model(model)
        if served.kind != TAGGER:
            raise ModelError(f"model {served.name} is a retrieval model, not a trained tagger",
                             hint="zero-shot tagging with it needs candidate labels")
        return served.model

    @contextmanager
    def reader(self, path: str | os.PathLike[str]) -> Iterator[_LockedReader]:
        """The open index at ``path``, opened again first if its files changed since it was opened."""
        with self._opened(path) as entry:
            yield _LockedReader(entry.reader, entry.lock)

    @contextmanager
    def _opened(self, path: str | os.PathLike[str]) -> Iterator[_OpenIndex]:
        entry = self._take(resolve_location(path))
        try:
            yield entry
        finally:
            self._give_back(entry)

    def _take(self, path: str) -> _OpenIndex:
        while True:
            entry = self._open_index(path)
            with self._lock:
                if not entry.closed:  # else it was replaced and closed meanwhile: take the new one
                    entry.users += 1
                    entry.searches += 1
                    if path in self._indexes and self._indexes[path] is entry:
                        self._indexes.move_to_end(path)
                    return entry

    def _give_back(self, entry: _OpenIndex) -> None:
        with self._lock:
            entry.users -= 1
            done = entry.retired and entry.users == 0 and not entry.closed
            entry.closed |= done
        if done:
            _close_reader(entry)

    def _open_index(self, path: str) -> _OpenIndex:
        from mmtools.index.backends import open_reader, signature as index_signature

        known = self._indexes.get(path)
        signature = index_signature(path, known.reader if known else None)
        with self._lock:
            entry = self._indexes.get(path)
            opening = self._index_locks.setdefault(path, threading.Lock())
        if entry is not None and entry.signature == signature:
            return entry
        if entry is not None and not opening.acquire(blocking=False):
            return entry  # another request is opening the new copy: answer from this one until it is ready
        if entry is None:
            opening.acquire()
        try:
            with self._lock:
                entry = self._indexes.get(path)
            signature = index_signature(path, entry.reader if entry else None)
            if entry is not None and entry.signature == signature:
                return entry  # opened by the request this one waited for
            try:
                reader = open_reader(path)
            except IndexFileError:
                time.sleep(REOPEN_RETRY_S)  # caught between the renames of an update: look again
                signature = index_signature(path)
                reader = open_reader(path)
            if signature is None:  # a Milvus collection: the reader knows what it opened
                signature = index_signature(path, reader)
            from mmtools.index.filters import SelectionCache

            fresh = _OpenIndex(reader, signature, threading.Lock(), selections=SelectionCache())
            with self._lock:
                old = self._indexes.get(path)
                self._indexes[path] = fresh
                self._indexes.move_to_end(path)
                done = old is not None and old.users == 0 and not old.closed
                if old is not None:
                    old.retired = True  # searches still using it finish on it; the last one closes it
                    old.closed |= done
                evicted = self._evict_indexes()
        finally:
            opening.release()
        if done:
            _close_reader(old)  # a Milvus reader holds a connection (and a Milvus Lite file): let it go now
        for gone in evicted:
            _close_reader(gone)
        if entry is not None:
            log.info("index %s changed on disk; opened again (%d records)", path, reader.info.count)
        return fresh

    def _evict_indexes(self) -> list[_OpenIndex]:
        """Under the engine's lock: the least recently used indexes beyond MAX_OPEN_INDEXES (not those named at
        start-up) let go; those no search uses now are returned, to be closed outside the lock."""
        closing: list[_OpenIndex] = []
        kept = set(self.index_names.values())
        for path in list(self._indexes):
            if len(self._indexes) <= MAX_OPEN_INDEXES:
                break
            if path in kept:
                continue
            entry = self._indexes.pop(path)
            self._index_locks.pop(path, None)
            entry.retired = True
            if entry.users == 0 and not entry.closed:
                entry.closed = True
                closing.append(entry)
        return closing

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

    def _served_names(self) -> list[str]:
        """The models named at start-up, then those of the named indexes, as they were named."""
        names = list(self.model_names)
        for path in sorted(set(self.index_names.values())):
            with self.reader(path) as reader:
                names.append(reader.info.model)
        return list(dict.fromkeys(names))

    def served_model(self, name: str | None, kind: str = RETRIEVAL) -> str:
        """A model of ``kind`` this server may use for web requests: one named at start-up or one of its
        indexes'; the first such when ``name`` is empty."""
        from mmtools.models import resolve_model

        allowed = [candidate for candidate in self._served_names() if self.model(candidate).kind == kind]
        if not allowed:
            what = "trained tagger" if kind == TAGGER else "retrieval model"
            how = "--model TAGGER_DIR" if kind == TAGGER else "--model or --index"
            raise UsageError(f"this server has no {what}", hint=f"start it with {how}")
        if not name:
            return allowed[0]
        for candidate in allowed:
            if name == candidate or resolve_model(candidate).name == name:
                return candidate
        raise LookupError(f"model {name!r} is not served here as a {kind} model (served: {', '.join(allowed)})")

    def served_kind(self, name: str) -> str:
        """Whether the served model ``name`` is a retrieval model or a tagger (LookupError if not served)."""
        for kind in (RETRIEVAL, TAGGER):
            try:
                self.served_model(name, kind)
            except (LookupError, UsageError):
                continue
            return kind
        raise LookupError(f"model {name!r} is not served here (served: {', '.join(self._served_names())})")

    def picture(self, path: str, draft_size: int | None = None) -> Any:
        """An image a request sent, decoded under the server's pixel limit (ImageDecodeError otherwise)."""
        from mmtools.images import load_image

        return load_image(path, max_pixels=self.max_pixels, draft_size=draft_size)

    # -------------------------------------------------------------------------------------------- work
    def search(self, index: str | os.PathLike[str], queries: Iterable[Query], *, k: int = 10,
               min_score: float | None = None, check_model: str | None = None,
               on_problem: ProblemHandler = raise_problem, mode: str | None = None,
               where: Iterable[str] = (), restore: bool = True,
               on_none_selected: Any = None) -> Iterator[Record]:
        """Ready queries against one served index, planned as every search is (mmtools.search_plan): ``mode``
        vector|keyword|hybrid (None: the index's default), ``where`` conditions applied before ranking (a
        FilterError for one that does not parse), a query typed without accents restored (``restore``).
        ``on_none_selected()`` is called when no record meets the conditions. Paths are absolute."""
        from mmtools.search_plan import SearchRequest, plan_search

        request = SearchRequest(indexes=[str(index)], mode=mode, where=list(where), restore=restore,
                                model=check_model, k=k, min_score=min_score)
        with plan_search(request, EngineResources(self), on_problem=on_problem,
                         on_none_selected=(lambda _name, _where: on_none_selected())
                         if on_none_selected is not None else None) as plan:
            yield from plan.run(queries)

    def restorer(self, index: str | os.PathLike[str]) -> Any:
        """The accent restorer of ``index``'s own texts (built once per write of the index, and kept:
        mmtools.text.restore.load_restorer); the general one, said in the log, where they cannot be read."""
        from mmtools.search_plan import restorer_for

        location = resolve_location(index)
        entry = self._indexes.get(location)
        return restorer_for(location, entry.signature if entry is not None else None)

    def embed_texts(self, items: Iterable[Any], *, model: str | None, batch_size: int = 64,
                    vector_format: str = "base64", on_problem: ProblemHandler = raise_problem) -> Iterator[Record]:
        from mmtools.embed import embed_texts

        yield from embed_texts(items, self.encoder(model), batch_size=batch_size, vector_format=vector_format,
                               on_problem=on_problem)

    def embed_image(self, path: str, record: Record, *, model: str | None,
                    vector_format: str = "base64") -> Record:
        """One embedding record for one image file (raises ImageDecodeError for an unusable one)."""
        from mmtools.embed import embedding_fields

        encoder = self.encoder(model)
        vector = encoder.encode_images([self.picture(path, encoder.image_size)])[0]
        return {**record, **embedding_fields(vector, encoder, "image", vector_format)}

    def tag(self, labels: list[str], *, model: str | None, text: str | None = None, image: str | None = None,
            template: str | None = None, top_k: int | None = None,
            threshold: float | None = None) -> list[dict[str, Any]]:
        """Zero-shot tags, best first (every label unless ``top_k`` or ``threshold`` say otherwise): `mmtools
        tag`'s scoring (mmtools.tag.zero_shot), averaged over the text and the image when both are given."""
        import numpy as np

        from mmtools.tag.labels import Thresholds, select_tags
        from mmtools.tag.zero_shot import DEFAULT_TEMPLATES, check_templates, scoring_for

        if not labels:
            raise ValueError("no labels to score")
        if text is None and image is None:
            raise ValueError("nothing to tag: give a text, an image, or both")
        encoder = self.encoder(model)
        vectors = self._labels_for(encoder, labels, check_templates([template] if template else DEFAULT_TEMPLATES))
        scoring = scoring_for(encoder)
        scores = []
        if text is not None:
            scores.append(scoring.scores(encoder.encode_texts([text]) @ vectors.T, "text")[0])
        if image is not None:
            vector = encoder.encode_images([self.picture(image, encoder.image_size)])
            scores.append(scoring.scores(vector @ vectors.T, "image")[0])
        return select_tags(list(labels), np.mean(scores, axis=0), Thresholds(threshold), top_k)

    def _labels_for(self, encoder: BatchedEncoder, labels: list[str], templates: list[str]) -> Any:
        """Label vectors, kept in memory (bounded) rather than in the cache folder: anyone who can reach the
        HTTP port may send label lists, and each would otherwise leave a file behind."""
        from mmtools.tag.zero_shot import label_embeddings

        key = (getattr(encoder, "fingerprint", None) or encoder.name, tuple(labels), tuple(templates))
        with self._lock:
            vectors = self._label_vectors.get(key)
            if vectors is not None:
                self._label_vectors.move_to_end(key)
                return vectors
        vectors = label_embeddings(encoder, labels, templates, use_cache=False)
        with self._lock:
            self._label_vectors[key] = vectors
            while len(self._label_vectors) > 1 and \
                    sum(len(k[1]) for k in self._label_vectors) > LABEL_CACHE_LABELS:
                self._label_vectors.popitem(last=False)
        return vectors

    def tag_with_tagger(self, model: str | None, *, text: str | None = None, image: str | None = None,
                        top_k: int | None = None, threshold: float | None = None) -> tuple[list[dict], str]:
        """A trained tagger's tags for one text and/or image (over its tuned thresholds, or ``threshold``),
        and the mode it read them in: "text-only", "image-only" or "multimodal"."""
        from mmtools.tag.batches import Sample
        from mmtools.tag.labels import select_tags
        from mmtools.tag.trained import RETRAIN_HINT, describe_modalities, sample_mode

        tagger = self.tagger(model)
        spec = tagger.spec
        use_text = spec.uses_text and text is not None
        use_image = spec.uses_image and image is not None
        needs = f"tagger {tagger.name} reads {describe_modalities(spec)}"
        if not use_text and not use_image:
            raise UsageError(f"{needs}: give {'a text' if spec.uses_text else 'an image'}",
                             hint="send the text as 'text' (or 'description'), the photo as an 'image' upload")
        if spec.modality == "both" and not (use_text and use_image) and not spec.allows_one_modality:
            raise UsageError(f"{needs}, together: give {'an image' if use_text else 'a text'} too",
                             hint=RETRAIN_HINT)
        sample = Sample(id="request", text=tagger.batches.prepare_texts([text])[0] if use_text else None,
                        image=self.picture(image, tagger.batches.image_size) if use_image else None)
        row = tagger.probabilities([sample])[0]
        mode = sample_mode(sample)
        return select_tags(tagger.labels, row, tagger.effective_thresholds(threshold, mode=mode), top_k), mode

    def tag_records(self, records: Iterable[Record], *, model: str | None, labels: list[str] | None = None,
                    templates: list[str] | None = None, top_k: int | None = None, threshold: float | None = None,
                    per_label: dict[str, float] | None = None, text_fields: list[str] | None = None,
                    root: str | None = None, batch_size: int = 32, use_cache: bool = True,
                    on_problem: ProblemHandler = raise_problem) -> Iterator[Record]:
        """`mmtools tag` on a stream of records: with a trained tagger's labels, or zero-shot with ``labels``."""
        served = self.model(model)
        fields = text_fields or ["text"]
        if served.kind == TAGGER:
            if labels:
                raise UsageError(f"{served.name} is a trained tagger with its own labels")
            from mmtools.tag.trained import tag_records

            tagger = served.model
            return tag_records(records, tagger, threshold=threshold, per_label=per_label,
                               top_k=top_k, text_fields=fields, root=root, batch_size=batch_size,
                               on_problem=on_problem)
        if not labels:
            raise UsageError("zero-shot tagging needs a label list")
        from mmtools.tag.labels import Thresholds
        from mmtools.tag.zero_shot import DEFAULT_TEMPLATES, ZeroShotTagger, tag_records

        zero_shot = ZeroShotTagger(served.model, list(labels), templates=list(templates or DEFAULT_TEMPLATES),
                                   thresholds=Thresholds(threshold, per_label), top_k=5 if top_k is None else top_k,
                                   use_cache=use_cache)
        return tag_records(records, zero_shot, text_field=fields[0], root=root, batch_size=batch_size,
                           on_problem=on_problem)

    # ------------------------------------------------------------------------------------------ status
    def health(self) -> dict[str, Any]:
        """Status for GET /health and the socket's ping; looks at what is loaded, loads nothing."""
        from mmtools.models import resolve_model

        with self._lock:
            loaded = dict(self._models)
            opened = dict(self._indexes)
        models = {}
        for name, served in loaded.items():
            if served.kind == TAGGER:
                batcher = served.model.passes
                models[name] = {"kind": TAGGER, "device": getattr(served.model.inner, "device", None),
                                "fingerprint": served.fingerprint, "batches": batcher.batches,
                                "inputs": batcher.items}
            else:
                e = served.model
                models[name] = {"kind": RETRIEVAL, "device": getattr(e.inner, "device", None),
                                "runtime": getattr(e.inner, "runtime", None),
                                "fingerprint": served.fingerprint, "dim": e.inner.dim,
                                "text_batches": e.texts.batches, "texts": e.texts.items,
                                "image_batches": e.images.batches, "images": e.images.items}
        served_models: list[dict[str, Any]] = []
        names = list(self.model_names) + [opened[path].reader.info.model
                                          for path in sorted(set(self.index_names.values())) if path in opened]
        defaults: set[str] = set()
        for given in dict.fromkeys(names):
            try:
                entry = loaded.get(resolve_model(given).name)
            except ModelError:
                entry = None
            if entry is None:
                continue
            item: dict[str, Any] = {"name": given, "kind": entry.kind, "default": entry.kind not in defaults}
            defaults.add(entry.kind)
            if entry.kind == TAGGER:
                spec = entry.model.spec
                item.update(labels=list(entry.model.labels), modality=spec.modality,
                            fusion=spec.fusion if spec.modality == "both" else None)
            served_models.append(item)
        served_indexes = []
        for path in sorted(set(self.index_names.values())):
            entry = opened.get(path)
            if entry is not None:
                served_indexes.append({"name": short_name(path), "path": str(path), "model": entry.reader.info.model,
                                       "records": entry.reader.info.count, "default": path == self.default_index})
        indexes = {str(path): {"records": entry.reader.info.count, "model": entry.reader.info.model,
                               "kind": entry.reader.info.kind, "searches": entry.searches}
                   for path, entry in sorted(opened.items())}  # a stable order, whatever was used last
        from mmtools import __version__

        return {"status": "ok", "version": __version__, "pid": os.getpid(),
                "uptime_s": round(time.time() - self.started, 3), "model_loaded": bool(loaded),
                "served_models": served_models, "served_indexes": served_indexes,
                "models": models, "indexes": indexes}

    def close(self) -> None:
        with self._lock:
            for entry in self._indexes.values():
                entry.closed = True
                _close_reader(entry)
            self._indexes.clear()
            for served in self._models.values():
                served.model.close()
            self._models.clear()
            self._label_vectors.clear()


class EngineResources:
    """The warm server's indexes, models and restorers, for a search plan (mmtools.search_plan.Resources)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._selections: dict[str, Any] = {}

    @contextmanager
    def reader(self, location: str) -> Iterator[_LockedReader]:
        with self.engine._opened(location) as entry:
            self._selections[location] = entry.selections
            yield _LockedReader(entry.reader, entry.lock)

    def selections(self, location: str) -> Any:
        return self._selections.get(location)

    def model_loader(self, request: Any, fingerprint: str | None) -> Any:
        # By fingerprint: a model retrained in place (with the index rebuilt) is loaded again.
        return lambda name: self.engine.encoder(name, expect=fingerprint)

    def restorer(self, location: str) -> Any:
        return self.engine.restorer(location)

    def picture(self, path: str, draft_size: int | None) -> Any:
        return self.engine.picture(path, draft_size)
