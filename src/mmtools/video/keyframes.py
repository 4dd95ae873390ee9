"""Keyframes: shots found in a video, a few frames chosen in each, one record per frame.

Records (the schema of `mmtools keyframes`, docs/records.md): ``path`` (the video), ``time`` (seconds),
``frame`` (index in decoding order), ``shot`` (index in the video), ``shot_start``, ``shot_end`` (seconds),
``id`` = ``VIDEO_ID#t=TIME`` (the video's canonical id, as an image's, with a media fragment),
``video_duration`` and ``fps``; with a frames folder, ``frame_path`` names the JPEG written.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.images import ImageSource
from mmtools.records import Record
from mmtools.video.decode import VideoDecodeError, Scan, frames_at, scan_video
from mmtools.video.shots import MIN_SHOT_FRAMES, THRESHOLD, Shot, detect_boundaries, shots_from_cuts

LONG_SHOT_S = 10.0  # by default a shot gets one keyframe per started 10 seconds
JPEG_QUALITY = 90


@dataclass(frozen=True)
class KeyframeChoice:
    """How keyframes are chosen: ``per_shot`` frames spread over each shot (None: one per started
    LONG_SHOT_S seconds, so one in the middle of a short shot), or one every ``every`` seconds. ``gradual``:
    dissolves and fades through black are shot boundaries too, not only hard cuts."""

    per_shot: int | None = None
    every: float | None = None
    threshold: float = THRESHOLD
    min_shot_frames: int = MIN_SHOT_FRAMES
    gradual: bool = True


def moment_id(video_id: str, time: float) -> str:
    """``VIDEO_ID#t=TIME``, time in seconds to the millisecond without trailing zeros (``a.mp4#t=83.2``)."""
    return f"{video_id}#t={format_seconds(time)}"


def format_seconds(time: float) -> str:
    text = f"{round(float(time), 3):.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def chosen_frames(shots: list[Shot], scan: Scan, choice: KeyframeChoice,
                  avoid: list[tuple[int, int]] = ()) -> list[tuple[int, Shot]]:
    """``(frame index, its shot)`` of each keyframe, in time order; every shot has at least one. Frames in
    the ``avoid`` ranges (``[start, end)``: blended by a dissolve, faded) are replaced by the nearest frame
    of the same shot outside them, where the shot has one."""
    if choice.every:
        return _uniform(shots, scan, choice.every)
    picked: list[tuple[int, Shot]] = []
    for shot in shots:
        clean = _clean_frames(shot, avoid)
        count = choice.per_shot or max(1, math.ceil(shot.duration / LONG_SHOT_S - 1e-9))
        count = min(count, len(clean) or shot.frames)
        if clean and len(clean) < shot.frames:
            frames = sorted({clean[(2 * j + 1) * len(clean) // (2 * count)] for j in range(count)})
        else:
            frames = sorted({shot.start_frame + (2 * j + 1) * shot.frames // (2 * count) for j in range(count)})
        picked += [(frame, shot) for frame in frames]
    return picked


def _clean_frames(shot: Shot, avoid: Iterable[tuple[int, int]]) -> list[int]:
    blocked = [(max(start, shot.start_frame), min(end, shot.end_frame)) for start, end in avoid
               if start < shot.end_frame and end > shot.start_frame]
    if not blocked:
        return list(range(shot.start_frame, shot.end_frame))
    return [f for f in range(shot.start_frame, shot.end_frame) if not any(a <= f < b for a, b in blocked)]


def _uniform(shots: list[Shot], scan: Scan, every: float) -> list[tuple[int, Shot]]:
    import numpy as np

    end = scan.decoded_duration
    tolerance = 0.5 / scan.info.fps
    picked: list[tuple[int, Shot]] = []
    seen: set[int] = set()
    shot_of = np.asarray([shot.start_frame for shot in shots])
    for step in range(int(end / every) + 1):
        target = step * every
        if target >= end:
            break
        frame = max(0, int(np.searchsorted(scan.times, target + tolerance, side="right")) - 1)
        if frame not in seen:
            seen.add(frame)
            picked.append((frame, shots[int(np.searchsorted(shot_of, frame, side="right")) - 1]))
    return picked


def video_keyframes(source: ImageSource, choice: KeyframeChoice = KeyframeChoice()) -> tuple[list[Record],
                                                                                             str | None]:
    """The keyframe records of one video and, if it is damaged part-way, where (its records stop there).
    VideoDecodeError when it cannot be read at all."""
    scan = scan_video(source.path)
    boundaries, avoid = detect_boundaries(scan, threshold=choice.threshold,
                                          min_shot_frames=choice.min_shot_frames, gradual=choice.gradual)
    shots = shots_from_cuts([b.frame for b in boundaries], scan.times, scan.info.fps)
    duration = round(scan.decoded_duration, 3)
    fps = round(scan.info.fps, 3)
    records = []
    for frame, shot in chosen_frames(shots, scan, choice, avoid):
        time = round(float(scan.times[frame]), 3)
        records.append({**source.record, "path": source.record.get("path", source.path), "time": time,
                        "frame": frame, "shot": shot.index, "shot_start": round(shot.start, 3),
                        "shot_end": round(shot.end, 3), "id": moment_id(source.id, time),
                        "video_duration": duration, "fps": fps})
    return records, scan.damage


def keyframe_records(sources: Iterable[ImageSource], choice: KeyframeChoice = KeyframeChoice(), *,
                     frames_dir: str | os.PathLike[str] | None = None, jpeg_quality: int = JPEG_QUALITY,
                     on_problem: ProblemHandler = raise_problem) -> Iterator[Record]:
    """Keyframe records of each video in turn. Unreadable videos are reported and skipped; a damaged one is
    reported and gives the keyframes before the damage. With ``frames_dir``, each keyframe is also written
    there as a JPEG (``frame_path``)."""
    for source in sources:
        try:
            records, damage = video_keyframes(source, choice)
        except VideoDecodeError as exc:
            on_problem(Problem(source.path, f"{exc}, skipped"))
            continue
        if damage:
            on_problem(Problem(source.path, f"{damage}; the keyframes before it are kept"))
        if frames_dir is not None and records:
            records = list(_with_frame_files(source, records, Path(frames_dir), jpeg_quality, on_problem))
        yield from records


def _with_frame_files(source: ImageSource, records: list[Record], folder: Path, quality: int,
                      on_problem: ProblemHandler) -> Iterator[Record]:
    from mmtools.records import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(source.path).stem
    tag = hashlib.sha256(source.id.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    written: dict[int, Any] = {}
    try:
        for position, image in frames_at(source.path, [r["time"] for r in records]):
            if isinstance(image, VideoDecodeError):
                written[position] = image
                continue
            target = folder / f"{stem}-{tag}-{records[position]['frame']:06d}.jpg"
            with atomic_path(target, suffix=".jpg") as tmp:
                image.save(tmp, format="JPEG", quality=quality)
            written[position] = str(target)
    except VideoDecodeError as exc:  # gone or changed since it was scanned
        on_problem(Problem(source.path, f"{exc}; no frame files written"))
    for position, record in enumerate(records):
        result = written.get(position)
        if isinstance(result, str):
            yield {**record, "frame_path": result}
        else:
            if result is not None:
                on_problem(Problem(record["id"], f"{result}; no frame file written"))
            yield record
