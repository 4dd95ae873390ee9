"""Shot boundaries from the analysis pass's frame differences.

The score of a frame is PySceneDetect's content value: the mean absolute difference of its HSV thumbnail
from the frame before. PySceneDetect's content detector cuts wherever that passes a threshold (27); motion
that is fast enough (a pan over texture, an object crossing close to the camera) passes it too, for several
frames in a row. A cut is one frame that differs from its neighbours, so here a frame over the threshold is
a cut only when its score also stands out from the frames around it by half the threshold (the idea of
PySceneDetect's adaptive detector, with a margin instead of a ratio so that a cut inside a moving shot is
still found). A weaker change, from half the threshold up, is a cut when it is three times what surrounds it
(the adaptive detector's rule, which finds cuts between shots of similar brightness in still scenes). Shots
shorter than ``min_shot_frames`` are not cut (PySceneDetect's ``min_scene_len``, 15 frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THRESHOLD = 27.0
MIN_SHOT_FRAMES = 15
LOW_CONTRAST_RATIO = 3.0  # a weaker change (half the threshold up) is a cut when 3× what surrounds it
WINDOW = 2  # frames either side whose scores say what "ordinary" change is around a frame


@dataclass(frozen=True)
class Shot:
    index: int
    start_frame: int  # first frame
    end_frame: int  # one past the last frame
    start: float  # seconds: the first frame's time
    end: float  # seconds: when the last frame stops showing

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame


def detect_cuts(scores: Any, *, threshold: float = THRESHOLD, min_shot_frames: int = MIN_SHOT_FRAMES,
                window: int = WINDOW) -> list[int]:
    """Indexes of the frames that start a new shot (never 0), in order."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    count = len(scores)
    cuts: list[int] = []
    last = 0
    for i in np.flatnonzero(scores >= threshold / 2):
        i = int(i)
        if i == 0 or i - last < min_shot_frames:
            continue
        around = np.concatenate([scores[max(1, i - window):i], scores[i + 1:min(count, i + window + 1)]])
        ordinary = float(around.mean()) if len(around) else 0.0
        stands_out = scores[i] - ordinary >= threshold / 2 if scores[i] >= threshold else \
            scores[i] >= LOW_CONTRAST_RATIO * ordinary
        if stands_out:
            cuts.append(i)
            last = i
    return cuts


def shots_from_cuts(cuts: list[int], times: Any, fps: float) -> list[Shot]:
    """Shots of a scan whose frames show at ``times``, cut before each frame in ``cuts``."""
    count = len(times)
    bounds = [0, *cuts, count]
    end_of_video = float(times[-1]) + 1.0 / fps
    shots = []
    for index, (first, stop) in enumerate(zip(bounds, bounds[1:])):
        end = float(times[stop]) if stop < count else end_of_video
        shots.append(Shot(index, first, stop, float(times[first]), end))
    return shots


# ------------------------------------------------------------------------------------ gradual transitions
# A dissolve blends shot A into shot B over some frames, so no two neighbouring frames differ much; a fade
# takes A down to black and B up from it. Both are found on the scan's tiny thumbnails, over spans of
# several lengths (a fifth of a second to two seconds):
# - a fade is a run of black frames (mean brightness under BLACK_LEVEL, PySceneDetect's threshold
#   detector's idea) with the frames darkening into it and brightening out of it on either side;
# - a dissolve is a span whose two ends differ (``far``: mean absolute difference of the thumbnails) while
#   its middle frame is their average (``off``: the middle's distance from the average of the ends, small
#   next to ``far``), the change went one way (``far`` near the sum of the steps' differences along the
#   span: a pan or a zoom moves a pixel through several values and back), it changed more than the spans
#   either side of it (steady motion changes them alike: PySceneDetect's adaptive idea over spans), and
#   the ends are not one picture moved, zoomed or lit differently (MotionAligner: their correlation once a
#   pan or zoom is undone; still_change: their brightness patterns compared in place, robust to something
#   small moving). Thresholds were tuned on the `tune` videos of benchmarks/video_keyframes.py.
# A transition is placed at its middle: the span, among those passing the tests, whose middle is nearest
# the average of its ends, of the longest such span (the whole transition).

