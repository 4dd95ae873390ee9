"""Generated videos with cuts at known frames and motion inside every shot, for tests and benchmarks.

Each shot shows its own scene: a smooth random texture in its own colours, seen through a camera that pans
across it, with a bright disc crossing the picture. Panning and the disc change every frame (what a detector
must not call a cut); the cut between two scenes changes everything at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence


@dataclass(frozen=True)
class GeneratedVideo:
    path: Path
    cuts: list[int]  # the first frame of each shot after the first
    frames: int
    fps: int

    @property
    def shot_bounds(self) -> list[tuple[int, int]]:
        bounds = [0, *self.cuts, self.frames]
        return list(zip(bounds, bounds[1:]))


def scene_texture(seed: int, width: int, height: int) -> Any:
    """A smooth random RGB texture (uint8, height × 2·width, so a camera can pan across it)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(max(2, height // 12), max(2, width // 6), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((2 * width, height), Image.BICUBIC), dtype=np.float32)
    tint = rng.uniform(0.2, 1.0, size=3)  # each scene its own dominant colours
    return np.clip(base * tint + rng.uniform(0, 60, size=3), 0, 255).astype(np.uint8)


def scene_frame(texture: Any, step: int, width: int, height: int, pan: float = 1.5) -> Any:
    """Frame ``step`` of a shot over ``texture``: the camera ``pan`` pixels further, the disc moved on."""
    import numpy as np

    travel = int(step * pan) % (2 * width)
    offset = travel if travel <= width else 2 * width - travel  # back and forth, never a jump
    frame = texture[:, offset:offset + width].copy()
    yy, xx = np.ogrid[:height, :width]
    cx = (step * 3) % width
    cy = height // 2 + int(height / 4 * np.sin(step / 7))
    radius = max(3, height // 8)
    frame[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = (250, 250, 250)
    return frame


def write_video(path: str | Path, shot_lengths: Sequence[int], *, width: int = 128, height: int = 96,
                fps: int = 25, codec: str = "libx264", seed: int = 0, pan: float = 1.5,
                options: dict[str, str] | None = None, scenes: Sequence[int] | None = None) -> GeneratedVideo:
    """Write a clip of ``len(shot_lengths)`` shots (lengths in frames) with PyAV; returns where the cuts are.

    ``scenes``: the scene (texture seed) of each shot, so that several videos can show the same scene
    [default: ``seed * 1000 + shot``, a scene of its own]."""
    import av

    path = Path(path)
    container = av.open(str(path), mode="w")
    stream = container.add_stream(codec, rate=fps, options=options or {})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    cuts, frame_number = [], 0
    for shot, length in enumerate(shot_lengths):
        if shot:
            cuts.append(frame_number)
        texture = scene_texture(scenes[shot] if scenes is not None else seed * 1000 + shot, width, height)
        for step in range(length):
            image = av.VideoFrame.from_ndarray(scene_frame(texture, step, width, height, pan), format="rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
            frame_number += 1
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return GeneratedVideo(path, cuts, frame_number, fps)


def scene_still(scene: int, step: int, *, width: int = 128, height: int = 96, pan: float = 1.5) -> Any:
    """The picture of ``scene`` (a texture seed: ``seed * 1000 + shot`` by default) ``step`` frames into its
    shot, as a PIL image: what a user's still of that scene shows, without the video's compression."""
    from PIL import Image

    texture = scene_texture(scene, width, height)
    return Image.fromarray(scene_frame(texture, step, width, height, pan))


def cut_f1(found: Sequence[int], truth: Sequence[int], tolerance: int = 2) -> tuple[float, float, float]:
    """(precision, recall, F1) of found cuts against true ones, each true cut matched at most once within
    ``tolerance`` frames."""
    unmatched = list(truth)
    hits = 0
    for cut in found:
        match = next((t for t in unmatched if abs(t - cut) <= tolerance), None)
        if match is not None:
            unmatched.remove(match)
            hits += 1
    precision = hits / len(found) if found else (1.0 if not truth else 0.0)
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
