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
    kind: str = "similarity"  # what ``score`` is: similarity, bm25 or fusion (mmtools.search.score_kind)
    said: str | None = None  # a spoken segment's words (a transcribe record: text from time to end)

    @property
    def score_text(self) -> str:
        """The score as the reports print it, named: ``sim 0.912``, ``bm25 3.100``, ``fusion 0.033``."""
        return "" if self.score is None else f"{SHORT_KINDS.get(self.kind, self.kind)} {self.score:.3f}"


SHORT_KINDS = {"similarity": "sim", "bm25": "bm25", "fusion": "fusion"}


@dataclass
class HitRow:
    query_id: str
    query: str
    hits: list[Hit] = field(default_factory=list)


def _spoken(record: dict[str, Any]) -> str | None:
    """The words of a hit on a spoken segment (``mmtools transcribe``: a moment with an ``end`` and its text)."""
    text = record.get("text")
    return text if isinstance(text, str) and text and record.get("end") is not None else None


def rows_from_records(records: Iterable[dict[str, Any]]) -> list[HitRow]:
    """Group search records (query_id, query, rank, score or fusion, path, id, and time for video frames) by
    query, first-seen order, by rank."""
    rows: dict[str, HitRow] = {}
    for record in records:
        query_id = str(record.get("query_id", ""))
        row = rows.get(query_id)
        if row is None:
            row = rows[query_id] = HitRow(query_id, str(record.get("query", query_id)))
        from mmtools.search import score_kind

        path = record.get("path")
        kind = score_kind(record)
        score = record.get("fusion" if kind == "fusion" else "score")
        row.hits.append(Hit(rank=int(record.get("rank", len(row.hits) + 1)),
                            score=float(score) if isinstance(score, (int, float)) else None,
                            path=path if isinstance(path, str) and path else None,
                            id=str(record.get("id", "")), time=frame_time(record), kind=kind,
                            said=_spoken(record)))
    for row in rows.values():
        row.hits.sort(key=lambda hit: hit.rank)
    return list(rows.values())
