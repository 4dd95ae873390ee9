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


# ------------------------------------------------------------------------------------- edited videos
# Videos cut the way news is: hard cuts, dissolves and fades through black between shots whose camera
# pans, zooms or holds still, whose light may change, over generated scenes or photographs.


@dataclass(frozen=True)
class ShotPlan:
    """One shot of an edited video and how it begins.

    ``scene``: a texture seed (as write_video's) or an RGB array (a photograph) the camera looks at.
    ``camera``: "pan" (``speed`` pixels a frame, back and forth), "zoom" (in, by ``speed`` percent a frame,
    the scene's left half) or "still". ``light``: a brightness change (-0.4: to 60 %) over ``light_frames``
    frames from the middle of the shot. ``enter``: how the shot begins: "cut", "dissolve" (the shots blended
    over ``enter_frames`` frames) or "fade" (the shot before fades to black over ``enter_frames`` frames,
    ``black_frames`` more stay black, this one fades in over ``enter_frames``); for the first shot, "fade"
    is a fade in from black and anything else a plain start. ``frames``: frames of this shot alone,
    besides the transitions."""

    frames: int
    scene: Any = 0
    camera: str = "pan"
    speed: float = 1.5
    disc: bool = True
    light: float = 0.0
    light_frames: int = 15
    enter: str = "cut"
    enter_frames: int = 0
    black_frames: int = 0


@dataclass(frozen=True)
class Transition:
    """A true shot boundary: ``kind`` "cut" (``start`` == ``end``: the new shot's first frame), "dissolve"
    or "fade"; a gradual one's blended (or dark) frames are ``start`` .. ``end`` - 1."""

    kind: str
    start: int
    end: int

    @property
    def middle(self) -> int:
        return self.start if self.kind == "cut" else (self.start + self.end) // 2

    @property
    def gradual(self) -> bool:
        return self.kind != "cut"


@dataclass(frozen=True)
class EditedVideo:
    path: Path
    transitions: list[Transition]
    frames: int
    fps: int
    unclean: frozenset[int]  # frames that blend two shots or fade (keyframes must avoid them)

    @property
    def shot_bounds(self) -> list[tuple[int, int]]:
        """Each true shot's frames, split at the transitions' middles."""
        bounds = [0, *(t.middle for t in self.transitions), self.frames]
        return list(zip(bounds, bounds[1:]))


class _Camera:
    """Frames of one shot: step ``n`` is the picture the camera sees ``n`` frames into the shot."""

    def __init__(self, plan: ShotPlan, width: int, height: int) -> None:
        import numpy as np

        self.plan, self.width, self.height = plan, width, height
        if isinstance(plan.scene, (int, np.integer)):
            self.picture = scene_texture(int(plan.scene), width, height)
        else:
            self.picture = cover(plan.scene, 2 * width, height)

    def frame(self, step: int) -> Any:
        import numpy as np
        from PIL import Image

        plan, width, height = self.plan, self.width, self.height
        if plan.camera == "zoom":
            scale = 1.0 + plan.speed / 100.0 * step
            w, h = max(2, round(width / scale)), max(2, round(height / scale))
            left, top = (width - w) // 2, (height - h) // 2
            crop = self.picture[top:top + h, left:left + w]
            frame = np.asarray(Image.fromarray(crop).resize((width, height), Image.BILINEAR))
            if plan.disc:
                frame = scene_frame(np.concatenate([frame, frame], axis=1), step, width, height, pan=0.0)
        else:
            frame = scene_frame(self.picture, step, width, height, plan.speed if plan.camera == "pan" else 0.0)
            if not plan.disc:
                frame = self.picture[:, :width].copy() if plan.camera != "pan" else \
                    _panned(self.picture, step, width, plan.speed)
        middle = plan.frames // 2
        if plan.light and step > middle:
            amount = plan.light * min(1.0, (step - middle) / max(1, plan.light_frames))
            frame = np.clip(frame.astype(np.float32) * (1.0 + amount), 0, 255).astype(np.uint8)
        return frame


def _panned(picture: Any, step: int, width: int, pan: float) -> Any:
    travel = int(step * pan) % (2 * width)
    offset = travel if travel <= width else 2 * width - travel
    return picture[:, offset:offset + width].copy()


