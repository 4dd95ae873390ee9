"""Keyframe speed and cut accuracy on generated videos (cuts at known frames, panning and motion in every shot).

    .venv/bin/python benchmarks/video_keyframes.py [--seconds 40] [--width 640] [--height 360]

mmtools: ``mmtools.video.keyframes.video_keyframes`` (low-resolution scan, loop filter skipped, threaded
decoding). Baseline, in the same run: a plain PyAV loop that decodes every frame to full-size RGB and
computes the same HSV content value on it (what a content detector does without downscaling). Figures:
video seconds processed per wall second (best of 3), and cut F1 within 2 frames. If PySceneDetect is
importable (not a dependency; e.g. ``pip install --target /tmp/sd scenedetect opencv-python-headless`` and
PYTHONPATH=/tmp/sd), its ContentDetector's F1 is printed too.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import Row, machine, print_table


def plain_scan(path: str) -> int:
    import av

    from mmtools.video.decode import content_value, rgb_to_hsv

    previous = None
    count = 0
    with av.open(path) as container:
        for frame in container.decode(video=0):
            hsv = rgb_to_hsv(frame.to_ndarray(format="rgb24"))
            if previous is not None:
                content_value(previous, hsv)
            previous = hsv
            count += 1
    return count


def best_of(function, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    args = parser.parse_args()
    import numpy as np

    from mmtools.images import ImageSource
    from mmtools.video.decode import scan_video
    from mmtools.video.keyframes import video_keyframes
    from mmtools.video.shots import detect_cuts
    from mmtools.video.synthetic import cut_f1, write_video

    print(machine())
    folder = Path(tempfile.mkdtemp(prefix="mmtools-video-bench-"))
    rng = np.random.default_rng(0)
    lengths, total = [], args.seconds * 25
    while sum(lengths) < total:
        lengths.append(int(rng.integers(20, 120)))
    clip = write_video(folder / "bench.mp4", lengths, width=args.width, height=args.height, pan=4.0)
    duration = clip.frames / clip.fps
    source = ImageSource(str(clip.path), str(clip.path))
    ours = best_of(lambda: video_keyframes(source))
    plain = best_of(lambda: plain_scan(str(clip.path)))
    _p, _r, f1 = cut_f1(detect_cuts(scan_video(str(clip.path)).scores), clip.cuts)
    rows = [Row("keyframes", f"{args.width}x{args.height} H.264, {duration:.0f} s, {len(clip.cuts)} cuts",
                duration / ours, duration / plain, "video s / wall s", target="faster than the plain loop",
                ok=ours < plain),
            Row("keyframes", "cut F1 within 2 frames", f1, None, "F1", target=">= 0.95", ok=f1 >= 0.95)]
    try:
        from scenedetect import ContentDetector, detect

        scenes = detect(str(clip.path), ContentDetector())
        found = [start.get_frames() for start, _end in scenes[1:]]
        rows.append(Row("keyframes", "PySceneDetect ContentDetector cut F1", cut_f1(found, clip.cuts)[2], None,
                        "F1"))
    except ImportError:
        print("(PySceneDetect not importable: its F1 is not measured in this run)")
    print_table(rows, "Video keyframes")


if __name__ == "__main__":
    main()
