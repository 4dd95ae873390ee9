"""Decoding videos with PyAV: a fast low-resolution pass over every frame, and full frames at given times.

The analysis pass decodes every frame (a cut is a property of two neighbouring frames) but asks the decoder
to skip what analysis does not need: the H.264/HEVC loop filter is skipped, and each frame is scaled down to
a small thumbnail by FFmpeg's scaler before it reaches Python. Decoding runs on a thread of its own, a chunk of
frames at a time, while the chunks already decoded are converted to HSV and shrunk by Pillow (in C, a chunk in
one call) and scored by numpy (a few array operations per chunk, not per frame); FFmpeg and Pillow release the
interpreter, so the two threads overlap on a machine with two cores or more. Besides each frame's difference
from the one before, the pass keeps what gradual transitions are found by (mmtools.video.shots): a tiny colour
thumbnail of every frame (16 pixels wide), a grey one (32 wide) and its mean brightness.
Frames at given times are found by seeking to the keyframe before each time (or decoding on, when the next
time is close), so a video is decoded at most about once for all its frames.

Times are seconds from the start of the video stream (its first timestamp is 0 here), which is what a
player's ``#t=`` media fragment means.
"""

from __future__ import annotations

import os
import queue
import threading
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from mmtools.errors import MissingDependencyError
from mmtools.images import ImageDecodeError, stat_image_file

ANALYSIS_WIDTH = 128  # thumbnails for cut detection: what PySceneDetect's automatic downscaling gives too
TINY_WIDTH = 16  # colour thumbnails for gradual transitions: block means of the analysis thumbnail
LUMA_WIDTH = 32  # grey thumbnails for telling camera motion from a change of picture
CHUNK_FRAMES = 64  # frames decoded before they are scored together (numpy over many frames at once)
QUEUE_CHUNKS = 2  # chunks waiting to be scored
HUE_STEPS = 255  # Pillow's hue scale (0-254); OpenCV's, which PySceneDetect's threshold is on, is 0-180
REORDER_FRAMES = 18  # frames H.264 may decode ahead of the one it outputs: 16 B-frames, and 2 to spare
SEEK_AHEAD_S = 4.0  # a frame this close after the last one decoded is reached by decoding on, not seeking


class VideoDecodeError(ImageDecodeError):
    """A video (or a frame of one) cannot be decoded; the message is the reason, phrased for the user."""


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    duration: float | None  # from the container's header, if it says
    width: int
    height: int


@dataclass
class Scan:
    """What the analysis pass saw: each decoded frame's time and its thumbnail's difference from the one
    before (``scores[0]`` is 0), and where decoding stopped early, if it did."""

    info: VideoInfo
    times: Any  # float64 array, seconds
    scores: Any  # float32 array, PySceneDetect's content value (mean HSV difference, 0-255)
    damage: str | None = None
    tiny: Any = None  # uint8 (frames, h, TINY_WIDTH, 3): each frame's colour thumbnail
    luma: Any = None  # uint8 (frames, h, LUMA_WIDTH): each frame's grey thumbnail
    brightness: Any = None  # float32 (frames,): each frame's mean HSV value (0-255); black is about 0

    @property
    def decoded_duration(self) -> float:
        if not len(self.times):
            return 0.0
        return float(self.times[-1]) + 1.0 / self.info.fps


def require_av() -> Any:
    try:
        import av
    except ImportError:
        raise MissingDependencyError("reading videos needs the optional PyAV package",
                                     hint="pip install 'mmtools[video]'") from None
    return av


def open_media(path: str, error: type[VideoDecodeError] | None = None) -> Any:
    """An open PyAV container of ``path``; ``error`` (VideoDecodeError) naming why when it cannot be opened."""
    error = error or VideoDecodeError
    av = require_av()
    if stat_image_file(path).st_size == 0:
        raise error("file is empty (0 bytes)")
    try:
        return av.open(path, mode="r", metadata_errors="replace")
    except IsADirectoryError:
        raise error("is a folder, not a media file") from None
    except PermissionError:
        raise error("permission denied") from None
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise error(f"not a file FFmpeg can read ({_reason(exc)})") from None


