"""The one place a search is planned: a request, whichever door it came through, becomes a plan, then hits.

Every search goes through here: `mmtools search` in-process, the socket server (the CLI sends it the request
its own option parser built), HTTP ``/search`` and ``/similar``, searches over several indexes and searches for
events in order (``then``). The steps:

1. ``SearchRequest``: what was asked (indexes, text / image / ready-vector queries, mode, where, weights,
   restore, runtime, model, then/within, k, min_score, group_by) and the client's folder (``cwd``), which
   relative paths (indexes, pictures) are read from.
2. ``plan_search``: for each index, its reader, its mode (the index's default when none is asked), the records
   ``where`` lets through, and the loader of its model, whose fingerprint is checked against the index's once,
   whether the index is searched alone, fused with others, or step by step; the towers the model picks for
   the index (``Encoder.for_index``); the accent restorer; and how rankings are fused (channels of one index
   by ``weights``, or indexes by ``weights``).
3. ``SearchPlan.run``: the hits (``mmtools.search``), fused over indexes (``mmtools.fusion``), chained for
   steps in order (``mmtools.video.temporal``), grouped by video; paths absolute.
4. At the edge only, ``relative_paths``: hit paths made relative to the client's folder.

Where models and indexes come from is the ``Resources`` seam: ``LocalResources`` opens and loads them in this
process; the warm server's engine (``mmtools.serve.engine.EngineResources``) hands out its open ones.

Scores (README, "Scores"): ``score`` is a hit's similarity (vector) or BM25 relevance (keyword) where one
ranking found it; where several were fused (hybrid channels, several indexes) the hit carries ``fusion`` and
each ranking's own ``scores``. ``min_score`` is always a least similarity of the vector channel, applied
before any fusion.
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, Iterator, Protocol

from mmtools.errors import ProblemHandler, UsageError, raise_problem
from mmtools.records import Record

if TYPE_CHECKING:
    from mmtools.index.backends import IndexBackend
    from mmtools.index.filters import Selection, SelectionCache
    from mmtools.models.encoder import Encoder
    from mmtools.search import Query

log = logging.getLogger("mmtools")

DEFAULT_INDEX = "idx.faiss"
INPUTS = ("records", "lines", "sequences")  # what standard input holds, when the queries come from it
GROUPS = ("video",)
RESTORE_ALTERNATIVES = 3


@dataclass
class SearchRequest:
    """A search as asked, the same whichever door it came through (JSON-able: ``to_json``/``from_json``)."""

    indexes: list[str] = field(default_factory=list)  # as the user named them; several: fused
    texts: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    then: list[str] = field(default_factory=list)  # next steps after the one query: events in order
    within: float = 30.0
    mode: str | None = None  # vector, keyword, hybrid (None: each index's default; a picture: vector)
    where: list[str] = field(default_factory=list)
    weights: list[float] | None = None
    restore: bool = True
    runtime: str = "auto"
    device: str = "auto"
    model: str | None = None
    k: int = 10
    min_score: float | None = None
    group_by: str | None = None
    field: str = "text"
    inputs: str | None = None  # INPUTS: the queries are input records, plain lines, or steps in order
    cwd: str | None = None  # the client's folder: relative paths are read from it, and hit paths written for it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, values: Any) -> "SearchRequest":
        """A request sent as JSON, checked field by field (UsageError naming the field)."""
        if not isinstance(values, dict):
            raise UsageError("a search request is a JSON object")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UsageError(f"unknown search request field {unknown[0]!r}")
        request = cls(**values)
        request.check()
        return request

    def check(self) -> None:
        """UsageError for a value of the wrong type or out of range."""
        def strings(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise UsageError(f"search request: {name} must be a list of strings")

        for name in ("indexes", "texts", "images", "then", "where"):
            strings(name)
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise UsageError("k must be a positive integer")
        for name in ("within", "min_score"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise UsageError(f"search request: {name} must be a number")
        if self.within <= 0:
            raise UsageError("within must be a number of seconds above 0")
        if self.weights is not None and (not isinstance(self.weights, list) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) for w in self.weights)):
            raise UsageError("search request: weights must be a list of numbers")
        from mmtools.ranking import MODES

        if self.mode is not None and self.mode not in MODES:
            raise UsageError(f"unknown search mode {self.mode!r}", hint=f"use one of {', '.join(MODES)}")
        if self.group_by is not None and self.group_by not in GROUPS:
            raise UsageError(f"unknown grouping {self.group_by!r}", hint=f"use one of {', '.join(GROUPS)}")
        if self.inputs is not None and self.inputs not in INPUTS:
            raise UsageError(f"search request: inputs must be one of {', '.join(INPUTS)}")
        for name in ("model", "cwd", "field", "runtime", "device"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise UsageError(f"search request: {name} must be a string")
        if self.then and len(self.texts) + len(self.images) != 1:
            raise UsageError("steps in order follow one first step: one query text or one image")
        if (self.then or self.inputs == "sequences") and self.group_by is not None:
            raise UsageError("steps in order are answered one result per video already; no grouping")

    @property
    def temporal(self) -> bool:
        return bool(self.then) or self.inputs == "sequences"

    def located(self, path: str) -> str:
        """A path the client named, as this process opens it (relative ones against the client's folder)."""
        path = os.path.expanduser(path)
        return os.path.join(self.cwd, path) if self.cwd and not os.path.isabs(path) else path


# ------------------------------------------------------------------------------------------- resources


class Resources(Protocol):
    """Where a plan gets its indexes, models and restorers: this process, or the warm server's engine."""

    def reader(self, location: str) -> ContextManager["IndexBackend"]:
        """The index at ``location`` (resolved, absolute), open for the plan's life."""

    def selections(self, location: str) -> "SelectionCache | None":
        """What ``where`` selected before in this state of the index (None: select anew)."""

    def model_loader(self, request: SearchRequest, fingerprint: str | None) -> Callable[[str], "Encoder"]:
        """Loads a retrieval model by name; ``fingerprint``: the index's, which the loaded copy should have."""

    def restorer(self, location: str) -> Callable[[str], list[tuple[str, float]]]:
        """The likely accented forms of a text typed without accents, best first, weights summing to 1."""

    def picture(self, path: str, draft_size: int | None) -> Any:
        """An image query's picture, decoded (ImageDecodeError when it cannot be)."""


_said_general: set[str | None] = set()


def restorer_for(location: str | None, version: object = None) -> Callable[[str], list[tuple[str, float]]]:
    """An index's accent restorer (a model of its own texts with the general one), built on first need; the
    general one alone, said in the log, where the index's texts cannot be read."""
    chosen: list[Any] = []

    def alternatives(text: str) -> list[tuple[str, float]]:
        from mmtools.text.restore import load_restorer

        if not chosen:
            try:
                chosen.append(load_restorer(location, version))
            except Exception as exc:  # noqa: BLE001 - any failure to read texts: the general model still works
                if location not in _said_general:  # said once per index, not once per query
                    _said_general.add(location)
                    log.warning("accents are restored with the general model only: the texts of %s cannot be "
                                "read (%s)", location, exc)
                chosen.append(load_restorer(None))
        return chosen[0].alternatives(text, n=RESTORE_ALTERNATIVES)
    return alternatives


class LocalResources:
    """Indexes opened and models loaded in this process (`mmtools search` without a server)."""

    def reader(self, location: str) -> ContextManager["IndexBackend"]:
        from mmtools.index.backends import open_reader

        return open_reader(location)

    def selections(self, location: str) -> None:
        return None

    def model_loader(self, request: SearchRequest, fingerprint: str | None) -> Callable[[str], "Encoder"]:
        from mmtools.models import load_encoder

        return lambda name: load_encoder(name, request.device, request.runtime)

    def restorer(self, location: str) -> Callable[[str], list[tuple[str, float]]]:
        return restorer_for(location)

    def picture(self, path: str, draft_size: int | None) -> Any:
        from mmtools.images import load_image

        return load_image(path, draft_size=draft_size)


# ------------------------------------------------------------------------------------------------ plan


@dataclass
class IndexPlan:
    """How one index is searched."""

    name: str  # as the user named it
    location: str
    reader: "IndexBackend"
    mode: str
    among: "Selection | None"
    get_encoder: Callable[[], "Encoder"]
    restore: Callable[[str], list[tuple[str, float]]] | None


@dataclass
class SearchPlan:
    request: SearchRequest
    indexes: list[IndexPlan]
    resources: Resources
    on_problem: ProblemHandler = raise_problem

    def run(self, queries: Iterable[Any]) -> Iterator[Record]:
        """The hits of ``queries`` (``request_queries``): per query, ranks 1..k; absolute paths."""
        request = self.request
        if request.temporal:
            from mmtools.video.temporal import temporal_search

            yield from temporal_search(queries, self.retrieve, k=request.k)
            return
        if request.group_by is None:
            yield from self.retrieve(queries, request.k)
            return
        from mmtools.video.moments import best_moment_per_video

        yield from best_moment_per_video(self.retrieve(queries, max(20 * request.k, 200)), request.k)

    def retrieve(self, queries: Iterable["Query"], k: int) -> Iterator[Record]:
        """Up to ``k`` hits per query: from the one index, or fused over several."""
        from mmtools.search import hit_record

        if len(self.indexes) == 1:
            for query, found in self._found(self.indexes[0], queries, k, self.request.weights):
                for rank, item in enumerate(found, 1):
                    yield hit_record(query, rank, item)
            return
        from mmtools.fusion import fused_found

        from mmtools.index.backends import short_name

        # Each index is named in ``scores`` and ``fused`` by its short name (a file's stem, a collection's
        # name: the same whichever door named it), or as named where two share one.
        short = [short_name(plan.location) for plan in self.indexes]
        labels = short if len(set(short)) == len(short) else [plan.name for plan in self.indexes]
        members = [(label, lambda batch, fetch, plan=plan: self._found(plan, batch, fetch, None))
                   for label, plan in zip(labels, self.indexes)]
        for query, found in fused_found(members, queries, k=k, weights=self.request.weights):
            for rank, item in enumerate(found, 1):
                yield hit_record(query, rank, item)

    def _found(self, plan: IndexPlan, queries: Iterable["Query"], k: int, weights: list[float] | None):
        from mmtools.search import search_found

        return search_found(plan.reader, queries, plan.get_encoder, k=k, min_score=self.request.min_score,
                            on_problem=self.on_problem, mode=plan.mode, among=plan.among, weights=weights,
                            restore=plan.restore, load_picture=self.resources.picture)


@contextmanager
def plan_search(request: SearchRequest, resources: Resources, *, on_problem: ProblemHandler = raise_problem,
                on_none_selected: Callable[[str, list[str]], None] | None = None) -> Iterator[SearchPlan]:
    """The plan of ``request``, its indexes open until the block ends.

    Raises UsageError for options that do not go together, IndexFileError for an index that cannot be
    opened or whose model changed (checked here when a model is named, else when the first query is
    encoded: a keyword search loads none), FilterError (a ValueError) for a condition that does not parse.
    ``on_none_selected(index, conditions)``: no record of that index meets the conditions.
    """
    from mmtools.fusion import check_weights
    from mmtools.index.backends import resolve_location
    from mmtools.ranking import plan as index_mode_and_selection
    from mmtools.search import query_encoder

    request.check()
    names = request.indexes or [DEFAULT_INDEX]
    several = len(names) > 1
    if several and request.model is not None:
        raise UsageError("a model named for the query applies to one index; each of several is queried with "
                         "its own model", hint="leave out the model with several indexes")
    if request.weights is not None:
        if several:
            check_weights(request.weights, len(names))
        elif request.mode not in (None, "hybrid") or len(request.weights) != 2:
            raise UsageError("with one index, weights are two (vector, keyword) for a hybrid search",
                             hint="e.g. mode hybrid, weights 0.3,0.7")
    with ExitStack() as stack:
        plans = []
        for name in names:
            location = resolve_location(name, request.cwd)
            reader = stack.enter_context(resources.reader(location))
            mode, among = index_mode_and_selection(reader, request.mode, request.where,
                                                   resources.selections(location))
            if request.weights is not None and not several and mode != "hybrid":
                raise UsageError("with one index, weights are two (vector, keyword) for a hybrid search",
                                 hint="e.g. mode hybrid, weights 0.3,0.7")
            if among is not None and not among and on_none_selected is not None:
                on_none_selected(name, list(request.where))
            get_encoder = query_encoder(reader.info, name,
                                        resources.model_loader(request, reader.info.fingerprint or None),
                                        request.model)
            if request.model is not None and mode != "keyword":
                get_encoder()  # the model named now is checked before any query
            plans.append(IndexPlan(name, location, reader, mode, among, get_encoder,
                                   resources.restorer(location) if request.restore else None))
        yield SearchPlan(request, plans, resources, on_problem)


# ------------------------------------------------------------------------------------------- queries


def request_queries(request: SearchRequest, inputs: Iterable[Any] | None = None,
                    on_problem: ProblemHandler = raise_problem) -> Iterator[Any]:
    """The request's queries: its texts and images, its steps in order (``then``), or ``inputs`` (records,
    plain lines, or temporal query records, as ``request.inputs`` says). Pictures are opened from the client's
    folder and shown as the client named them."""
    from mmtools.search import Query, queries_from_records

    if request.then:
        from mmtools.video.temporal import TemporalQuery

        first = (Query("q1/1", text=request.texts[0]) if request.texts
                 else _at(Query("q1/1", image=request.images[0]), request))
        steps = [first] + [Query(f"q1/{i}", text=text) for i, text in enumerate(request.then, 2)]
        yield TemporalQuery("q1", steps, request.within)
        return
    if request.inputs == "sequences":
        from mmtools.video.temporal import temporal_queries_from_records

        for sequence in temporal_queries_from_records(inputs or (), request.within, on_problem):
            sequence.steps = [_at(step, request) for step in sequence.steps]
            yield sequence
        return
    if request.inputs == "lines":
        for number, text in enumerate(inputs or (), 1):
            yield Query(f"q{number}", text=str(text))
        return
    if request.inputs == "records":
        for query in queries_from_records(inputs or (), request.field, on_problem):
            yield _at(query, request)
        return
    for number, text in enumerate(request.texts, 1):
        yield Query(f"q{number}", text=text)
    for path in request.images:
        yield _at(Query(path, image=path), request)


def _at(query: "Query", request: SearchRequest) -> "Query":
    """An image query opened from the client's folder, shown as the client named it."""
    from dataclasses import replace

    if query.image is None:
        return query
    return replace(query, image=request.located(query.image), shown=query.label)


# ------------------------------------------------------------------------------------------- the edge


def relative_paths(hits: Iterable[Record], cwd: str | None) -> Iterator[Record]:
    """Hits with an absolute ``path`` written as short as it can be and still open from ``cwd`` (the client's
    folder): relative when the file is inside it, else absolute. None: paths stay absolute."""
    for hit in hits:
        path = hit.get("path")
        if cwd and isinstance(path, str) and os.path.isabs(path):
            hit["path"] = _from(path, cwd)
        yield hit


def _from(location: str, cwd: str) -> str:
    try:
        relative = os.path.relpath(location, cwd)
    except ValueError:  # another drive
        return location
    return location if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


def search_hits(request: SearchRequest, resources: Resources, inputs: Iterable[Any] | None = None, *,
                on_problem: ProblemHandler = raise_problem,
                on_none_selected: Callable[[str, list[str]], None] | None = None,
                relative: bool = True) -> Iterator[Record]:
    """Plan and run ``request``: its hits, with paths relative to the client's folder where ``relative``.
    Input records whose first holds ``steps`` are temporal queries (steps in order), the rest plain queries."""
    if request.inputs == "records" and inputs is not None:
        first, inputs = _first(inputs)
        if isinstance(first, dict) and "steps" in first:
            from dataclasses import replace

            request = replace(request, inputs="sequences")
    with plan_search(request, resources, on_problem=on_problem, on_none_selected=on_none_selected) as plan:
        hits = plan.run(request_queries(request, inputs, on_problem))
        yield from relative_paths(hits, request.cwd) if relative else hits


def _first(items: Iterable[Any]) -> tuple[Any, Iterator[Any]]:
    """The first item, and every item again (the first included)."""
    import itertools

    iterator = iter(items)
    for first in iterator:
        return first, itertools.chain([first], iterator)
    return None, iter(())


__all__ = ["DEFAULT_INDEX", "LocalResources", "Resources", "SearchPlan", "SearchRequest",
           "plan_search", "relative_paths", "request_queries", "restorer_for", "search_hits"]
