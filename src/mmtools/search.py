"""Text and image queries against an index, encoded with the model the index was built with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from mmtools.embed import batched, encode_query_texts
from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.images import ImageDecodeError, load_image
from mmtools.errors import IndexFileError
from mmtools.index.store import IndexInfo, IndexReader, model_mismatch, models_match
from mmtools.models.encoder import Encoder
from mmtools.records import EMBEDDING, EMBEDDING_FINGERPRINT, EMBEDDING_MODEL, Record, decode_vector, record_id

HIT_FIELDS = ("query_id", "query", "rank", "score")


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
    """
    from mmtools.models import resolve_model

    name = info.model if model is None else resolve_model(model).name
    if name != info.model and not info.fingerprint:
        raise _mismatch(where, info, name)
    loaded: list[Encoder] = []

    def get() -> Encoder:
        if not loaded:
            encoder = load(name)
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
) -> Iterator[Record]:
    """Yield one record per hit: query_id, query, rank, score, then the stored record's fields, with ``path``
    made to open from the current folder (absolute, from the index's root or the record's absolute id).

    ``get_encoder`` is called only if some query needs encoding (ready vectors need no model).
    """
    for batch in batched(queries, batch_size):
        ready = _vectors_for(batch, reader, get_encoder, on_problem)
        if not ready:
            continue
        import numpy as np

        results = reader.search(np.stack([vector for _, vector in ready]), k=k, min_score=min_score)
        for (query, _), hits in zip(ready, results):
            for rank, hit in enumerate(hits, 1):
                stored = {key: value for key, value in hit.record.items() if key not in HIT_FIELDS}
                if hit.path is not None:  # where the file opens from here (the stored path may be relative)
                    stored["path"] = hit.path
                yield {"query_id": query.id, "query": query.label, "rank": rank, "score": round(hit.score, 6),
                       **stored, "id": hit.id}


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
        encoded = encode_query_texts(get_encoder(), [q.text for _, q in texts])
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