def cover(image: Any, width: int, height: int) -> Any:
    """An RGB picture (array or PIL image) scaled and centre-cropped to fill ``width`` × ``height``."""
    import numpy as np
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    picture = picture.convert("RGB")
    scale = max(width / picture.width, height / picture.height)
    size = (max(width, round(picture.width * scale)), max(height, round(picture.height * scale)))
    picture = picture.resize(size, Image.BICUBIC)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return np.asarray(picture.crop((left, top, left + width, top + height)))


def write_edited_video(path: str | Path, shots: Sequence[ShotPlan], *, width: int = 128, height: int = 96,
                       fps: int = 25, codec: str = "libx264", options: dict[str, str] | None = None
                       ) -> EditedVideo:
    """Write a clip of ``shots`` joined as each says (cut, dissolve or fade through black) with PyAV; returns
    where each true boundary is."""
    import av
    import numpy as np

    path = Path(path)
    container = av.open(str(path), mode="w")
    stream = container.add_stream(codec, rate=fps, options=options or {})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    transitions: list[Transition] = []
    unclean: set[int] = set()
    count = 0

    def emit(picture: Any) -> None:
        nonlocal count
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")):
            container.mux(packet)
        count += 1

    def scaled(picture: Any, factor: float) -> Any:
        return (picture.astype(np.float32) * factor).round().astype(np.uint8)

    previous: tuple[_Camera, int] | None = None  # the shot before and its next step
    for number, plan in enumerate(shots):
        camera = _Camera(plan, width, height)
        step = 0
        length = max(1, plan.enter_frames)
        if previous is None:
            if plan.enter == "fade":
                for j in range(length):
                    unclean.add(count)
                    emit(scaled(camera.frame(step), (j + 1) / (length + 1)))
                    step += 1
        elif plan.enter == "dissolve":
            before, at = previous
            start = count
            for j in range(length):
                alpha = (j + 1) / (length + 1)
                unclean.add(count)
                emit((before.frame(at + j).astype(np.float32) * (1 - alpha)
                      + camera.frame(step).astype(np.float32) * alpha).round().astype(np.uint8))
                step += 1
            transitions.append(Transition("dissolve", start, count))
        elif plan.enter == "fade":
            before, at = previous
            start = count
            for j in range(length):
                unclean.add(count)
                emit(scaled(before.frame(at + j), (length - 1 - j) / length))
            for _ in range(plan.black_frames):
                unclean.add(count)
                emit(np.zeros((height, width, 3), dtype=np.uint8))
            for j in range(length):
                unclean.add(count)
                emit(scaled(camera.frame(step), (j + 1) / length))
                step += 1
            transitions.append(Transition("fade", start, count))
        else:
            transitions.append(Transition("cut", count, count))
        for _ in range(plan.frames):
            emit(camera.frame(step))
            step += 1
        previous = (camera, step)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return EditedVideo(path, transitions, count, fps, frozenset(unclean))


def boundary_f1(found: Sequence[tuple[int, str]], truth: Sequence[Transition], tolerance: int = 2
                ) -> dict[str, tuple[float, float, float]]:
    """(precision, recall, F1) for hard cuts and for gradual transitions apart, and for all boundaries.

    ``found``: (frame, kind) of each boundary a detector gave, kind "cut" or a gradual one. A found boundary
    matches a true cut within ``tolerance`` frames, or a true gradual transition when it lies inside its
    frames (give or take ``tolerance``); each true one is matched at most once, nearest first. Recall is per
    true kind; a found boundary that matches nothing counts against the precision of the kind it claims."""
    pairs = []
    for i, (frame, _kind) in enumerate(found):
        for j, true in enumerate(truth):
            inside = (abs(frame - true.start) <= tolerance if not true.gradual
                      else true.start - tolerance <= frame <= true.end - 1 + tolerance)
            if inside:
                pairs.append((abs(frame - true.middle), i, j))
    matched_found: dict[int, int] = {}
    matched_true: set[int] = set()
    for _distance, i, j in sorted(pairs):
        if i not in matched_found and j not in matched_true:
            matched_found[i] = j
            matched_true.add(j)
    result = {}
    for name, is_kind in (("hard", lambda g: not g), ("gradual", lambda g: g), ("all", lambda g: True)):
        true_count = sum(1 for t in truth if is_kind(t.gradual))
        hits = sum(1 for j in matched_true if is_kind(truth[j].gradual))
        false = sum(1 for i, (_f, kind) in enumerate(found) if i not in matched_found and is_kind(kind != "cut"))
        claimed = hits + false
        precision = hits / claimed if claimed else (1.0 if not true_count else 0.0)
        recall = hits / true_count if true_count else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[name] = (precision, recall, f1)
    return result