def open_video(path: str) -> tuple[Any, Any]:
    """``(container, video stream)``; VideoDecodeError naming why when it cannot be opened."""
    container = open_media(path)
    if not container.streams.video:
        container.close()
        raise VideoDecodeError("has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def video_info(container: Any, stream: Any) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 25.0
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    return VideoInfo(fps=fps if fps > 0 else 25.0, duration=duration, width=stream.codec_context.width,
                     height=stream.codec_context.height)


def _start(stream: Any) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def scan_video(path: str, *, width: int = ANALYSIS_WIDTH) -> Scan:
    """Decode every frame of ``path`` at low resolution and score each against the one before it.

    A video that is damaged or cut short part-way is scanned up to the damage (``Scan.damage`` says
    where); one that cannot be read at all raises VideoDecodeError.
    """
    import numpy as np

    av = require_av()
    container, stream = open_video(path)
    try:
        info = video_info(container, stream)
        _decode_for_analysis(stream)
        start = _start(stream)
        block = max(1, width // TINY_WIDTH)  # the tiny thumbnails' blocks: each frame is whole blocks high
        height = round(width * info.height / max(1, info.width) / block) * block if info.width else width
        height = max(block, height)
        times: list[Any] = []
        scores: list[Any] = []
        tiny: list[Any] = []
        luma: list[Any] = []
        brightness: list[Any] = []
        previous = None
        damage = None
        try:
            with closing(_decoded_chunks(container, stream, width, height, av)) as chunks:
                for chunk_times, rgb in chunks:
                    hsv, grey, small = converted(rgb)
                    scores.append(content_values(hsv, previous))
                    tiny.append(small)
                    luma.append(grey)
                    brightness.append(hsv[..., 2].reshape(len(hsv), -1).mean(axis=1, dtype=np.float32))
                    times.append(chunk_times)
                    previous = hsv[-1]
        except (av.FFmpegError, MemoryError, ValueError) as exc:
            last = format_clock(times[-1][-1] - start) if times else "the start"
            damage = f"damaged after {last} ({_reason(exc)})"
        if not times:
            raise VideoDecodeError(damage or "no frame could be decoded")
        scan = Scan(info, np.concatenate(times) - start, np.concatenate(scores), damage, np.concatenate(tiny),
                    np.concatenate(luma), np.concatenate(brightness))
        if damage is None and info.duration and scan.decoded_duration < info.duration - max(1.0, 2 / info.fps):
            scan.damage = (f"ends at {format_clock(scan.decoded_duration)} but its header says "
                           f"{format_clock(info.duration)} (truncated?)")
        return scan
    finally:
        container.close()


def _decoded_chunks(container: Any, stream: Any, width: int, height: int, av: Any
                    ) -> Iterator[tuple[Any, Any]]:
    """``(times, RGB thumbnails)`` of up to CHUNK_FRAMES frames at a time (frames, height, width, 3),
    decoded and scaled on a thread of its own (FFmpeg lets go of the interpreter meanwhile); a decoding
    error is raised here, after the frames before it."""
    import numpy as np

    done = object()
    chunks: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_CHUNKS)
    stop = threading.Event()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def decode() -> None:
        times: list[float] = []
        rgb: list[Any] = []

        def flush() -> None:
            if times:
                put((np.asarray(times, dtype=np.float64), np.stack(rgb)))
                times.clear(), rgb.clear()

        try:
            for frame in container.decode(stream):
                if stop.is_set():
                    return
                if frame.time is None:
                    continue
                times.append(frame.time)
                rgb.append(frame.reformat(width=width, height=height, format="rgb24",
                                          interpolation="FAST_BILINEAR").to_ndarray())
                if len(times) == CHUNK_FRAMES:
                    flush()
        except BaseException as exc:  # raised again in the caller's thread, after the frames before it
            flush()
            put(exc)
            return
        flush()
        put(done)

    worker = threading.Thread(target=decode, name="mmtools-video-decode", daemon=True)
    worker.start()
    try:
        while (item := chunks.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def content_values(hsv: Any, previous: Any = None) -> Any:
    """PySceneDetect's content value of each of a run of HSV thumbnails (frames, h, w, 3; Pillow's uint8
    scales) against the one before it (``previous`` for the first; 0 without one): the mean absolute
    difference of H, S and V, averaged over the three, on OpenCV's scales (H 0-180, S and V 0-255).

    Hue is an angle: red sits at both ends of its scale, and compression noise on a red area flips it from
    one end to the other. PySceneDetect takes that as a change of 178 (a false cut on any red shot); here
    the hue difference goes the short way round the circle."""
    import numpy as np

    if previous is None:
        before, after, first = hsv[:-1], hsv[1:], np.zeros(min(1, len(hsv)), dtype=np.float32)
    else:
        before, after, first = np.concatenate([previous[None], hsv[:-1]]), hsv, np.zeros(0, dtype=np.float32)
    if not len(after):  # a single frame: nothing before it
        return first
    difference = np.maximum(after, before)
    difference -= np.minimum(after, before)  # |a - b| in uint8: no wider copy of the frames
    hue = difference[..., 0]
    np.minimum(hue, HUE_STEPS - hue, out=hue)
    total = np.add.reduce(difference.reshape(len(difference), -1), axis=1, dtype=np.uint32)
    hue_total = np.add.reduce(hue.reshape(len(hue), -1), axis=1, dtype=np.uint32)
    values = (total - hue_total * (1 - 180.0 / HUE_STEPS)) / (3 * max(1, hue[0].size))
    return np.concatenate([first, values.astype(np.float32)])


def converted(rgb: Any) -> tuple[Any, Any, Any]:
    """A run of RGB analysis thumbnails (frames, h, w, 3; h a multiple of w // TINY_WIDTH) as HSV on
    Pillow's uint8 scales, as grey thumbnails LUMA_WIDTH wide and as tiny colour ones TINY_WIDTH wide (both
    means of blocks of pixels). Pillow does each in C over the whole run at once, seen as one tall picture
    (blocks never straddle two frames), with the interpreter let go."""
    import numpy as np
    from PIL import Image

    count, height, width = rgb.shape[:3]
    tall = Image.frombuffer("RGB", (width, count * height), np.ascontiguousarray(rgb), "raw", "RGB", 0, 1)
    hsv = np.asarray(tall.convert("HSV")).reshape(rgb.shape)
    shrunk = []
    for columns in (LUMA_WIDTH, TINY_WIDTH):
        block = max(1, width // columns)
        shrunk.append(np.asarray(tall.reduce(block)).reshape(count, -1, -(-width // block), 3))
    colour, tiny = shrunk
    grey = ((colour.sum(axis=3, dtype=np.uint16) * 2 + 3) // 6).astype(np.uint8)  # channels' mean, rounded
    return hsv, grey, tiny


def _decode_for_analysis(stream: Any) -> None:
    """Decoder settings for the analysis pass: skip the loop filter (it only smooths block edges, which a
    thumbnail difference cannot see), and decode on all cores but the one that scores the frames (FFmpeg's
    frame threads cost a third more processor time each frame, so one core decodes on its own)."""
    try:
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = max(1, _cores() - 1)
    except (AttributeError, ValueError, TypeError):
        pass
    try:
        # "fast": the decoder's shortcuts that are allowed to differ from the standard (invisible here)
        stream.codec_context.options = {**stream.codec_context.options, "skip_loop_filter": "all",
                                        "flags2": "+fast"}
    except (AttributeError, ValueError, TypeError):
        pass


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def frame_at(path: str, seconds: float, *, max_pixels: int | None = None, short_side: int | None = None) -> Any:
    """The frame showing at ``seconds`` of the video (as ``frames_at``: the last one starting at or before it,
    counted from the stream's start), as RGB: the one frame that was embedded for a moment, and that a page
    shows for it. VideoDecodeError (an ImageDecodeError) when there is none, or it is over ``max_pixels``."""
    for _position, image in frames_at(path, [seconds], short_side=short_side, max_pixels=max_pixels):
        if isinstance(image, BaseException):
            raise image
        return image.convert("RGB")
    raise VideoDecodeError(f"has no frame at {format_clock(seconds)}")


def frames_at(path: str, times: Sequence[float], *, short_side: int | None = None, max_pixels: int | None = None
              ) -> Iterator[tuple[int, Any]]:
    """``(i, RGB PIL image)`` for each ``times[i]``, in time order, decoded in one pass over the video:
    seeking to the keyframe before a time only when it is far ahead of the last frame decoded, and far from
    the next time skipping the frames no other frame refers to.

    Each image is the frame showing at that time (the last one starting at or before it, within half a
    frame). ``short_side``: frames larger than twice that are scaled down to it (the model shrinks them
    anyway). A time past the decodable end gives a VideoDecodeError in place of the image; a video that
    cannot be opened raises it, as does one whose frames are over ``max_pixels``.
    """
    av = require_av()
    wanted = [float(t) for t in times]
    container, stream = open_video(path)
    try:
        info = video_info(container, stream)
        if max_pixels is not None and info.width * info.height > max_pixels:
            raise VideoDecodeError(f"video frames are over the limit of {max_pixels:,} pixels")
        start, tolerance = _start(stream), 0.5 / info.fps
        # Frames far before the next time wanted are decoded only where later frames need them: a frame no
        # other refers to is skipped (about half of an H.264 stream's). Frames are decoded a few behind the
        # packets fed in (threads, B-frame reordering): full decoding resumes that far before the time.
        near = (_cores() + REORDER_FRAMES) / info.fps
        frames: Iterator[Any] | None = None
        current: tuple[Any, float] | None = None  # the last frame starting at or before the previous time
        ahead: tuple[Any, float] | None = None  # decoded, starts after the previous time
        for position in sorted(range(len(wanted)), key=lambda i: wanted[i]):
            target = wanted[position]
            reached = (ahead or current or (None, float("-inf")))[1]
            if frames is None or target > reached + SEEK_AHEAD_S:
                container.seek(max(0, int((target + start) / stream.time_base)), stream=stream,
                               backward=True, any_frame=False)
                frames, current, ahead = _timed_frames(container.decode(stream), start), None, None
            try:
                while True:
                    if ahead is None:
                        # (after a seek, not before the first frame says how far the time is)
                        _skip_unreferenced(stream, current is not None and target - current[1] > near)
                        ahead = next(frames)
                    if ahead[1] > target + tolerance:
                        break
                    current, ahead = ahead, None
                chosen = current or ahead
            except StopIteration:
                frames = None
                near_end = current is not None and target <= current[1] + 1.0 / info.fps + tolerance
                chosen = current if near_end else None
            except (av.FFmpegError, MemoryError, ValueError) as exc:
                frames, current, ahead = None, None, None
                yield position, VideoDecodeError(f"damaged near {format_clock(target)} ({_reason(exc)})")
                continue
            yield position, (_to_image(chosen[0], short_side) if chosen is not None else VideoDecodeError(
                f"has no frame at {format_clock(target)} (past its end, or damaged before it)"))
    finally:
        container.close()


def _skip_unreferenced(stream: Any, skip: bool) -> None:
    try:
        stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
    except (AttributeError, ValueError, TypeError):
        pass


def _timed_frames(frames: Iterator[Any], start: float) -> Iterator[tuple[Any, float]]:
    for frame in frames:
        if frame.time is not None:
            yield frame, frame.time - start


def _to_image(frame: Any, short_side: int | None) -> Any:
    width, height = frame.width, frame.height
    if short_side and min(width, height) > 2 * short_side:
        scale = short_side / min(width, height)
        frame = frame.reformat(width=max(2, round(width * scale)), height=max(2, round(height * scale)))
    return frame.to_image()


def format_clock(seconds: float) -> str:
    """``83.2`` → ``01:23``, ``3723`` → ``1:02:03``: how a player shows a moment."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split()) or type(exc).__name__
