"""When segments are merged, and how: size-tiered, in the writing process, one merge a write at most.

Segments are grouped in tiers by their live records (below ``FLOOR`` all are tier 0, then each tier holds
``TIER_FACTOR`` times more). A write merges, in order of preference: segments whose dead rows (removed or
replaced records) pass ``DEAD_FRACTION`` (rewritten without them), else the lowest tier that holds
``MERGE_WIDTH`` segments. So each record is rewritten about log_8(n) times in its life, a write's merge is as
large as the tier it closes, and a search meets a few segments per tier. Wholly dead segments are dropped
without a merge. ``--compact`` merges everything into one; so does retraining an IVF index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

DEAD_FRACTION = 0.3
MERGE_WIDTH = 8
TIER_FACTOR = 8
FLOOR = 4096  # live records under which segments count as one tier (tiny writes merge soon)
SEGMENT_BYTES = 256 * 2**20  # a write starts a new segment past this many bytes of vectors (bounds memory)


@dataclass(frozen=True)
class SegmentStat:
    number: int
    name: str
    vectors: int  # in the file
    live: int  # of them still records of the index

    @property
    def dead(self) -> int:
        return self.vectors - self.live


def segment_limit(dim: int) -> int:
    """Vectors a segment takes before a write seals it and starts another; merges stop at this size too."""
    return max(4096, SEGMENT_BYTES // (4 * max(1, dim)))


def tier(live: int) -> int:
    return 0 if live < FLOOR else 1 + int(math.log(live / FLOOR, TIER_FACTOR))


def plan(stats: Iterable[SegmentStat], limit: int, everything: bool = False
         ) -> tuple[list[SegmentStat], list[SegmentStat]]:
    """``(drop, merge)``: the segments to drop (no live rows) and the ones to merge into one now."""
    stats = list(stats)
    drop = [s for s in stats if s.live == 0]
    rest = [s for s in stats if s.live > 0]
    if everything:
        return drop, rest if len(rest) > 1 or any(s.dead for s in rest) else []
    dead = [s for s in rest if s.dead > DEAD_FRACTION * s.vectors]
    if dead:
        lowest = min(tier(s.live) for s in dead)
        return drop, [s for s in dead if tier(s.live) == lowest]
    tiers: dict[int, list[SegmentStat]] = {}
    for s in rest:
        if s.live < limit:  # full-size segments are merged again only by --compact
            tiers.setdefault(tier(s.live), []).append(s)
    for level in sorted(tiers):
        if len(tiers[level]) >= MERGE_WIDTH:
            return drop, tiers[level]
    return drop, []


def drop_dead_ids(index: Any, live_rows: Any) -> None:
    """Remove from an ivfpq segment (loaded, not mapped) the vectors of rows that are no longer records."""
    import faiss

    keep = faiss.IDSelectorBatch(live_rows)
    index.remove_ids(faiss.IDSelectorNot(keep))


def training_sample(vectors: Any, size: int) -> Any:
    import numpy as np

    if len(vectors) <= size:
        return vectors
    chosen = np.random.default_rng(0).choice(len(vectors), size, replace=False)
    return np.ascontiguousarray(vectors[np.sort(chosen)])
