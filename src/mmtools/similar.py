"""More like this: search an index with records it already holds, by id (``mmtools similar``; the HTTP API's
``/similar`` does the same for the web page).

A record's own stored vector is the query where the index keeps it (no model is loaded); otherwise its picture
is encoded with the index's model. The record itself is left out of its hits.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.search import Query

Record = dict[str, Any]


def like_queries(reader: Any, ids: Iterable[str], on_problem: ProblemHandler = raise_problem) -> Iterator[Query]:
    """One query per id held by ``reader`` (an id it does not hold is reported and skipped)."""
    info = reader.info
    for typed in ids:
        item_id, record = held(reader, typed)
        if record is None:
            on_problem(Problem(typed, "is not in the index, skipped"))
            continue
        shown = record.get("path") if isinstance(record.get("path"), str) else item_id
        vector = stored_vector(reader, item_id)
        if vector is not None:
            yield Query(item_id, text=shown, vector=vector, model=info.model, fingerprint=info.fingerprint or None,
                        record=record)
            continue
        where = reader.hit_path(item_id, record) if hasattr(reader, "hit_path") else record.get("path")
        if not isinstance(where, str) or not where:
            on_problem(Problem(item_id, "has neither a stored vector nor a picture to search with, skipped"))
            continue
        yield Query(item_id, image=where, record=record)


def held(reader: Any, typed: str) -> tuple[str, Record | None]:
    """The id and stored record ``typed`` names: an id, or a path, tried as the id embed-images gives that file
    (absolute, or relative to the index's root)."""
    record = reader.get(typed)
    if record is None:
        from mmtools.images import canonical_path_id

        root = getattr(reader, "root", None)
        as_path = canonical_path_id(typed, root if isinstance(root, str) else None)
        if as_path != typed:
            return as_path, reader.get(as_path)
    return typed, record


def stored_vector(reader: Any, item_id: str) -> Any:
    """The vector the index holds for ``item_id``, or None where it keeps none (ivfpq without kept vectors,
    another backend)."""
    connection = getattr(reader, "connection", None)
    if connection is None or not hasattr(reader, "vectors_of"):
        return None
    from mmtools.index.info import canonical_item_id

    row = connection.execute("SELECT row FROM items WHERE id = ?", (canonical_item_id(item_id),)).fetchone()
    if row is None:
        return None
    try:
        vectors = reader.vectors_of([row[0]])
    except Exception:  # an index that keeps no exact vectors: the picture is encoded instead
        return None
    return None if vectors is None else vectors[0]


def without_themselves(hits: Iterable[Record], k: int) -> Iterator[Record]:
    """Hits of ``like_queries`` (searched for ``k + 1``) less each query's own record, ranked again, ``k`` each."""
    count: dict[str, int] = {}
    for hit in hits:
        query = hit.get("query_id")
        if hit.get("id") == query or count.get(query, 0) >= k:
            continue
        count[query] = count.get(query, 0) + 1
        yield {**hit, "rank": count[query]}
