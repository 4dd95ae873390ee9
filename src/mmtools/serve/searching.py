"""HTTP's doors to search (``POST /search``, ``POST /similar``): requests planned and run as every search is
(mmtools.search_plan), over the engine's warm indexes and models. Paths in hits are absolute (an HTTP client
has no folder of ours to be relative to)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mmtools.errors import Problem
from mmtools.records import Record


def http_search(engine: Any, *, indexes: list[str], text: str | None, image: str | None, image_name: str,
                k: int, min_score: float | None, mode: str | None, where: list[str], restore: bool,
                then: list[str], within: float, weights: list[float] | None, on_problem: Any) -> list[Record]:
    """The hits of ``/search``: a text or an uploaded picture (saved at ``image``, shown as ``image_name``),
    one served index or several fused, steps in order with ``then``."""
    from mmtools.search_plan import SearchRequest, plan_search, request_queries

    request = SearchRequest(indexes=[engine.named_index(name) for name in indexes or [None]],
                            texts=[text] if text is not None else [], images=[image] if image is not None else [],
                            then=list(then), within=within, mode=mode, where=list(where), weights=weights,
                            restore=restore, k=k, min_score=min_score)
    from mmtools.serve.engine import EngineResources

    def shown(query: Any) -> Any:
        # an upload is named by its file name, never by the server's temporary copy
        return replace(query, id=image_name, shown=image_name) if query.image is not None else query

    queries = []
    for query in request_queries(request, on_problem=on_problem):
        if hasattr(query, "steps"):
            query.steps = [shown(step) for step in query.steps]
            queries.append(query)
        else:
            queries.append(shown(query))
    with plan_search(request, EngineResources(engine), on_problem=on_problem) as plan:
        return list(plan.run(queries))


def similar(engine: Any, index: str, item_id: str, picture: Any, *, k: int, min_score: float | None,
            where: list[str], max_pixels: int) -> list[Record]:
    """The hits of ``/similar``: the record's own picture (an image, or a video's frame at its moment) searched
    by vector in its index, with the index's model as checked for every search; the record itself left out."""
    from mmtools.search import Query
    from mmtools.search_plan import SearchRequest, plan_search
    from mmtools.serve.engine import EngineResources

    request = SearchRequest(indexes=[index], mode="vector", where=list(where), k=k + 1, min_score=min_score)
    problems: list[Problem] = []
    with plan_search(request, EngineResources(engine), on_problem=problems.append) as plan:
        encoder = plan.indexes[0].get_encoder()
        vector = encoder.encode_images([picture.load(max_pixels, encoder.image_size)])[0]
        query = Query(item_id, vector=vector, model=encoder.name,
                      fingerprint=getattr(encoder, "fingerprint", None) or None, shown=item_id)
        hits = list(plan.run([query]))
    others = [hit for hit in hits if hit["id"] != item_id][:k]
    for rank, hit in enumerate(others, 1):
        hit["rank"] = rank
    return others
