"""Ranking channels: the ways one index ranks its records for a query, and how several are fused.

A channel takes a batch of queries and gives, for each, its ranked records (or None where the query is not
something it can rank: an image has no words for full text). ``vector`` encodes the query with the index's
model and asks the index (scores: similarities, cosine for a normalised index); ``keyword`` asks the index's
full-text tables (scores: BM25; no model). ``hybrid`` runs both and fuses them per query by reciprocal rank
fusion, or by weighted normalised scores when weights are given (``mmtools.fusion``, the same fusion as for
several indexes). Search (``mmtools.search``) works through the ``Channel`` protocol only: what a channel
does with a query typed without accents, whether it says what matched, and whether it can rank a query are
its own attributes, never a test of its name. ``channels_for`` is the one table from mode to channels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from mmtools.errors import IndexFileError, ProblemHandler, UsageError, raise_problem
from mmtools.index.filters import Selection, SelectionCache

if TYPE_CHECKING:
    from mmtools.index.backends import IndexBackend

MODES = ("vector", "keyword", "hybrid")
CHANNELS = {"vector": ("vector",), "keyword": ("keyword",), "hybrid": ("vector", "keyword")}


@dataclass
class Ranked:
    id: str
    score: float
    record: dict[str, Any]
    snippet: str | None = None  # the text that matched, matched words in [brackets]


class Channel(Protocol):
    """One way to rank an index's records for a query."""

    name: str
    encodes: bool  # it encodes queries with a model: a query typed without accents is restored for it
    describes_matches: bool  # its hits can say which words matched (``snippet``)
    similarity: bool  # its scores are similarities (what --min-score bounds)

    def can_rank(self, query: Any) -> bool:
        """Whether this channel ranks ``query`` at all (a keyword channel cannot rank a picture)."""

    def rank(self, queries: Sequence[Any], k: int, among: Selection | None) -> list[list[Ranked] | None]:
        """Per query, its ``k`` best records (only those in ``among``), or None if it cannot rank it."""


class VectorChannel:
    """Queries encoded with the index's model (loaded on first need), ranked by similarity.

    A query that was restored with several likely alternatives (``Query.alternatives``: texts and weights
    summing to 1) is hedged: each alternative is encoded, and the query vector is their weighted mixture.
    Against unit vectors a record's score is then the weighted mean of its similarities to the alternatives
    (fusing the alternatives' similarity rankings by weight, done in one search)."""

    name = "vector"
    encodes = True
    describes_matches = False
    similarity = True

    def __init__(self, reader: "IndexBackend", get_encoder: Callable[[], Any], *, min_score: float | None = None,
                 on_problem: ProblemHandler = raise_problem, load_picture: Callable[[str, Any], Any] | None = None):
        self.reader, self.get_encoder, self.min_score, self.on_problem = reader, get_encoder, min_score, on_problem
        self.load_picture = load_picture

    def can_rank(self, query: Any) -> bool:
        return True

    def rank(self, queries: Sequence[Any], k: int, among: Selection | None) -> list[list[Ranked] | None]:
        import numpy as np

        from mmtools.search import vectors_for

        ready = vectors_for(queries, self.reader, self.get_encoder, self.on_problem, self.load_picture)
        results: list[list[Ranked] | None] = [None] * len(queries)
        if not ready:
            return results
        position = {id(q): i for i, q in enumerate(queries)}
        plain = [(query, vector) for query, vector in ready if len(getattr(query, "alternatives", ()) or ()) < 2]
        if plain:
            found = self._search(np.stack([vector for _, vector in plain]), k, among, self.min_score)
            for (query, _), query_hits in zip(plain, found):
                results[position[id(query)]] = [Ranked(h.id, h.score, h.record) for h in query_hits]
        for query, vector in ready:
            if len(getattr(query, "alternatives", ()) or ()) < 2:
                continue
            # The mixture is shorter than a unit vector: searched as a unit vector, its scores scaled back.
            norm = float(np.linalg.norm(vector)) or 1.0
            bound = None if self.min_score is None else self.min_score / norm
            query_hits = self._search(np.asarray(vector, dtype=np.float32)[None] / norm, k, among, bound)[0]
            results[position[id(query)]] = [Ranked(h.id, float(h.score) * norm, h.record) for h in query_hits]
        return results

    def _search(self, vectors: Any, k: int, among: Selection | None, min_score: float | None) -> list:
        if among is None:
            return self.reader.search(vectors, k=k, min_score=min_score)
        return self.reader.search(vectors, k=k, min_score=min_score, among=among.rows.keys())


