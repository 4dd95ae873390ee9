"""Text and image queries against an index, encoded with the model the index was built with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from mmtools.embed import batched
from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.images import ImageDecodeError, load_image
from mmtools.errors import IndexFileError
from mmtools.index.store import IndexInfo, IndexReader, model_mismatch, models_match
from mmtools.models.encoder import Encoder
from mmtools.models.query_cache import default_query_cache
from mmtools.records import EMBEDDING, EMBEDDING_FINGERPRINT, EMBEDDING_MODEL, Record, decode_vector, record_id

if TYPE_CHECKING:
    from mmtools.index.filters import Selection

HIT_FIELDS = ("query_id", "query", "query_restored", "rank", "score", "matched", "snippet")


@dataclass
class Query:
    """One query: a text, an image path, or a ready vector (from an embedding record)."""

    id: str
    text: str | None = None
    image: str | None = None
    vector: Any = None
    model: str | None = None  # the model a ready vector came from
    fingerprint: str | None = None  # ... and its fingerprint
    record: Record = field(default_factory=dict)
    restored: str | None = None  # the text with its accents put back, when it was typed without

    @property
    def label(self) -> str:
        return self.text if self.text is not None else self.image or self.id


def queries_from_records(records: Iterable[Record], field_name: str = "text",
                         on_problem: ProblemHandler = raise_problem) -> Iterator[Query]:
    """Records become queries: an ``embedding`` is used as is, else the text field, else ``path`` as an image."""
    for number, record in enumerate(records, 1):
        qid = record_id(record, f"q{number}")
        if EMBEDDING in record:
            try:
                vector = decode_vector(record[EMBEDDING])
            except ValueError as exc:
                on_problem(Problem(qid, f"{exc}, skipped"))
                continue
            label = record.get(field_name) or record.get("path") or qid
            fingerprint = record.get(EMBEDDING_FINGERPRINT)
            yield Query(qid, text=label if isinstance(label, str) else qid, vector=vector,
                        model=record.get(EMBEDDING_MODEL),
                        fingerprint=fingerprint if isinstance(fingerprint, str) else None, record=record)
        elif isinstance(record.get(field_name), str):
            yield Query(qid, text=record[field_name], record=record)
        elif isinstance(record.get("path"), str):
            yield Query(qid, image=record["path"], record=record)
        else:
            on_problem(Problem(qid, f"query record has no {field_name!r}, 'path' or 'embedding' field, skipped"))


def query_encoder(info: IndexInfo, where: str, load: Callable[[str], Encoder],
                  model: str | None = None) -> Callable[[], Encoder]:
    """A loader (called once, when a query needs encoding) for the model the index was built with.

    ``model`` names it again, e.g. where the directory has moved: it is used when its fingerprint is the
    index's (or, for an index without one, when its name is). Either way the loaded model's fingerprint
    must still be the index's, so a model retrained in place is refused rather than silently mixed.
    The encoder picks the towers that made the index's vectors (``Encoder.for_index``: an int8-embedded
    index has a fingerprint of its own).
    """
    from mmtools.models import resolve_model

    name = info.model if model is None else resolve_model(model).name
    if name != info.model and not info.fingerprint:
        raise _mismatch(where, info, name)
    loaded: list[Encoder] = []

    def get() -> Encoder:
        if not loaded:
            encoder = load(name)
            choose = getattr(encoder, "for_index", None)
            encoder = choose(info) if choose is not None else encoder
            fingerprint = getattr(encoder, "fingerprint", "") or None
            if not models_match(info.model, info.fingerprint, encoder.name, fingerprint):
                raise _mismatch(where, info, encoder.name, fingerprint)
            loaded.append(encoder)
        return loaded[0]
    return get


def _mismatch(where: str, info: IndexInfo, name: str, fingerprint: str | None = None) -> IndexFileError:
    if name == info.model:
        return IndexFileError(f"index {where}: {model_mismatch(info.model, info.fingerprint, name, fingerprint)}",
                              hint="rebuild the index with the model as it is now (mmtools index --rebuild)")
    return IndexFileError(f"index {where} was built with model {info.model}; the query model is {name}",
                          hint="leave out --model to use the index's model, or rebuild the index with the new model")


def search(
    reader: IndexReader,
    queries: Iterable[Query],
    get_encoder: Callable[[], Encoder],
    *,
    k: int = 10,
    min_score: float | None = None,
    batch_size: int = 64,
    on_problem: ProblemHandler = raise_problem,
    mode: str = "vector",
    among: "Selection | None" = None,
    weights: list[float] | None = None,
    restore: Callable[[str], str] | None = None,
) -> Iterator[Record]:
    """Yield one record per hit: query_id, query, rank, score, then the stored record's fields, with ``path``
    made to open from the current folder (absolute, from the index's root or the record's absolute id).

    ``mode`` names the ranking channels (``mmtools.ranking``: vector, keyword or hybrid); keyword and
    hybrid hits also say which channels found them (``matched``) and, where the words matched, a
    ``snippet``. ``among``: only these records (a ``--where`` selection). ``weights``: per channel, for
    weighted score fusion instead of reciprocal ranks. ``restore``: puts accents back into a text typed
    without them, for the vector channel (reported as ``query_restored``). ``get_encoder`` is called only
    if some query needs encoding (ready vectors need no model; keyword search none at all). The encoder
    picks its towers for this index (``Encoder.for_index``): with ONNX Runtime, the int8 text tower where it
    was measured to agree with fp32 on a sample of this index's vectors.
    """
    from mmtools.ranking import channels_for, fuse

    get_encoder = _towers_for(reader, get_encoder)

    channels = channels_for(mode, reader, get_encoder, min_score=min_score, on_problem=on_problem)
    names = [channel.name for channel in channels]
    located = getattr(reader, "hit_path", None)  # a FAISS index knows its root; a Milvus one holds absolute ids
    fetch = k if len(channels) == 1 else max(4 * k, 50)  # so a hit one channel ranks lower meets the other's
    for batch in batched(queries, batch_size):
        if restore is not None and "vector" in names:
            batch = [_restored(query, restore) for query in batch]
        results = [channel.rank(batch, fetch, among) for channel in channels]
        for i, query in enumerate(batch):
            lists = [result[i] for result in results]
            if all(found is None for found in lists):
                continue
            extra = {"query_restored": query.restored} if query.restored is not None else {}
            for rank, (score, hit, matched) in enumerate(fuse(lists, names, k, weights), 1):
                stored = {key: value for key, value in hit.record.items() if key not in HIT_FIELDS}
                where = located(hit.id, hit.record) if located is not None else None
                if where is not None:  # where the file opens from here (the stored path may be relative)
                    stored["path"] = where
                found_by = {} if mode == "vector" else {"matched": matched, **(
                    {"snippet": hit.snippet} if hit.snippet is not None else {})}
                yield {"query_id": query.id, "query": query.label, **extra, "rank": rank,
                       "score": round(score, 6), **stored, "id": hit.id, **found_by}


def _restored(query: Query, restore: Callable[[str], str]) -> Query:
    from dataclasses import replace

    from mmtools.text.accents import has_accents

    if query.vector is not None or query.text is None or has_accents(query.text):
        return query
    return replace(query, restored=restore(query.text))


def _towers_for(reader: IndexReader, get_encoder: Callable[[], Encoder]) -> Callable[[], Encoder]:
    from mmtools.models.agreement import index_sample

    chosen: list[Encoder] = []

    def get() -> Encoder:
        if not chosen:
            encoder = get_encoder()
            choose = getattr(encoder, "for_index", None)
            chosen.append(choose(reader.info, lambda: index_sample(reader)) if choose is not None else encoder)
        return chosen[0]
    return get


def _vectors_for(batch: list[Query], reader: IndexReader, get_encoder: Callable[[], Encoder],
                 on_problem: ProblemHandler) -> list[tuple[Query, Any]]:
    info = reader.info
    vectors: dict[int, Any] = {}
    texts = [(i, q) for i, q in enumerate(batch) if q.vector is None and q.text is not None]
    images = [(i, q) for i, q in enumerate(batch) if q.vector is None and q.text is None]
    for i, query in enumerate(batch):
        if query.vector is None:
            continue
        if not models_match(info.model, info.fingerprint, query.model, query.fingerprint):
            reason = model_mismatch(info.model, info.fingerprint, query.model, query.fingerprint)
            on_problem(Problem(query.id, f"query embedding is from {reason}, skipped"))
        elif len(query.vector) != info.dim:
            on_problem(Problem(query.id, f"query embedding has {len(query.vector)} dimensions, the index "
                                         f"holds {info.dim}, skipped"))
        else:
            vectors[i] = query.vector
    if texts:
        encoded = default_query_cache.vectors(get_encoder(), [q.text for _, q in texts])
        vectors.update({i: v for (i, _), v in zip(texts, encoded)})
    if images:
        encoder = get_encoder()
        for i, query in images:
            try:
                image = load_image(query.image, draft_size=encoder.image_size)
            except ImageDecodeError as exc:
                on_problem(Problem(query.image, str(exc)))
                continue
            vectors[i] = encoder.encode_images([image])[0]
    return [(batch[i], vectors[i]) for i in sorted(vectors)]
