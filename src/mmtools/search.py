"""Text and image queries against one index, encoded with the model the index was built with.

Where a search is planned (which indexes, models, channels and fusion) is ``mmtools.search_plan``; this module
runs one index's channels for a batch of queries and writes the hits. A hit's scores (README, "Scores"):

* ``score``: a hit found by one ranking: the similarity of a vector hit (cosine for a normalised index), the
  BM25 relevance of a keyword hit;
* ``fusion``: a hit of several rankings fused (hybrid channels, several indexes, hedged restorations are not:
  see VectorChannel): the fused value it is ordered by; ``scores`` beside it holds each ranking's own score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from mmtools.embed import batched
from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.images import ImageDecodeError, load_image
from mmtools.errors import IndexFileError
from mmtools.index.store import IndexInfo, model_mismatch, models_match
from mmtools.models.encoder import Encoder
from mmtools.models.query_cache import default_query_cache
from mmtools.records import EMBEDDING, EMBEDDING_FINGERPRINT, EMBEDDING_MODEL, Record, decode_vector, record_id

if TYPE_CHECKING:
    from mmtools.index.backends import IndexBackend
    from mmtools.index.filters import Selection

# The fields a hit names itself. A stored record's own field of one of these names is not dropped nor
# overwritten: it is kept under STORED (``{"stored": {"score": 4}}``), with the stored field named STORED.
HIT_FIELDS = ("query_id", "query", "query_restored", "query_alternatives", "rank", "score", "fusion", "scores",
              "fused", "matched", "snippet", "stored")
STORED = "stored"


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
    alternatives: list[tuple[str, float]] | None = None  # likely restorations and weights, when hedged
    shown: str | None = None  # what the hits show as ``query`` (an image path as the client named it)

    @property
    def label(self) -> str:
        if self.shown is not None:
            return self.shown
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
    from mmtools.models.registry import ONNX_TWINS

    if ONNX_TWINS.get(info.model) == name:  # built with PyTorch installed; this install has only the ONNX twin
        from mmtools.models.runtime import TORCH_HINT

        return IndexFileError(f"index {where} was built with model {info.model} on PyTorch; without PyTorch this "
                              f"install loads {name}, an ONNX conversion whose vectors are its own",
                              hint=f"rebuild the index here, or search it with PyTorch ({TORCH_HINT})")
    return IndexFileError(f"index {where} was built with model {info.model}; the query model is {name}",
                          hint="leave out --model to use the index's model, or rebuild the index with the new model")


@dataclass
class Found:
    """One record found for one query, before it is written as a hit: ``score`` when one ranking found it,
    ``fusion`` (and each ranking's own ``scores``) when several were fused."""

    id: str
    record: dict[str, Any]
    path: str | None = None  # absolute where the file is known, else the stored path
    score: float | None = None
    fusion: float | None = None
    scores: dict[str, float] | None = None
    matched: list[str] | None = None
    snippet: str | None = None
    fused: list[dict[str, Any]] | None = None  # several indexes: each one's rank and score

    @property
    def value(self) -> float:
        """What the hit is ordered by."""
        return self.fusion if self.fusion is not None else float(self.score or 0.0)


def hit_value(hit: Record) -> float:
    """What a written hit is ordered by: its ``fusion`` where rankings were fused, else its ``score``."""
    value = hit.get("fusion", hit.get("score"))
    return float(value) if isinstance(value, (int, float)) else 0.0


def score_kind(hit: Record) -> str:
    """What a written hit's ranking value is: "similarity" (a vector hit's score), "bm25" (a keyword hit's
    score) or "fusion" (several rankings fused): what tables, contact sheets and pages label it."""
    if "fusion" in hit:
        return "fusion"
    matched = hit.get("matched")
    return "bm25" if isinstance(matched, list) and matched and "vector" not in matched else "similarity"


def hit_record(query: Query, rank: int, found: Found) -> Record:
    """The hit as written: query fields, rank, score (or fusion and scores), the stored record, id, matches."""
    stored = {key: value for key, value in found.record.items() if key not in HIT_FIELDS}
    clashing = {key: value for key, value in found.record.items() if key in HIT_FIELDS}
    if clashing:
        stored[STORED] = clashing
    if found.path is not None:
        stored["path"] = found.path
    hit: Record = {"query_id": query.id, "query": query.label}
    if query.restored is not None:
        hit["query_restored"] = query.restored
    if query.alternatives is not None and len(query.alternatives) > 1:
        hit["query_alternatives"] = [{"text": text, "weight": round(weight, 6)} for text, weight in query.alternatives]
    hit["rank"] = rank
    if found.fusion is not None:
        hit["fusion"] = round(found.fusion, 6)
        hit["scores"] = {name: round(score, 6) for name, score in (found.scores or {}).items()}
    else:
        hit["score"] = round(float(found.score or 0.0), 6)
    hit.update(stored)
    hit["id"] = found.id
    if found.fused is not None:
        hit["fused"] = found.fused
    if found.matched is not None:
        hit["matched"] = found.matched
        if found.snippet is not None:
            hit["snippet"] = found.snippet
    return hit


def search(reader: "IndexBackend", queries: Iterable[Query], get_encoder: Callable[[], Encoder], **options: Any
           ) -> Iterator[Record]:
    """Yield one record per hit (``hit_record``): the hits of ``search_found``, ranks 1..k per query."""
    for query, found in search_found(reader, queries, get_encoder, **options):
        for rank, item in enumerate(found, 1):
            yield hit_record(query, rank, item)


def search_found(
    reader: "IndexBackend",
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
    restore: Callable[[str], list[tuple[str, float]]] | None = None,
    load_picture: Callable[[str, int | None], Any] | None = None,
) -> Iterator[tuple[Query, list[Found]]]:
    """Per query (that some channel could rank), its best ``k`` records, with ``path`` absolute where the
    file's place is known (the index's root, or the record's absolute id): callers make it relative to the
    folder their user is in (``mmtools.search_plan.relative_paths``).

    ``mode`` names the ranking channels (``mmtools.ranking``). A query only one channel can rank (a picture,
    a ready vector) is ranked by that channel alone, so a picture is searched by vector, ``score`` its
    similarity; where several channels rank it their rankings are fused (``fusion``, ``scores``, ``matched``
    and, where words matched, a ``snippet``). ``min_score``: the least similarity a vector hit needs (applied
    before any fusion; a mode without the vector channel refuses it). ``among``: only these records (a
    --where selection). ``weights``: per channel, for weighted score fusion instead of reciprocal ranks.
    ``restore(text)``: the likely accented forms of a text typed without accents, best first, with weights
    summing to 1 (``AccentRestorer.alternatives``), for the channels that encode; the best is reported as
    ``query_restored``, and when there are several the vector channel hedges over them
    (``query_alternatives``). ``get_encoder`` is called only if some query needs encoding. ``load_picture(path,
    draft_size)`` decodes an image query [default: mmtools.images.load_image].
    """
    from mmtools.ranking import channels_for, fuse

    get_encoder = _towers_for(reader, get_encoder)
    channels = channels_for(mode, reader, get_encoder, min_score=min_score, on_problem=on_problem,
                            load_picture=load_picture)
    names = [channel.name for channel in channels]
    says_matches = len(channels) > 1 or any(channel.describes_matches for channel in channels)
    fetch = k if len(channels) == 1 else max(4 * k, 50)  # so a hit one channel ranks lower meets the other's
    for batch in batched(queries, batch_size):
        if restore is not None and any(channel.encodes for channel in channels):
            batch = [_restored(query, restore) for query in batch]
        results = [channel.rank(batch, fetch, among) for channel in channels]
        for i, query in enumerate(batch):
            lists = [result[i] for result in results]
            ranked = [(name, found) for name, found in zip(names, lists) if found is not None]
            if not ranked:
                continue
            if len(ranked) == 1:
                name, found = ranked[0]
                yield query, [Found(hit.id, hit.record, _located(reader, hit), score=hit.score,
                                    matched=[name] if says_matches else None, snippet=hit.snippet)
                              for hit in found[:k]]
                continue
            yield query, [Found(hit.id, hit.record, _located(reader, hit), fusion=value, scores=scores,
                                matched=list(scores), snippet=hit.snippet)
                          for value, hit, scores in fuse(lists, names, k, weights)]


def _located(reader: "IndexBackend", hit: Any) -> str | None:
    """Where the hit's file is, absolute (from the index's root, or the record's absolute id), or None when
    that cannot be known (the stored ``path`` is then written as it is)."""
    from mmtools.index.locate import record_location

    return record_location(hit.id, hit.record.get("path"), reader.root)


def _restored(query: Query, restore: Callable[[str], list[tuple[str, float]]]) -> Query:
    from dataclasses import replace

    from mmtools.text.accents import has_accents

    if query.vector is not None or query.text is None or has_accents(query.text):
        return query
    alternatives = [(text, float(weight)) for text, weight in restore(query.text)]
    if not alternatives:
        return query
    return replace(query, restored=alternatives[0][0], alternatives=alternatives)


def _towers_for(reader: "IndexBackend", get_encoder: Callable[[], Encoder]) -> Callable[[], Encoder]:
    from mmtools.models.agreement import index_sample

    chosen: list[Encoder] = []

    def get() -> Encoder:
        if not chosen:
            encoder = get_encoder()
            choose = getattr(encoder, "for_index", None)
            chosen.append(choose(reader.info, lambda: index_sample(reader)) if choose is not None else encoder)
        return chosen[0]
    return get


def vectors_for(batch: Sequence[Query], reader: "IndexBackend", get_encoder: Callable[[], Encoder],
                on_problem: ProblemHandler, load_picture: Callable[[str, int | None], Any] | None = None
                ) -> list[tuple[Query, Any]]:
    """``(query, vector)`` for each query that has or gets one: a ready vector of the index's model, the text
    encoded (as restored; a hedged query as the weighted mixture of its alternatives' vectors), the image."""
    import numpy as np

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
        wanted: list[str] = []
        for _, query in texts:
            wanted += [text for text, _ in _text_forms(query)]
        encoded = iter(default_query_cache.vectors(get_encoder(), wanted))
        for i, query in texts:
            forms = _text_forms(query)
            mixture = [next(encoded) for _ in forms]
            vectors[i] = mixture[0] if len(forms) == 1 else np.sum(
                [weight * np.asarray(vector, dtype=np.float32) for (_, weight), vector in zip(forms, mixture)], axis=0)
    if images:
        encoder = get_encoder()
        for i, query in images:
            try:
                image = (load_picture(query.image, encoder.image_size) if load_picture is not None
                         else load_image(query.image, draft_size=encoder.image_size))
            except ImageDecodeError as exc:
                on_problem(Problem(query.image, str(exc)))
                continue
            vectors[i] = encoder.encode_images([image])[0]
    return [(batch[i], vectors[i]) for i in sorted(vectors)]


def _text_forms(query: Query) -> list[tuple[str, float]]:
    """The texts a query is encoded as, with weights: its alternatives when hedged, else its best form."""
    if query.alternatives is not None and len(query.alternatives) > 1:
        return query.alternatives
    return [(query.restored or query.text or "", 1.0)]
