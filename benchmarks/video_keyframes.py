"""Keyframe speed and shot-boundary accuracy on edited videos: hard cuts, dissolves and fades through black of
several lengths between shots that pan, zoom, hold still or change their light, over real photographs (and
consecutive shots of the same place, framed differently).

    .venv/bin/python benchmarks/video_keyframes.py [--set held-out|tune|both] [--videos 4] [--seconds 60]
                                                   [--width 640] [--height 360]

The detector's thresholds (mmtools.video.shots) were tuned on the ``tune`` set (videos made with seeds 0..,
photos of the first half of ../shared/data/vi-photos); ``held-out`` (the default) makes its videos from other
seeds and the photos of the second half, never seen while tuning.

Figures: F1 of hard cuts (within 2 frames) and of gradual transitions (found inside the transition, give or
take 2 frames) apart, the mean distance of a found dissolve or fade from the transition's middle, the share
of true shots holding a keyframe that is no blended or black frame, and speed in video seconds per wall
second and per processor second (best of 3) of `video_keyframes` over the last set's videos and of the
whole `mmtools keyframes` command (a fresh process: its start counts), against a plain baseline in the same
run: a PyAV loop that decodes every frame to full-size RGB and computes the HSV content value on it (on the
first video). The speed rows name the load average: wall seconds only mean something on an idle machine.
The hard-cut-only detector (gradual
off) is measured on the same videos as the accuracy baseline. If PySceneDetect is importable (not a
dependency; e.g. ``pip install --target /tmp/sd scenedetect opencv-python-headless`` and PYTHONPATH=/tmp/sd),
its ContentDetector's and AdaptiveDetector's figures are printed too.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, Row, machine, print_table, shared_data

SETS = {"tune": 0, "held-out": 1000}  # first seed of each set's videos


def rgb_to_hsv(rgb: Any) -> Any:
    """An (h, w, 3) uint8 RGB array to float32 HSV on OpenCV's scales (H 0-180, S and V 0-255), as
    PySceneDetect's content detector sees frames."""
    import numpy as np

    rgb = rgb.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = np.maximum(np.maximum(r, g), b)  # channel-wise maxima: several times faster than max(axis=2)
    spread = value - np.minimum(np.minimum(r, g), b)
    safe = np.where(spread > 0, spread, 1.0)  # grey pixels: hue 0, saturation 0
    saturation = spread * 255.0 / np.where(value > 0, value, 1.0)
    hue = np.where(value == r, (g - b) / safe, np.where(value == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue *= 30.0
    hue %= 180.0
    return np.stack([hue, saturation, value], axis=2)


def content_value(previous: Any, current: Any) -> float:
    """Mean absolute difference of H, S and V, averaged over the three (PySceneDetect's ``content_val``).

    Hue is an angle: red sits at both ends of its scale, and compression noise on a red area flips it from
    1 to 179. PySceneDetect takes that as a change of 178 (a false cut on any red shot); here the hue
    difference goes the short way round the circle."""
    import numpy as np

    difference = np.abs(current - previous)
    hue = difference[..., 0]
    difference[..., 0] = np.minimum(hue, 180.0 - hue)
    return float(difference.mean())


def plain_scan(path: str) -> int:
    import av

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


def best_of(function, repeat: int = 3) -> tuple[float, float]:
    """Wall seconds of the fastest of ``repeat`` calls, and the processor seconds (all threads) of that call."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def whole_command(paths: list[str]) -> tuple[float, float]:
    """Wall and processor seconds (user + system, all threads) of one ``mmtools keyframes`` process over
    ``paths``, its start included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mmtools", "keyframes", *paths], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def photos(part: int) -> list[Path]:
    """Half ``part`` (0 or 1) of the shared photographs; none when they are not there."""
    folder = shared_data("vi-photos", "images")
    found = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    return found[part::2]


def plan_video(seed: int, seconds: float, fps: int, pictures: list) -> list:
    """Shots of 1.6 to 5 s; a third begin with a cut, a third with a dissolve (4 to 40 frames), a third with
    a fade through black (3 to 15 frames each way, 0 to 8 black); cameras pan, zoom or hold still; a fifth
    of the shots change their light; a fifth show the place of the shot before, framed differently."""
    import numpy as np

    from mmtools.video.synthetic import ShotPlan

    rng = np.random.default_rng(seed)
    shots, total, previous = [], 0, None
    while total < seconds * fps:
        frames = int(rng.integers(40, 125))
        if previous is not None and rng.random() < 0.2:
            scene = previous[:, ::-1] if rng.random() < 0.5 else previous[previous.shape[0] // 5:,
                                                                           previous.shape[1] // 4:]
        elif pictures:
            scene = pictures[int(rng.integers(len(pictures)))]
        else:
            scene = int(rng.integers(10**6))
        camera = str(rng.choice(["pan", "zoom", "still"], p=[0.45, 0.35, 0.2]))
        speed = float(rng.uniform(0.5, 5.0)) if camera == "pan" else float(rng.uniform(0.2, 1.0))
        enter = "cut" if not shots else str(rng.choice(["cut", "dissolve", "fade"]))
        enter_frames = int(rng.integers(4, 41)) if enter == "dissolve" else int(rng.integers(3, 16))
        light = float(rng.choice([-0.45, -0.3, 0.3, 0.5])) if rng.random() < 0.2 else 0.0
        shots.append(ShotPlan(frames, scene, camera=camera, speed=speed, disc=bool(rng.random() < 0.3),
                              light=light, light_frames=int(rng.integers(8, 30)), enter=enter,
                              enter_frames=enter_frames if enter != "cut" else 0,
                              black_frames=int(rng.integers(0, 9)) if enter == "fade" else 0))
        total += frames + (enter_frames if enter == "dissolve" else 2 * enter_frames if enter == "fade" else 0)
        previous = scene if not isinstance(scene, int) else None
    return shots


def make_videos(folder: Path, name: str, count: int, seconds: float, width: int, height: int) -> list:
    import numpy as np
    from PIL import Image

    from mmtools.video.synthetic import cover, write_edited_video

    pictures = [cover(Image.open(p), 2 * width, height) for p in photos(0 if name == "tune" else 1)[:120]]
    made = []
    for number in range(count):
        seed = SETS[name] + number
        plan = plan_video(seed, seconds, 25, [np.asarray(p) for p in pictures])
        made.append(write_edited_video(folder / f"{name}-{number}.mp4", plan, width=width, height=height))
    return made


def scenedetect_boundaries(path: str, detector) -> list[tuple[int, str]]:
    from scenedetect import detect

    return [(start.get_frames(), "cut") for start, _end in detect(path, detector)[1:]]


def evaluate(name: str, videos: list, args) -> list:
    import numpy as np

    from mmtools.images import ImageSource
    from mmtools.video.decode import scan_video
    from mmtools.video.keyframes import video_keyframes
    from mmtools.video.shots import detect_boundaries
    from mmtools.video.synthetic import boundary_f1

    found_all, cuts_only, truth_all, off_middle = [], [], [], []
    shots = held = 0
    offset = 0
    for video in videos:
        scan = scan_video(str(video.path))
        found, _unclean = detect_boundaries(scan)
        plain, _ = detect_boundaries(scan, gradual=False)
        found_all += [(b.frame + offset, b.kind) for b in found]
        cuts_only += [(b.frame + offset, b.kind) for b in plain]
        truth_all += [type(t)(t.kind, t.start + offset, t.end + offset) for t in video.transitions]
        for true in video.transitions:
            if true.gradual:
                near = [b.frame for b in found if true.start - 2 <= b.frame <= true.end + 1]
                if near:
                    off_middle.append(min(abs(f - true.middle) for f in near))
        records, _ = video_keyframes(ImageSource(str(video.path), str(video.path)))
        frames = [r["frame"] for r in records]
        for first, stop in video.shot_bounds:
            shots += 1
            held += any(first <= f < stop and f not in video.unclean for f in frames)
        offset += video.frames + 1000
    ours, baseline = boundary_f1(found_all, truth_all), boundary_f1(cuts_only, truth_all)
    hard = sum(1 for t in truth_all if not t.gradual)
    gradual = len(truth_all) - hard
    seconds = sum(v.frames for v in videos) / 25
    where = f"{name}: {len(videos)} videos, {seconds:.0f} s"
    rows = [Row("keyframes", f"{where}, hard cuts F1 ({hard})", ours["hard"][2], baseline["hard"][2], "F1",
                target=">= 0.95", ok=ours["hard"][2] >= 0.95),
            Row("keyframes", f"{where}, dissolves and fades F1 ({gradual})", ours["gradual"][2],
                baseline["gradual"][2], "F1", target=">= 0.9", ok=ours["gradual"][2] >= 0.9),
            Row("keyframes", f"{where}, all boundaries P / R", ours["all"][0], ours["all"][1], "P / R"),
            Row("keyframes", f"{where}, gradual: frames from the middle", float(np.mean(off_middle or [0])),
                None, "frames", higher_is_better=False),
            Row("keyframes", f"{where}, shots holding a clean keyframe", held / shots, None, "share",
                target="1.0", ok=held == shots)]
    try:
        from scenedetect import AdaptiveDetector, ContentDetector

        for label, detector in (("ContentDetector", ContentDetector), ("AdaptiveDetector", AdaptiveDetector)):
            theirs, offset = [], 0
            for video in videos:
                theirs += [(f + offset, k) for f, k in scenedetect_boundaries(str(video.path), detector())]
                offset += video.frames + 1000
            figures = boundary_f1(theirs, truth_all)
            rows.append(Row("keyframes", f"{where}, PySceneDetect {label}: hard / gradual F1",
                            figures["hard"][2], figures["gradual"][2], "F1 / F1"))
    except ImportError:
        pass
    return rows


def speed_rows(videos: list, args) -> list:
    """Speed of the last set's videos: in process (`video_keyframes`, best of 3) and the whole command (a
    fresh `mmtools keyframes` process over all of them, best of 3), against the plain loop on the first."""
    from mmtools.images import ImageSource
    from mmtools.video.keyframes import video_keyframes

    seconds = sum(v.frames / v.fps for v in videos)
    paths = [str(v.path) for v in videos]
    sources = [ImageSource(path, path) for path in paths]
    wall, cpu = best_of(lambda: [video_keyframes(source) for source in sources])
    command = min(whole_command(paths) for _ in range(3))
    first = videos[0].frames / videos[0].fps
    plain_wall, plain_cpu = best_of(lambda: plain_scan(paths[0]))
    load = os.getloadavg()[0]
    where = f"{len(videos)} x {args.width}x{args.height} H.264, {seconds:.0f} s, load {load:.1f}"
    return [Row("keyframes", f"speed in process: {where}", seconds / wall, first / plain_wall, "video s / wall s",
                target=">= 20, faster than the plain loop",
                ok=seconds / wall >= 20 and seconds / wall > first / plain_wall),
            Row("keyframes", "speed in process per processor second (all threads)", seconds / cpu,
                first / plain_cpu, "video s / CPU s", target=">= 25", ok=seconds / cpu >= 25),
            Row("keyframes", "whole `mmtools keyframes` command (process start included)", seconds / command[0],
                None, "video s / wall s", target=">= 20", ok=seconds / command[0] >= 20),
            Row("keyframes", "whole command per processor second (user + system)", seconds / command[1], None,
                "video s / CPU s")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", choices=["held-out", "tune", "both"], default="held-out")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    args = parser.parse_args()

    print(machine())
    if not photos(0):
        print("(the shared photographs are not there: generated textures instead)")
    folder = Path(tempfile.mkdtemp(prefix="mmtools-video-bench-"))
    rows = []
    names = ["tune", "held-out"] if args.set == "both" else [args.set]
    for name in names:
        videos = make_videos(folder, name, args.videos, args.seconds, args.width, args.height)
        rows += evaluate(name, videos, args)
    rows += speed_rows(videos, args)
    print_table(rows, "Video keyframes")
    print("(baseline of the accuracy rows: the hard-cut detector alone, on the same videos)")


if __name__ == "__main__":
    main()