BLACK_LEVEL = 16.0  # mean HSV value (0-255) of a frame taken as black
SPANS_S = (0.2, 0.32, 0.48, 0.72, 1.0, 1.4, 2.0)  # span lengths tried, seconds
MIN_CHANGE = 18.0  # mean absolute difference (0-255) of a span's two ends for a dissolve
MAX_OFF = 0.3  # the middle frame's distance from the ends' average, as a share of their difference
MIN_ONE_WAY = 0.45  # the ends' difference as a share of the summed differences of the steps between them
STANDS_OUT = 1.3  # a span's change over the smaller of the changes of the spans either side of it
MAX_STRUCTURE = 0.82  # correlation of the ends once motion is undone above which it is the same picture
MIN_STILL_CHANGE = 0.3  # the ends' brightness patterns compared in place (still_change) at or under which too


@dataclass(frozen=True)
class Boundary:
    """A shot boundary: ``frame`` starts the new shot; ``kind`` "cut", "dissolve" or "fade"; frames
    ``start`` .. ``end`` - 1 blend the shots (or fade), none for a cut."""

    frame: int
    kind: str
    start: int
    end: int


def detect_boundaries(scan: Any, *, threshold: float = THRESHOLD, min_shot_frames: int = MIN_SHOT_FRAMES,
                      gradual: bool = True) -> tuple[list[Boundary], list[tuple[int, int]]]:
    """Shot boundaries of a scan (hard cuts, and with ``gradual`` dissolves and fades), in order, and the
    frame ranges ``[start, end)`` no keyframe should come from: blended and faded frames, including a fade
    at the very start or end of the video."""
    cuts = [Boundary(i, "cut", i, i) for i in detect_cuts(scan.scores, threshold=threshold,
                                                         min_shot_frames=min_shot_frames)]
    if not gradual or scan.tiny is None or len(scan.times) < 3:
        return cuts, []
    fades, dark = detect_fades(scan.brightness)
    found = list(fades)  # a fade's steps into black can look like a cut: the fade takes its place
    for cut in cuts:
        if all(not _near(cut, fade, 0) for fade in fades):
            found.append(cut)
    # a fade in at the start or out at the end is no boundary, nor a dissolve
    edges = [Boundary(start, "fade", start, end) for start, end in dark]
    for dissolve in detect_dissolves(scan.tiny, scan.info.fps, scan.scores, threshold, scan.luma):
        if all(not _near(dissolve, other, min_shot_frames) for other in found) and \
                all(not _near(dissolve, edge, 0) for edge in edges):
            found.append(dissolve)
    found.sort(key=lambda b: b.frame)
    unclean = dark + [(b.start, b.end) for b in found if b.kind != "cut"]
    return found, sorted(unclean)


def _near(one: Boundary, other: Boundary, min_shot_frames: int) -> bool:
    return (one.start - min_shot_frames < other.end and other.start - min_shot_frames < one.end) or \
        abs(one.frame - other.frame) < min_shot_frames


