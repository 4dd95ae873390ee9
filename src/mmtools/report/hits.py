"""Search hit records grouped into rows, one per query, in rank order: what both reports draw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from mmtools.video import frame_time


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float | None
    path: str | None  # the image, as the index stored it (relative to where it was built, or absolute)
    id: str
    time: float | None = None  # a frame of the video at ``path``: seconds in


@dataclass
class HitRow:
    query_id: str
    query: str
    hits: list[Hit] = field(default_factory=list)


def rows_from_records(records: Iterable[dict[str, Any]]) -> list[HitRow]:
    """Group search records (query_id, query, rank, score, path, id, and time for video frames) by query, first-seen order, by rank."""
    rows: dict[str, HitRow] = {}
    for record in records:
        query_id = str(record.get("query_id", ""))
        row = rows.get(query_id)
        if row is None:
            row = rows[query_id] = HitRow(query_id, str(record.get("query", query_id)))
        path = record.get("path")
        score = record.get("score")
        row.hits.append(Hit(rank=int(record.get("rank", len(row.hits) + 1)),
                            score=float(score) if isinstance(score, (int, float)) else None,
                            path=path if isinstance(path, str) and path else None,
                            id=str(record.get("id", "")), time=frame_time(record)))
    for row in rows.values():
        row.hits.sort(key=lambda hit: hit.rank)
    return list(rows.values())
