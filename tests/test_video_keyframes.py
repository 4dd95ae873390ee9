"""mmtools keyframes: shots of generated videos (cuts at known frames, motion inside every shot), keyframe
choice, frames decoded at given times, and damaged or unreadable videos."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

pytest.importorskip("av")

from mmtools.cli.app import app  # noqa: E402
from mmtools.images import ImageSource  # noqa: E402
from mmtools.video.decode import VideoDecodeError, frames_at, scan_video  # noqa: E402
from mmtools.video.keyframes import KeyframeChoice, chosen_frames, moment_id, video_keyframes  # noqa: E402
from mmtools.video.shots import detect_cuts, shots_from_cuts  # noqa: E402
from mmtools.video.synthetic import cut_f1, write_video  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Eight clips: H.264 and MPEG-4, slow and fast pans, shots of 16 to 70 frames."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(7)
    made = []
    for number in range(4):
        for codec, suffix in (("libx264", "mp4"), ("mpeg4", "mkv")):
            lengths = [int(n) for n in rng.integers(16, 70, size=5)]
            made.append(write_video(folder / f"clip{number}-{codec}.{suffix}", lengths, codec=codec,
                                    seed=number, pan=1.5 if number % 2 else 6.0))
    return made


def test_hard_cuts_are_found_and_motion_is_not_a_cut(clips):
    scores = []
    for clip in clips:
        scan = scan_video(str(clip.path))
        assert len(scan.times) == clip.frames and scan.damage is None
        cuts = detect_cuts(scan.scores)
        precision, recall, f1 = cut_f1(cuts, clip.cuts, tolerance=2)
        scores.append(f1)
    assert np.mean(scores) >= 0.95 and min(scores) >= 0.8, scores


def test_the_scan_does_not_depend_on_how_frames_are_chunked(tmp_path, monkeypatch):
    """Frames are scored a chunk at a time: a frame's score against the one before it is the same whether
    the two fall in one chunk or two, for a tall picture (4:3) and a wide one alike."""
    import mmtools.video.decode as decode

    for width, height in ((128, 96), (240, 100)):
        clip = write_video(tmp_path / f"chunks{width}.mp4", [20, 25, 19], width=width, height=height, pan=6.0)
        whole = scan_video(str(clip.path))
        assert len(whole.times) == clip.frames and whole.scores[0] == 0
        assert whole.tiny.shape[2] == 16 and whole.luma.shape[2] == 32
        for size in (1, 7):
            monkeypatch.setattr(decode, "CHUNK_FRAMES", size)
            chunked = scan_video(str(clip.path))
            for field in ("times", "scores", "tiny", "luma", "brightness"):
                assert np.array_equal(getattr(chunked, field), getattr(whole, field)), (width, size, field)
        monkeypatch.undo()
        assert detect_cuts(whole.scores) == clip.cuts


def test_a_single_frame_video_is_one_shot_with_its_keyframe(tmp_path):
    clip = write_video(tmp_path / "one.mp4", [1])
    records, damage = video_keyframes(ImageSource("one.mp4", str(clip.path), {"path": "one.mp4"}))
    assert damage is None and [(r["frame"], r["shot"]) for r in records] == [(0, 0)]


def test_a_long_moving_shot_is_one_shot(tmp_path):
    clip = write_video(tmp_path / "pan.mp4", [120], pan=6.0)
    scan = scan_video(str(clip.path))
    assert scan.scores.max() > 1.0  # it does move
    assert detect_cuts(scan.scores) == []


def test_every_shot_gets_a_keyframe_in_its_middle(clips):
    clip = clips[0]
    records, damage = video_keyframes(ImageSource("v.mp4", str(clip.path), {"path": "v.mp4"}))
    assert damage is None
    assert sorted({r["shot"] for r in records}) == list(range(len(clip.cuts) + 1))
    for record, (first, stop) in zip(records, clip.shot_bounds):
        assert first <= record["frame"] < stop
        assert abs(record["frame"] - (first + stop) / 2) <= 2  # in the middle (within 2 frames of a cut)
        assert record["shot_start"] <= record["time"] < record["shot_end"]
        assert record["id"] == moment_id("v.mp4", record["time"]) == f"v.mp4#t={record['time']:g}"
        assert record["fps"] == 25.0 and record["video_duration"] == pytest.approx(clip.frames / 25)


def test_per_shot_every_and_long_shots(tmp_path):
    clip = write_video(tmp_path / "long.mp4", [30, 280], pan=1.0)  # 1.2 s and 11.2 s
    scan = scan_video(str(clip.path))
    shots = shots_from_cuts(detect_cuts(scan.scores), scan.times, scan.info.fps)
    assert [s.start_frame for s in shots] == [0, 30]
    default = chosen_frames(shots, scan, KeyframeChoice())
    assert [shot.index for _, shot in default] == [0, 1, 1]  # one per started 10 seconds
    three = chosen_frames(shots, scan, KeyframeChoice(per_shot=3))
    assert [frame for frame, _ in three] == [5, 15, 25, 76, 170, 263]
    uniform = chosen_frames(shots, scan, KeyframeChoice(every=2.0))
    assert [frame for frame, _ in uniform] == [0, 50, 100, 150, 200, 250, 300]
    assert [shot.index for _, shot in uniform] == [0, 1, 1, 1, 1, 1, 1]


def test_frames_at_gives_the_frame_showing_at_each_time(clips):
    clip = clips[1]
    import av

    with av.open(str(clip.path)) as container:
        every = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    times = [3.0, 0.0, 0.04 * 17, 0.04 * 17 + 0.01, 0.04 * (clip.frames - 1)]
    got = dict(frames_at(str(clip.path), times))
    for position, frame in [(0, 75), (1, 0), (2, 17), (3, 17), (4, clip.frames - 1)]:
        assert np.array_equal(np.asarray(got[position]), every[frame]), position
    late = dict(frames_at(str(clip.path), [clip.frames / 25 + 5]))
    assert isinstance(late[0], VideoDecodeError)


def test_frames_at_skips_no_frame_it_was_asked_for(clips):
    """Far from the next time wanted, frames no other frame refers to are not decoded (H.264's B-frames):
    every frame asked for is still the exact one, close together or far apart, after a seek or not."""
    import av

    for clip in clips[:2]:  # H.264 with B-frames, MPEG-4
        with av.open(str(clip.path)) as container:
            every = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        wanted = [1, 2, 29, 60, 61, 90, len(every) - 2, len(every) - 1]
        got = dict(frames_at(str(clip.path), [0.04 * frame for frame in wanted]))
        for position, frame in enumerate(wanted):
            assert np.array_equal(np.asarray(got[position]), every[frame]), (clip.path.name, frame)


def test_cli_names_bad_videos_and_keeps_the_keyframes_before_damage(tmp_path):
    good = write_video(tmp_path / "good.mp4", [30, 30])
    whole = write_video(tmp_path / "whole.mkv", [30, 30, 30, 30])
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(whole.path.read_bytes()[: whole.path.stat().st_size // 2])
    whole.path.unlink()
    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "empty.webm").write_bytes(b"")
    result = runner.invoke(app, ["keyframes", str(tmp_path)])
    assert result.exit_code == 1
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    by_video = {}
    for record in records:
        by_video.setdefault(record["path"], []).append(record)
    assert len(by_video[str(good.path)]) == 2
    kept = by_video[str(damaged)]
    assert 1 <= len(kept) < 4 and all(r["time"] < 2.4 for r in kept)
    lines = result.stderr.strip().splitlines()
    assert any("damaged.mkv" in line and "kept" in line for line in lines)
    assert any("notes.mp4" in line and "skipped" in line for line in lines)
    assert any("empty.webm" in line and "empty" in line for line in lines)
    assert len(lines) == 3 and "Traceback" not in result.stderr


def test_cli_writes_jpegs_only_when_asked(tmp_path):
    clip = write_video(tmp_path / "v.mp4", [20, 20])
    plain = runner.invoke(app, ["keyframes", str(clip.path), "--per-shot", "2"])
    assert plain.exit_code == 0, plain.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    frames = tmp_path / "frames"
    written = runner.invoke(app, ["keyframes", str(clip.path), "--per-shot", "2", "--frames-dir", str(frames)])
    records = [orjson.loads(line) for line in written.stdout.splitlines()]
    assert len(records) == 4 and len(list(frames.glob("*.jpg"))) == 4
    from PIL import Image

    for record in records:
        with Image.open(record["frame_path"]) as image:
            assert image.size == (128, 96)
    assert [r["id"] for r in records] == [orjson.loads(line)["id"] for line in plain.stdout.splitlines()]


# ------------------------------------------------------------------------------------ gradual transitions


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """Two edited clips: dissolves of 8 to 30 frames and fades through black between shots that pan, zoom,
    hold still or dim their light; consecutive shots of one scene seen by another camera."""
    from mmtools.video.synthetic import ShotPlan, write_edited_video

    folder = tmp_path_factory.mktemp("edited")
    one = write_edited_video(folder / "one.mp4", [
        ShotPlan(45, 101, camera="pan", speed=2.0, enter="fade", enter_frames=8),
        ShotPlan(45, 102, camera="zoom", speed=0.6, enter="dissolve", enter_frames=12),
        ShotPlan(45, 103, camera="still", disc=False, light=-0.45, light_frames=12, enter="cut"),
        ShotPlan(45, 104, camera="pan", speed=1.0, enter="fade", enter_frames=6, black_frames=4),
        ShotPlan(45, 105, camera="zoom", speed=0.4, enter="dissolve", enter_frames=30),
    ])
    two = write_edited_video(folder / "two.mkv", [
        ShotPlan(50, 201, camera="still", disc=False),
        ShotPlan(40, 202, camera="pan", speed=1.0, enter="dissolve", enter_frames=8),
        ShotPlan(40, 203, camera="zoom", speed=0.8, light=0.4, enter="dissolve", enter_frames=20),
        ShotPlan(40, 204, camera="pan", speed=1.5, enter="fade", enter_frames=10),
        ShotPlan(40, 204, camera="still", enter="cut"),  # the same place, another framing
    ], codec="mpeg4")
    return [one, two]


def test_dissolves_and_fades_are_found_at_their_middle_and_cuts_stay(edited):
    from mmtools.video.shots import detect_boundaries
    from mmtools.video.synthetic import boundary_f1

    for clip in edited:
        found, _avoid = detect_boundaries(scan_video(str(clip.path)))
        scores = boundary_f1([(b.frame, b.kind) for b in found], clip.transitions)
        assert scores["hard"][2] == 1.0 and scores["gradual"][2] == 1.0, (clip.path.name, found)
        for true in clip.transitions:
            (match,) = [b for b in found if true.start - 2 <= b.frame <= max(true.start, true.end - 1) + 2]
            assert match.kind == true.kind, (true, match)
            if true.gradual:
                assert abs(match.frame - true.middle) <= max(2, (true.end - true.start) // 4), (true, match)


def test_hard_cuts_only_misses_the_dissolves(edited):
    from mmtools.video.shots import detect_boundaries

    clip = edited[0]
    found, avoid = detect_boundaries(scan_video(str(clip.path)), gradual=False)
    assert {b.kind for b in found} == {"cut"} and avoid == []
    dissolves = [t for t in clip.transitions if t.kind == "dissolve"]
    assert not any(t.start <= b.frame < t.end for b in found for t in dissolves)  # what the old detector missed


def test_every_shot_gets_a_keyframe_off_the_blended_and_black_frames(edited):
    for clip in edited:
        records, _ = video_keyframes(ImageSource("v.mp4", str(clip.path), {"path": "v.mp4"}))
        frames = [r["frame"] for r in records]
        assert len({r["shot"] for r in records}) == len(clip.shot_bounds)
        for first, stop in clip.shot_bounds:
            inside = [f for f in frames if first <= f < stop]
            assert inside and all(f not in clip.unclean for f in inside), (first, stop, frames)


def test_camera_motion_and_light_are_not_transitions(tmp_path):
    from mmtools.video.shots import detect_boundaries
    from mmtools.video.synthetic import ShotPlan, write_edited_video

    clip = write_edited_video(tmp_path / "moving.mp4", [
        ShotPlan(60, 7, camera="pan", speed=6.0),
        ShotPlan(60, 8, camera="zoom", speed=1.0, enter="cut"),
        ShotPlan(80, 9, camera="still", light=-0.5, light_frames=10, enter="cut"),
        ShotPlan(80, 10, camera="still", light=0.35, light_frames=25, enter="cut"),
    ])
    found, _ = detect_boundaries(scan_video(str(clip.path)))
    assert [(b.frame, b.kind) for b in found] == [(t.start, "cut") for t in clip.transitions]


def test_cli_can_keep_to_hard_cuts(edited):
    clip = edited[0]
    both = runner.invoke(app, ["keyframes", str(clip.path)])
    cuts = runner.invoke(app, ["keyframes", str(clip.path), "--cuts-only"])
    assert both.exit_code == 0 and cuts.exit_code == 0, both.stderr + cuts.stderr
    shots = [len({orjson.loads(line)["shot"] for line in result.stdout.splitlines()}) for result in (both, cuts)]
    assert shots[0] == 5 and shots[1] < 5
