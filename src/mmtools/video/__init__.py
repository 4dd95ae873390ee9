"""Video: decoding with PyAV, shot detection, keyframe choice, moments in results and events in time order.

Submodules: ``decode`` (opening videos, the low-resolution analysis pass, frames at given times),
``shots`` (cut detection), ``keyframes`` (the records of `mmtools keyframes`), ``sources`` (video frames as
image sources of the embedding pipeline), ``moments`` (times in results) and ``temporal`` (queries of
several steps in time order). PyAV is the optional ``video`` extra and is imported only when a video is
actually opened.
"""

from __future__ import annotations

import unicodedata
from typing import Any

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".ts",
                              ".mts", ".m2ts", ".wmv", ".flv", ".3gp", ".ogv"})


def frame_time(record: dict[str, Any]) -> float | None:
    """The ``time`` of a video-frame record (keyframes, or their embeddings), or None for any other record."""
    time = record.get("time")
    if isinstance(time, bool) or not isinstance(time, (int, float)) or time != time or time < 0:
        return None
    return float(time)


def video_of(record: dict[str, Any]) -> str | None:
    """The video a frame record comes from (its ``path``, in NFC), or None for a record that is no frame:
    `index --sync` treats a video as one source, so a changed video's old frames go with it."""
    path = record.get("path")
    if frame_time(record) is None or not isinstance(path, str) or not path:
        return None
    return unicodedata.normalize("NFC", path)
