"""Moments of videos in search results: how a hit on a frame is shown, grouped and pictured."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from mmtools.video import frame_time, video_of
from mmtools.video.decode import format_clock


def moment_label(record: dict[str, Any]) -> Any:
    """``video.mp4 01:23`` for a hit on a video frame; the path (or id) of anything else."""
    path = record.get("path")
    where = path if isinstance(path, str) and path else record.get("id")
    time = frame_time(record)
    return where if time is None or where is None else f"{where} {format_clock(time)}"


def best_moment_per_video(hits: Iterable[dict[str, Any]], k: int) -> Iterator[dict[str, Any]]:
    """Of each query's hits (in rank order), each video's best moment only, ranked again 1..k; images are
    their own group. Hits must come query by query, as search yields them."""
    query = object()
    seen: set[str] = set()
    rank = 0
    for hit in hits:
        if hit.get("query_id") != query:
            query, seen, rank = hit.get("query_id"), set(), 0
        key = video_of(hit) or str(hit.get("id"))
        if key in seen or rank >= k:
            continue
        seen.add(key)
        rank += 1
        yield {**hit, "rank": rank}


def frame_images(moments: Sequence[tuple[str, float]], *, base_dir: str | Path | None = None,
                 short_side: int | None = None) -> dict[tuple[str, float], Any]:
    """The frame at each ``(video path, time)`` (relative paths against ``base_dir``), each video decoded in
    one pass: an RGB image, or the ImageDecodeError that says why there is none."""
    from mmtools.errors import MissingDependencyError
    from mmtools.images import ImageDecodeError
    from mmtools.video.decode import frames_at

    videos: dict[str, list[float]] = {}
    for path, time in moments:
        videos.setdefault(path, []).append(time)
    found: dict[tuple[str, float], Any] = {}
    for path, times in videos.items():
        source = str(Path(base_dir or ".") / path)
        try:
            for position, image in frames_at(source, times, short_side=short_side):
                found[(path, times[position])] = image
        except ImageDecodeError as exc:
            found.update({(path, time): exc for time in times})
        except MissingDependencyError as exc:
            found.update({(path, time): ImageDecodeError(f"{exc.message} ({exc.hint})") for time in times})
    return found
