"""Video frames as image sources of the embedding pipeline: no image files, each frame decoded from its video.

``with_video_frames`` turns the sources embed-images discovered into what it embeds: a keyframe record (one
with a ``path`` and a numeric ``time``) becomes a ``VideoFrameSource``; a video file named directly, found in
a folder, or given as a record without a ``time`` is first cut into keyframes with the defaults of
`mmtools keyframes`; images pass through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from mmtools.errors import MissingDependencyError, Problem, ProblemHandler, raise_problem
from mmtools.images import ImageDecodeError, ImageSource
from mmtools.video import VIDEO_EXTENSIONS, frame_time
from mmtools.video.keyframes import KeyframeChoice, format_seconds, keyframe_records


@dataclass
class VideoFrameSource(ImageSource):
    """The frame of the video at ``path`` showing at ``time`` seconds."""

    time: float = 0.0

    @property
    def where(self) -> str:
        return f"{self.path}#t={format_seconds(self.time)}"

    def content_key(self, sha256: str) -> str:
        return f"{sha256}#t={format_seconds(self.time)}"

    @classmethod
    def decode_group(cls, sources: list[ImageSource], *, max_pixels: int, draft_size: int | None
                     ) -> Iterator[tuple[ImageSource, Any]]:
        """The frames of each video in one pass over it, whatever the order of ``sources``."""
        from mmtools.video.decode import VideoDecodeError, frames_at

        videos: dict[str, list[VideoFrameSource]] = {}
        for source in sources:
            videos.setdefault(source.path, []).append(source)  # type: ignore[arg-type]
        for path, frames in videos.items():
            try:
                for position, image in frames_at(path, [f.time for f in frames], short_side=draft_size):
                    if not isinstance(image, Exception) and image.width * image.height > max_pixels:
                        image = VideoDecodeError(f"frame is {image.width}×{image.height} pixels, over the limit "
                                                 f"of {max_pixels:,} (raise it with --max-pixels)")
                    yield frames[position], image
            except ImageDecodeError as exc:
                yield from ((frame, exc) for frame in frames)
            except MissingDependencyError as exc:
                error = ImageDecodeError(f"{exc.message} ({exc.hint})")
                yield from ((frame, error) for frame in frames)


def is_video_path(path: str) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def with_video_frames(sources: Iterable[ImageSource], choice: KeyframeChoice = KeyframeChoice(), *,
                      on_problem: ProblemHandler = raise_problem) -> Iterator[ImageSource]:
    """Keyframe records become video frames; videos become their keyframes; images stay as they are."""
    for source in sources:
        time = frame_time(source.record)
        if time is not None:
            yield VideoFrameSource(source.id, source.path, source.record, time=time)
        elif is_video_path(source.path):
            yield from _keyframes_of(source, choice, on_problem)
        else:
            yield source


def _keyframes_of(video: ImageSource, choice: KeyframeChoice, on_problem: ProblemHandler
                  ) -> Iterator[ImageSource]:
    try:
        records = list(keyframe_records([video], choice, on_problem=on_problem))
    except MissingDependencyError as exc:
        on_problem(Problem(video.path, f"{exc.message}, skipped ({exc.hint})"))
        return
    for record in records:
        yield VideoFrameSource(record["id"], video.path, record, time=record["time"])
