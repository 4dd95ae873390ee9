"""Events in order: queries of several steps (each a text or an image) answered by moments of one video, one
per step, in time order, all inside ``within`` seconds.

Each step is searched on its own (one index, or a fusion of several: ``retrieve`` decides) for its
candidate moments; per video, dynamic programming then finds the chain that maximises the sum of the steps'
scores: for a first moment at t0, step s's best chain ending at moment c is c's score plus the best chain of
step s-1 ending strictly before c, over moments up to t0 + within. Candidates are sorted by time, so each
step is one merge with a running maximum: O(n0 · n) per video for n candidates in all, where trying every
combination would cost the product of the steps' candidate counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.records import Record, record_id
from mmtools.search import hit_value
from mmtools.video import frame_time, video_of

DEFAULT_WITHIN_S = 30.0
CANDIDATES = 200  # moments fetched per step (at least; 20 per result asked for when more)
STEP_FIELDS = ("id", "frame", "shot", "shot_start", "shot_end")


@dataclass
class TemporalQuery:
    """A temporal query: its steps are search queries (mmtools.search.Query), in the order they happen."""

    id: str
    steps: list[Any]
    within: float = DEFAULT_WITHIN_S
    record: Record = field(default_factory=dict)

    @property
    def label(self) -> str:
        return " → ".join(step.label for step in self.steps)


@dataclass(frozen=True)
class Moment:
    time: float
    score: float
    hit: Record


def temporal_queries_from_records(records: Iterable[Record], within: float = DEFAULT_WITHIN_S,
                                  on_problem: ProblemHandler = raise_problem) -> Iterator[TemporalQuery]:
    """``{"steps": [{"text": ...}, {"image": PATH}], "within": 30}`` records become temporal queries."""
    from mmtools.search import Query

    for number, record in enumerate(records, 1):
        qid = record_id(record, f"q{number}")
        steps = record.get("steps")
        if not isinstance(steps, list) or len(steps) < 2:
            on_problem(Problem(qid, "record has no 'steps' list of two or more steps, skipped"))
            continue
        queries = []
        for position, step in enumerate(steps, 1):
            if isinstance(step, str):
                step = {"text": step}
            text = step.get("text") if isinstance(step, dict) else None
            image = step.get("image") if isinstance(step, dict) else None
            if isinstance(text, str) and text.strip():
                queries.append(Query(f"{qid}/{position}", text=text))
            elif isinstance(image, str) and image:
                queries.append(Query(f"{qid}/{position}", image=image))
            else:
                queries = None
                on_problem(Problem(qid, f"step {position} has no 'text' or 'image', skipped"))
                break
        if queries is None:
            continue
        limit = record.get("within", within)
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0:
            on_problem(Problem(qid, f"'within' must be a number of seconds above 0, not {limit!r}; skipped"))
            continue
        yield TemporalQuery(qid, queries, float(limit), record)


def best_chain(steps: Sequence[Sequence[Moment]], within: float) -> tuple[float, list[Moment]] | None:
    """The chain of one moment per step, strictly in time order, first to last inside ``within`` seconds,
    with the highest sum of scores; None when there is none."""
    ordered = [sorted(moments, key=lambda m: m.time) for moments in steps]
    if any(not moments for moments in ordered):
        return None
    best: tuple[float, list[Moment]] | None = None
    for first in ordered[0]:
        end = first.time + within
        # previous[i]: (total, moments) of the best chain ending at the i-th kept moment of the step before
        previous = [(first.score, [first])]
        previous_times = [first.time]
        for moments in ordered[1:]:
            current, current_times = [], []
            running: tuple[float, list[Moment]] | None = None
            j = 0
            for moment in moments:
                if moment.time <= first.time or moment.time > end:
                    continue
                while j < len(previous) and previous_times[j] < moment.time:
                    if running is None or previous[j][0] > running[0]:
                        running = previous[j]
                    j += 1
                if running is not None:
                    current.append((running[0] + moment.score, running[1] + [moment]))
                    current_times.append(moment.time)
            if not current:
                previous = []
                break
            previous, previous_times = current, current_times
        for total, chain in previous:
            if best is None or total > best[0]:
                best = (total, chain)
    return best


def temporal_search(queries: Iterable[TemporalQuery], retrieve: Callable[[list[Any], int], Iterable[Record]], *,
                    k: int = 10, candidates: int | None = None) -> Iterator[Record]:
    """One result per video (best first, ranks 1..k) for each temporal query: ``path``, ``score`` (the sum
    of the steps' scores; ``fusion`` where the steps' hits were fused rankings) and ``steps`` (each step's ``query``, ``time``, ``score`` and the moment's id and
    shot). ``retrieve(step_queries, n)`` gives up to ``n`` hits per step query, tagged with its ``query_id``."""
    fetch = candidates or max(CANDIDATES, 20 * k)
    for query in queries:
        per_step: list[dict[str, list[Moment]]] = [{} for _ in query.steps]
        position = {step.id: i for i, step in enumerate(query.steps)}
        for hit in retrieve(query.steps, fetch):
            step = position.get(hit.get("query_id"))
            video, time = video_of(hit), frame_time(hit)
            if step is None or video is None or time is None:
                continue
            per_step[step].setdefault(video, []).append(Moment(time, hit_value(hit), hit))
        results = []
        for video in set.intersection(*(set(videos) for videos in per_step)) if per_step else set():
            found = best_chain([videos[video] for videos in per_step], query.within)
            if found is not None:
                results.append((found[0], video, found[1]))
        results.sort(key=lambda result: (-result[0], result[1]))
        for rank, (total, video, chain) in enumerate(results[:k], 1):
            # A step's hit has a score (one ranking) or a fusion value (several fused): the sum is named alike.
            named = "score" if all("score" in moment.hit for moment in chain) else "fusion"
            yield {"query_id": query.id, "query": query.label, "rank": rank, named: round(total, 6),
                   "path": chain[0].hit.get("path", video), "within": query.within,
                   "steps": [{"query": step.label, "time": moment.time,
                              ("score" if "score" in moment.hit else "fusion"): round(moment.score, 6),
                              **{key: moment.hit[key] for key in STEP_FIELDS if key in moment.hit}}
                             for step, moment in zip(query.steps, chain)]}