def detect_fades(brightness: Any, *, black: float = BLACK_LEVEL) -> tuple[list[Boundary], list[tuple[int, int]]]:
    """Fades through black: each run of black frames with the darkening before it and the brightening after;
    a boundary for each run inside the video, and every such span (also a fade in at the start or out at
    the end) as frames for keyframes to avoid."""
    import numpy as np

    level = np.asarray(brightness, dtype=np.float64)
    count = len(level)
    boundaries, spans = [], []
    dark = level <= black
    i = 0
    while i < count:
        if not dark[i]:
            i += 1
            continue
        j = i
        while j < count and dark[j]:
            j += 1
        start = i
        while start > 0 and level[start - 1] > level[start] + 0.5 and i - start < 75:
            start -= 1
        end = j
        while end < count and level[end] > level[end - 1] + 0.5 and end - j < 75:
            end += 1
        spans.append((start, end))
        if i > 0 and j < count:
            boundaries.append(Boundary((start + end) // 2, "fade", start, end))
        i = j
    # a video may open (or close) on a fade whose darkest frame is only dim, not black
    if count > 1 and not (spans and spans[0][0] == 0) and level[0] <= 2 * black and level[1] > level[0] + 0.5:
        end = 1
        while end < count and level[end] > level[end - 1] + 0.5 and end < 75:
            end += 1
        spans.insert(0, (0, end))
    if count > 1 and not (spans and spans[-1][1] == count) and level[-1] <= 2 * black and \
            level[-2] > level[-1] + 0.5:
        start = count - 1
        while start > 0 and level[start - 1] > level[start] + 0.5 and count - start < 75:
            start -= 1
        spans.append((start, count))
    return boundaries, spans


def detect_dissolves(tiny: Any, fps: float, scores: Any = None, threshold: float = THRESHOLD,
                     luma: Any = None) -> list[Boundary]:
    """Dissolves among a scan's tiny thumbnails (frames, h, w, 3), each placed at its middle, the surest
    (longest) first; two may overlap (detect_boundaries keeps the first). ``luma``: grey thumbnails
    (frames, h, w) to tell camera motion from a new picture [default: the colour thumbnails' grey]."""
    import numpy as np

    frames = np.asarray(tiny, dtype=np.float32)
    count = len(frames)
    flat = frames.reshape(count, -1)
    grey = np.asarray(luma if luma is not None else frames.mean(axis=3), dtype=np.float32)
    steps = np.zeros(count)
    steps[1:] = np.abs(flat[1:] - flat[:-1]).mean(axis=1)
    walked = np.cumsum(steps)
    jumps = np.zeros(count, dtype=bool) if scores is None else np.asarray(scores) >= threshold
    candidates = []  # (half span, off share, middle)
    for seconds in SPANS_S:
        half = max(1, int(round(seconds * fps / 2)))
        if 2 * half + 1 > count:
            break
        middle = np.arange(half, count - half)
        first, last = flat[:count - 2 * half], flat[2 * half:]  # views: the ends of every span
        far = np.abs(last - first).mean(axis=1)
        off = np.abs(flat[half:count - half] - (first + last) / 2).mean(axis=1) / np.maximum(far, 1e-6)
        one_way = far / np.maximum(walked[2 * half:] - walked[:count - 2 * half], 1e-6)
        # the spans just before and just after (inside the shots, for a dissolve this long): steady motion
        # changes them as much as this one; a transition stands out from at least one side
        shift = min(2 * half, len(far))
        before = np.concatenate([np.full(shift, np.inf), far[:len(far) - shift]])
        after = np.concatenate([far[shift:], np.full(shift, np.inf)])
        ordinary = np.minimum(before, after)
        ordinary[np.isinf(ordinary)] = 0.0  # no span either side
        passing = (far >= MIN_CHANGE) & (off <= MAX_OFF) & (one_way >= MIN_ONE_WAY) & \
            (far >= STANDS_OUT * ordinary)
        for position in _best_in_runs(np.flatnonzero(passing), off, half):
            c = int(middle[position])
            if jumps[c - half + 1:c + half + 1].any():
                continue  # a hard cut inside the span: its job, not a dissolve's
            candidates.append((half, float(off[position]), c))
    # The longest span that passes covers the whole transition; among its positions, the one whose middle
    # is nearest the ends' average is the transition's middle. Shorter spans inside it are the same one.
    candidates.sort(key=lambda c: (-c[0], c[1]))
    ends = ([c - half for half, _o, c in candidates], [c + half for half, _o, c in candidates])
    alike = MotionAligner(grey.shape[1:]).similarity(grey[ends[0]], grey[ends[1]])
    kept = still_change(grey[ends[0]], grey[ends[1]])
    taken: list[Boundary] = []
    for (half, _off, c), same, change in zip(candidates, alike, kept):
        if any(b.start <= c < b.end for b in taken):
            continue
        if same > MAX_STRUCTURE or change <= MIN_STILL_CHANGE:
            continue  # the same picture, moved, zoomed or lit differently
        taken.append(Boundary(c, "dissolve", c - half + 1, c + half))
    return taken  # strongest (longest) first


def _best_in_runs(positions: Any, off: Any, half: int) -> list[int]:
    """Of each run of consecutive passing positions, the one whose middle is nearest the ends' average, then
    the best of what lies more than ``half`` from those chosen (a pan passes for a long run: few are tried)."""
    import numpy as np

    chosen: list[int] = []
    if not len(positions):
        return chosen
    breaks = np.flatnonzero(np.diff(positions) > 1) + 1
    for run in np.split(positions, breaks):
        order = run[np.argsort(off[run], kind="stable")]
        picked: list[int] = []
        for position in order:
            if all(abs(int(position) - other) > half for other in picked):
                picked.append(int(position))
        chosen += picked
    return chosen


def still_change(first: Any, second: Any) -> Any:
    """How much of the picture changed between grey thumbnails ``first[i]`` and ``second[i]`` where the
    camera held still: the median, over pixels, of the difference of their brightness patterns (each
    thumbnail less its mean, over its spread). A change of light leaves it near 0, also while something
    small moves in the picture (the median ignores it); a new picture gives about 1."""
    import numpy as np

    def pattern(grey: Any) -> Any:
        flat = np.asarray(grey, np.float32).reshape(len(grey), -1)
        flat = flat - flat.mean(axis=1, keepdims=True)
        return flat / np.maximum(flat.std(axis=1, keepdims=True), 1e-3)

    if not len(first):
        return np.zeros(0, dtype=np.float32)
    return np.median(np.abs(pattern(first) - pattern(second)), axis=1)


class MotionAligner:
    """How alike two grey thumbnails are once the camera's motion between them is undone: the highest
    correlation of the first's centre with the second zoomed (in or out by up to 35 %) and shifted (by up
    to an eighth of the width and height), so a pan or a zoom between the two scores near 1 and a new
    picture low. Correlation ignores brightness and contrast, so a change of light scores near 1 too."""

    SCALES = (1 / 1.35, 1 / 1.17, 1.0, 1.17, 1.35)

    def __init__(self, shape: tuple[int, ...]) -> None:
        import numpy as np

        height, width = int(shape[0]), int(shape[1])
        self.my, self.mx = max(1, height // 8), max(1, width // 8)
        self.shape = (height, width)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        cy, cx = (height - 1) / 2, (width - 1) / 2
        self.zooms = []  # bilinear sampling of each scale: corner indexes and weights
        for scale in self.SCALES:
            y = np.clip(cy + (ys - cy) / scale, 0, height - 1.001)
            x = np.clip(cx + (xs - cx) / scale, 0, width - 1.001)
            y0, x0 = y.astype(np.int64), x.astype(np.int64)
            self.zooms.append((y0, x0, (y - y0).astype(np.float32), (x - x0).astype(np.float32)))

    def similarity(self, first: Any, second: Any) -> Any:
        """For thumbnails ``first[i]`` and ``second[i]`` (arrays of n × h × w), n similarities."""
        import numpy as np
        from numpy.lib.stride_tricks import sliding_window_view

        first, second = np.asarray(first, np.float32), np.asarray(second, np.float32)
        if not len(first):
            return np.zeros(0, dtype=np.float32)
        (height, width), my, mx = self.shape, self.my, self.mx
        centre = first[:, my:height - my, mx:width - mx]
        a = (centre - centre.mean(axis=(1, 2), keepdims=True)).reshape(len(first), -1)
        a_norm = np.maximum(np.linalg.norm(a, axis=1), 1e-6)  # (n,)
        best = np.full(len(first), -1.0, dtype=np.float32)
        for y0, x0, fy, fx in self.zooms:
            zoomed = (second[:, y0, x0] * (1 - fy) * (1 - fx) + second[:, y0, x0 + 1] * (1 - fy) * fx
                      + second[:, y0 + 1, x0] * fy * (1 - fx) + second[:, y0 + 1, x0 + 1] * fy * fx)
            windows = sliding_window_view(zoomed, centre.shape[1:], axis=(1, 2))
            windows = windows.reshape(len(first), -1, a.shape[1])  # (n, shifts, pixels)
            windows = windows - windows.mean(axis=2, keepdims=True)
            norms = np.maximum(np.linalg.norm(windows, axis=2) * a_norm[:, None], 1e-6)
            scores = np.einsum("nsp,np->ns", windows, a) / norms
            best = np.maximum(best, scores.max(axis=1))
        return best
