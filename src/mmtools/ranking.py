"""Ranking channels: the ways one index ranks its records for a query, and how several are fused.

A channel takes a batch of queries and gives, for each, its ranked records (or None where the query is not
something it can rank: an image has no words for full text). ``vector`` encodes the query with the index's
model and asks FAISS; ``keyword`` asks the index's full-text tables (BM25; no model). ``hybrid`` runs both
and fuses them per query by reciprocal rank fusion, or by weighted normalised scores when weights are given
(``mmtools.fusion``, the same fusion as for several indexes). Commands pick channels by name through
``channels_for``; they never branch on them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from mmtools.errors import IndexFileError, ProblemHandler, UsageError, raise_problem
from mmtools.index.filters import Selection, SelectionCache

MODES = ("vector", "keyword", "hybrid")
CHANNELS = {"vector": ("vector",), "keyword": ("keyword",), "hybrid": ("vector", "keyword")}


@dataclass
class Ranked:
    id: str
    score: float
    record: dict[str, Any]
    snippet: str | None = None  # the text that matched, matched words in [brackets]


class Channel(Protocol):
    name: str

    def rank(self, queries: Sequence[Any], k: int, among: Selection | None) -> list[list[Ranked] | None]:
        """Per query, its ``k`` best records (only those in ``among``), or None if it cannot rank it."""


class VectorChannel:
    """Queries encoded with the index's model (loaded on first need), ranked by cosine similarity."""

    name = "vector"

    def __init__(self, reader: Any, get_encoder: Callable[[], Any], *, min_score: float | None = None,
                 on_problem: ProblemHandler = raise_problem):
        self.reader, self.get_encoder, self.min_score, self.on_problem = reader, get_encoder, min_score, on_problem

    def rank(self, queries: Sequence[Any], k: int, among: Selection | None) -> list[list[Ranked] | None]:
        import numpy as np

        from mmtools.search import _vectors_for

        # A query restored to its accents (mmtools.text.restore) is encoded as restored.
        encodable = [dataclasses.replace(q, text=q.restored) if getattr(q, "restored", None) else q
                     for q in queries]
        ready = _vectors_for(encodable, self.reader, self.get_encoder, self.on_problem)
        results: list[list[Ranked] | None] = [None] * len(queries)
        if not ready:
            return results
        position = {id(q): i for i, q in enumerate(encodable)}
        vectors = np.stack([vector for _, vector in ready])
        hits = (self.reader.search(vectors, k=k, min_score=self.min_score) if among is None else
                self.reader.search(vectors, k=k, min_score=self.min_score, among=among.rows.keys()))
        for (query, _), query_hits in zip(ready, hits):
            results[position[id(query)]] = [Ranked(h.id, h.score, h.record) for h in query_hits]
        return results


class KeywordChannel:
    """Text queries against the index's full text (the reader's ``keyword_search``: FTS5 in a FAISS index's
    metadata, BM25 in a Milvus collection); needs no model."""

    name = "keyword"

    def __init__(self, reader: Any):
        self.reader = reader

    def rank(self, queries: Sequence[Any], k: int, among: Selection | None) -> list[list[Ranked] | None]:
        ids = None if among is None else among.ids
        results: list[list[Ranked] | None] = []
        for query in queries:
            text = getattr(query, "restored", None) or query.text
            if query.vector is not None or text is None:
                results.append(None)
                continue
            found = self.reader.keyword_search(text, k, ids)
            results.append([Ranked(hit.id, hit.score,
                                   hit.record if hit.record is not None else self.reader.get(hit.id) or {},
                                   hit.snippet) for hit in found])
        return results


def default_mode(reader: Any) -> str:
    """hybrid when the index holds texts to search (beyond file names), else vector."""
    return "hybrid" if reader.has_texts() else "vector"


def channels_for(mode: str, reader: Any, get_encoder: Callable[[], Any], *, min_score: float | None = None,
                 on_problem: ProblemHandler = raise_problem) -> list[Channel]:
    if mode not in MODES:
        raise UsageError(f"unknown search mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
    if mode != "vector":
        if not reader.has_texts(file_names=True):
            raise IndexFileError(f"index {reader.path} holds no texts for keyword search", hint=reader.texts_hint())
    made = {"vector": lambda: VectorChannel(reader, get_encoder, min_score=min_score, on_problem=on_problem),
            "keyword": lambda: KeywordChannel(reader)}
    return [made[name]() for name in CHANNELS[mode]]


def fuse(lists: Sequence[list[Ranked] | None], names: Sequence[str], k: int,
         weights: Sequence[float] | None = None) -> list[tuple[float, Ranked, list[str]]]:
    """One ranking from the channels' lists: ``(score, best-known Ranked, names of channels that found it)``."""
    from mmtools.fusion import fuse_rankings

    if len(lists) == 1:
        return [(hit.score, hit, [names[0]]) for hit in (lists[0] or [])[:k]]
    by_id: dict[str, Ranked] = {}
    for ranked in lists:
        for hit in ranked or []:
            known = by_id.setdefault(hit.id, hit)
            if known.snippet is None and hit.snippet is not None:
                by_id[hit.id] = dataclasses.replace(known, snippet=hit.snippet)
    fused = fuse_rankings([[(hit.id, hit.score) for hit in ranked or []] for ranked in lists], weights=weights, k=k)
    return [(hit.score, by_id[hit.id], [names[m] for m in sorted(hit.members)]) for hit in fused]


def plan(reader: Any, mode: str | None, where: Sequence[str] = (),
         selections: SelectionCache | None = None) -> tuple[str, Selection | None]:
    """What one index's search runs, for `mmtools search` and the warm server alike: the mode (the index's
    default when None) and the records the ``where`` conditions let through (None: all; FilterError, a
    ValueError, for a condition that does not parse). ``selections``: what this state of the index selected
    before (a warm server keeps one per opened index)."""
    from mmtools.index.filters import parse_conditions, select

    conditions = parse_conditions(where)
    chosen = mode if mode is not None else default_mode(reader)
    if not conditions:
        return chosen, None
    if selections is None:
        return chosen, select(reader, conditions)
    return chosen, selections.select(reader, tuple(where), conditions)
