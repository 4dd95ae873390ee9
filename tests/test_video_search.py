"""Video frames through the pipeline and in results: keyframes | embed-images | index with no image files, a
still finds its video at a moment inside its scene, --html plays the moment, the cache and --sync treat a
video as one source, and events in order (dynamic programming against brute force)."""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("av")

from typer.testing import CliRunner  # noqa: E402

from mmtools.cli.app import app  # noqa: E402
from mmtools.video.synthetic import scene_still, write_video  # noqa: E402
from mmtools.video.temporal import Moment, best_chain  # noqa: E402

BIN = Path(sys.executable).parent
runner = CliRunner()
SHOT = 30  # frames per shot: 1.2 s at 25 fps
A, B, C, D, E = 11, 22, 33, 44, 55  # scenes


def shell(command, cwd, **env):
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=240)


def records(text):
    return [orjson.loads(line) for line in text.splitlines()]


def files_below(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def library(tmp_path_factory, siglip_dir):
    """Two videos: ab.mp4 shows scenes A, B, C; ba.mp4 shows B, A, D (each shot 1.2 s). Indexed through
    `keyframes | embed-images | index`; stills of the scenes lie outside the videos' folder."""
    work = tmp_path_factory.mktemp("library")
    (work / "videos").mkdir()
    write_video(work / "videos" / "ab.mp4", [SHOT] * 3, scenes=[A, B, C])
    write_video(work / "videos" / "ba.mp4", [SHOT] * 3, scenes=[B, A, D])
    before = files_below(work)
    built = shell("mmtools keyframes videos/ | mmtools embed-images | mmtools index -o idx.faiss", work,
                  MMTOOLS_MODEL=siglip_dir)
    assert built.returncode == 0, built.stderr
    (work / "stills").mkdir()
    for scene in (A, B, C, D):
        scene_still(scene, SHOT // 2).save(work / "stills" / f"{scene}.png")
    return work, before, built


@pytest.mark.slow
def test_the_pipeline_writes_no_image_files(library):
    work, before, built = library
    assert "idx.faiss: 6 records" in built.stderr
    added = sorted(set(files_below(work)) - set(before) - {f"stills/{s}.png" for s in (A, B, C, D)})
    assert all(name.startswith("idx.faiss") for name in added), added


@pytest.mark.slow
def test_a_still_finds_its_video_at_a_moment_inside_its_scene(library):
    work, _, _ = library
    found = shell(f"mmtools search --image stills/{C}.png -k 1 --html page.html", work)
    assert found.returncode == 0, found.stderr
    (hit,) = records(found.stdout)
    assert hit["path"] == "videos/ab.mp4" and hit["shot"] == 2
    assert 2.4 <= hit["shot_start"] <= hit["time"] < hit["shot_end"] <= 3.6
    assert hit["id"].endswith(f"videos/ab.mp4#t={hit['time']:g}")
    page = (work / "page.html").read_text()
    assert f'src="videos/ab.mp4#t={hit["time"]:g}"' in page and "<video" in page
    assert 'poster="data:image/jpeg;base64,' in page  # the frame, decoded from the video


@pytest.mark.slow
def test_moments_in_a_table_csv_montage_and_grouped(library, monkeypatch):
    work, _, _ = library
    monkeypatch.chdir(work)
    monkeypatch.setenv("COLUMNS", "120")
    table = runner.invoke(app, ["search", "--image", f"stills/{A}.png", "-k", "2", "--format", "table"])
    assert table.exit_code == 0, table.stderr
    assert "videos/ab.mp4 00:00" in table.stdout and "videos/ba.mp4 00:01" in table.stdout
    csv = runner.invoke(app, ["search", "--image", f"stills/{A}.png", "-k", "2", "--format", "csv",
                              "--fields", "path,frame"])
    # both frames show the still's very picture (scene A, 15 frames in): their scores tie up to compression
    assert sorted(csv.stdout.splitlines()) == ["videos/ab.mp4,15", "videos/ba.mp4,45"]
    grouped = runner.invoke(app, ["search", "--image", f"stills/{B}.png", "-k", "2", "--group-by", "video"])
    assert sorted(h["path"] for h in records(grouped.stdout)) == ["videos/ab.mp4", "videos/ba.mp4"]
    assert [h["rank"] for h in records(grouped.stdout)] == [1, 2]

    from PIL import Image

    from mmtools.report import Hit, HitRow, write_montage

    rows = [HitRow("q", "A", [Hit(1, 0.9, "videos/ab.mp4", "x", time=0.6)])]
    layout = write_montage(work / "sheet.png", rows, thumb=64, base_dir=work)
    left, top, right, _ = layout.thumb_box(0, 0)
    with Image.open(work / "sheet.png") as sheet:  # a 128×96 frame drawn 64×48, centred in its cell
        drawn = np.asarray(sheet.convert("RGB").crop((left, top + 8, right, top + 56)), dtype=float)
    expected = np.asarray(scene_still(A, 15).resize((64, 48)), dtype=float)
    assert np.abs(drawn - expected).mean() < 20  # the frame itself, not a grey cell


@pytest.mark.slow
def test_events_in_order_find_the_video_where_a_happens_before_b(library):
    work, _, _ = library
    forward = orjson.dumps({"steps": [{"image": f"stills/{A}.png"}, {"image": f"stills/{B}.png"}], "within": 30})
    backward = orjson.dumps({"steps": [{"image": f"stills/{B}.png"}, {"image": f"stills/{A}.png"}]})
    query = work / "queries.jsonl"
    query.write_bytes(forward + b"\n" + backward + b"\n")
    found = shell("mmtools search -k 5 < queries.jsonl", work)
    assert found.returncode == 0, found.stderr
    results = records(found.stdout)
    first = [r for r in results if r["query_id"] == "q1"]
    second = [r for r in results if r["query_id"] == "q2"]
    assert first[0]["path"] == "videos/ab.mp4" and second[0]["path"] == "videos/ba.mp4"
    a_then_b = [(s["time"] < 1.2, 1.2 <= s["time"] < 2.4) for s in first[0]["steps"]]
    assert [a_then_b[0][0], a_then_b[1][1]] == [True, True]  # A's moment in shot 0, B's in shot 1
    for result in results:
        times = [step["time"] for step in result["steps"]]
        assert times == sorted(times) and len(set(times)) == 2 and times[-1] - times[0] <= 30
        assert {"query", "time", "score"} <= set(result["steps"][0])
    # the reversed query never returns ab.mp4's (A at 0.6 s, B at 1.8 s) as a (B, A) pair
    assert not any(r["path"] == "videos/ab.mp4" and [s["time"] for s in r["steps"]] == [1.8, 0.6]
                   for r in second)
    # the same through --then, and over a fusion of two indexes (the same index twice)
    os.chdir(work)
    try:
        then = runner.invoke(app, ["search", "--image", f"stills/{A}.png", "--then", "xe hơi", "--within", "2",
                                   "-i", "idx.faiss", "-i", "idx.faiss"])
    finally:
        os.chdir(Path(__file__).parent)
    assert then.exit_code == 0, then.stderr
    for result in records(then.stdout):
        assert len(result["steps"]) == 2 and result["steps"][1]["query"] == "xe hơi"
        assert 0 < result["steps"][1]["time"] - result["steps"][0]["time"] <= 2


def test_sync_replaces_a_changed_video_and_removes_a_deleted_one(tmp_path, siglip_dir):
    from mmtools.embed import embed_images
    from mmtools.images import discover_images
    from mmtools.index import IndexReader, index_records
    from mmtools.models import load_encoder
    from mmtools.video import VIDEO_EXTENSIONS
    from mmtools.video.sources import with_video_frames

    encoder = load_encoder(siglip_dir, "cpu")
    videos, index = tmp_path / "videos", tmp_path / "idx.faiss"

    def sync():
        found = discover_images([str(videos)], root=str(tmp_path), extensions=VIDEO_EXTENSIONS)
        return index_records(embed_images(with_video_frames(found), encoder), index, sync=True, root=tmp_path)

    videos.mkdir()
    write_video(videos / "one.mp4", [SHOT] * 3, scenes=[A, B, C])
    write_video(videos / "two.mp4", [SHOT] * 2, scenes=[D, E])
    assert sync().added == 5
    write_video(videos / "one.mp4", [SHOT + 10, SHOT + 10], scenes=[E, D])  # other frames now
    (videos / "two.mp4").unlink()
    summary = sync()
    assert (summary.added, summary.removed) == (2, 5)
    with IndexReader(index) as reader:
        exported = list(reader.export())
    assert sorted(r["time"] for r in exported) == [0.8, 2.4]  # only the new video's frames
    assert {r["path"] for r in exported} == {"videos/one.mp4"}
    assert len({r["sha256"] for r in exported}) == 1


def test_the_cache_keys_frames_by_video_content_and_time(tmp_path, siglip_dir, monkeypatch):
    write_video(tmp_path / "v.mp4", [SHOT] * 2, scenes=[A, B])
    cache = tmp_path / "cache"
    monkeypatch.setenv("MMTOOLS_CACHE_DIR", str(cache))
    first = runner.invoke(app, ["embed-images", str(tmp_path / "v.mp4"), "-m", siglip_dir])
    again = runner.invoke(app, ["embed-images", str(tmp_path / "v.mp4"), "-m", siglip_dir])
    assert first.exit_code == again.exit_code == 0, first.stderr
    one, two = records(first.stdout), records(again.stdout)
    assert [r["embedding"] for r in one] == [r["embedding"] for r in two] and len(one) == 2
    with sqlite3.connect(cache / "embeddings.sqlite") as db:
        keys = sorted(row[0] for row in db.execute("SELECT sha256 FROM vectors"))
    assert keys == sorted(f"{one[0]['sha256']}#t={r['time']:g}" for r in one)


def brute_force(steps, within):
    best = None
    for chain in itertools.product(*steps):
        if all(a.time < b.time for a, b in zip(chain, chain[1:])) and chain[-1].time - chain[0].time <= within:
            total = sum(m.score for m in chain)
            best = total if best is None or total > best else best
    return best


moments = st.lists(st.builds(Moment, st.integers(0, 60).map(lambda t: t / 2), st.floats(0, 1), st.just({})),
                   min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(st.lists(moments, min_size=2, max_size=4), st.floats(0.5, 20))
def test_dynamic_programming_finds_what_brute_force_finds(steps, within):
    found = best_chain(steps, within)
    expected = brute_force(steps, within)
    assert (found is None) == (expected is None)
    if found is not None:
        total, chain = found
        assert total == pytest.approx(expected)
        assert all(a.time < b.time for a, b in zip(chain, chain[1:]))
        assert chain[-1].time - chain[0].time <= within