class KeywordChannel:
    """Text queries against the index's full text (the reader's ``keyword_search``: FTS5 in a FAISS index's
    metadata, BM25 in a Milvus collection); needs no model. Its scores are BM25 relevances."""

    name = "keyword"
    encodes = False
    describes_matches = True
    similarity = False

    def __init__(self, reader: "IndexBackend"):
        self.reader = reader

    def can_rank(self, query: Any) -> bool:
        return query.vector is None and query.text is not None

    def rank(self, queries: Sequence[Any], k: int, among: Selection | None) -> list[list[Ranked] | None]:
        ids = None if among is None else among.ids
        results: list[list[Ranked] | None] = []
        for query in queries:
            if not self.can_rank(query):
                results.append(None)
                continue
            found = self.reader.keyword_search(getattr(query, "restored", None) or query.text, k, ids)
            results.append([Ranked(hit.id, hit.score,
                                   hit.record if hit.record is not None else self.reader.get(hit.id) or {},
                                   hit.snippet) for hit in found])
        return results


def default_mode(reader: "IndexBackend") -> str:
    """hybrid when the index holds texts to search (beyond file names), else vector."""
    return "hybrid" if reader.has_texts() else "vector"


def channels_for(mode: str, reader: "IndexBackend", get_encoder: Callable[[], Any], *,
                 min_score: float | None = None, on_problem: ProblemHandler = raise_problem,
                 load_picture: Callable[[str, Any], Any] | None = None) -> list[Channel]:
    if mode not in MODES:
        raise UsageError(f"unknown search mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
    if mode != "vector":
        if not reader.has_texts(file_names=True):
            raise IndexFileError(f"index {reader.path} holds no texts for keyword search", hint=reader.texts_hint())
    made = {"vector": lambda: VectorChannel(reader, get_encoder, min_score=min_score, on_problem=on_problem,
                                            load_picture=load_picture),
            "keyword": lambda: KeywordChannel(reader)}
    channels = [made[name]() for name in CHANNELS[mode]]
    if min_score is not None and not any(channel.similarity for channel in channels):
        raise UsageError(f"a minimum score bounds the similarity of the vector channel, and a {mode} search has "
                         "none", hint="leave out the minimum score, or search in vector or hybrid mode")
    return channels


def fuse(lists: Sequence[list[Ranked] | None], names: Sequence[str], k: int,
         weights: Sequence[float] | None = None) -> list[tuple[float, Ranked, dict[str, float]]]:
    """One ranking from several channels' lists: ``(fused value, best-known Ranked, {channel: its own score})``,
    best first; ``weights`` per channel."""
    from mmtools.fusion import fuse_rankings

    by_id: dict[str, Ranked] = {}
    for ranked in lists:
        for hit in ranked or []:
            known = by_id.setdefault(hit.id, hit)
            if known.snippet is None and hit.snippet is not None:
                by_id[hit.id] = dataclasses.replace(known, snippet=hit.snippet)
    fused = fuse_rankings([[(hit.id, hit.score) for hit in ranked or []] for ranked in lists], weights=weights, k=k)
    return [(hit.score, by_id[hit.id], {names[m]: hit.members[m][1] for m in sorted(hit.members)})
            for hit in fused]


def plan(reader: "IndexBackend", mode: str | None, where: Sequence[str] = (),
         selections: SelectionCache | None = None) -> tuple[str, Selection | None]:
    """One index's mode (the index's default when None) and the records the ``where`` conditions let through
    (None: all; FilterError, a ValueError, for a condition that does not parse). ``selections``: what this
    state of the index selected before (a warm server keeps one per opened index). Used by
    ``mmtools.search_plan``, where every search is planned."""
    from mmtools.index.filters import parse_conditions, select

    conditions = parse_conditions(where)
    chosen = mode if mode is not None else default_mode(reader)
    if not conditions:
        return chosen, None
    if selections is None:
        return chosen, select(reader, conditions)
    return chosen, selections.select(reader, tuple(where), conditions)
