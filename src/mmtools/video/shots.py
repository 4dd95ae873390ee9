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
