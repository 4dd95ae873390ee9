"""The nightly job as cron runs it: real `mmtools` processes through pipes, folders that change, signals,
two jobs at once, models that move or are retrained."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from PIL import Image

from mmtools.index import IndexReader, metadata_path

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def shell(command, cwd, **env):
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=240)


def ids_of(index):
    with IndexReader(index) as reader:
        return sorted(reader.ids())


def test_sync_keeps_the_index_equal_to_the_folder(tmp_path, photos, siglip_dir):
    work = photos.parent
    job = "mmtools embed-images --root photos photos | mmtools index -o idx.faiss --sync --root photos"
    first = shell(job, work, MMTOOLS_MODEL=siglip_dir)
    assert first.returncode == 0, first.stderr
    assert "8 added" in first.stderr
    again = shell(job, work, MMTOOLS_MODEL=siglip_dir)
    assert "0 added, 0 replaced, 8 unchanged, 0 removed" in again.stderr, again.stderr
    names = sorted(photos.glob("*.jpg"))
    names[0].rename(photos / "renamed.jpg")  # renamed
    names[1].unlink()  # gone
    Image.new("RGB", (50, 40), "orange").save(names[2])  # changed
    Image.new("RGB", (50, 40), "teal").save(photos / "nested" / "new.jpg")  # new
    changed = shell(job, work, MMTOOLS_MODEL=siglip_dir)
    assert changed.returncode == 0, changed.stderr
    assert "2 added, 1 replaced, 5 unchanged, 2 removed" in changed.stderr, changed.stderr
    expected = sorted(str(p.relative_to(photos)) for p in photos.rglob("*.jpg"))
    assert ids_of(work / "idx.faiss") == expected
    # The index moves with its folder: ids are relative to --root.
    moved = tmp_path / "elsewhere"
    shutil.move(str(work / "photos"), moved)
    for name in ("idx.faiss", "idx.faiss.meta.sqlite", "idx.faiss.segments"):
        shutil.move(str(work / name), moved / name)
    after_move = shell("mmtools embed-images --root . . | mmtools index -o idx.faiss --sync --root .", moved,
                       MMTOOLS_MODEL=siglip_dir)
    assert "0 added, 0 replaced, 8 unchanged, 0 removed" in after_move.stderr, after_move.stderr


def test_one_file_named_three_ways_is_one_record(tmp_path, photos, siglip_dir):
    work = photos.parent
    result = shell(f"mmtools embed-images photos/ ./photos {photos} | mmtools index -o idx.faiss", work,
                   MMTOOLS_MODEL=siglip_dir)
    assert result.returncode == 0, result.stderr
    assert "idx.faiss: 8 records" in result.stderr


def test_sigterm_and_sighup_end_a_writer_like_ctrl_c_leaving_the_index_whole(tmp_path, photos, siglip_dir):
    work = photos.parent
    assert shell("mmtools embed-images photos/ > vectors.jsonl && mmtools index -o idx.faiss < vectors.jsonl",
                 work, MMTOOLS_MODEL=siglip_dir).returncode == 0
    before = ((work / "idx.faiss").read_bytes(), metadata_path(work / "idx.faiss").read_bytes())
    lines = (work / "vectors.jsonl").read_bytes().splitlines(keepends=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        process = subprocess.Popen([str(BIN / "mmtools"), "index", "-o", "idx.faiss", "--rebuild"], cwd=work,
                                   env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        process.stdin.write(b"".join(lines[:3]))
        process.stdin.flush()
        time.sleep(3)  # let it start reading (imports take a moment)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        assert f"interrupted by {signal.Signals(signum).name}" in stderr.decode()
    after = ((work / "idx.faiss").read_bytes(), metadata_path(work / "idx.faiss").read_bytes())
    assert after == before
    assert not [p for p in work.iterdir() if p.name.endswith(".tmp") or p.name.endswith(".prev")]


def test_two_jobs_at_once_serialise_instead_of_failing(tmp_path, photos, siglip_dir):
    work = photos.parent
    assert shell("mmtools embed-images photos/ > v.jsonl", work, MMTOOLS_MODEL=siglip_dir).returncode == 0
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom mmtools.index import IndexWriter\n"
        "w = IndexWriter('idx.faiss')\nprint('locked', flush=True)\ntime.sleep(4)\nw.abort()\n")],
        cwd=work, env=env, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    refused = shell("mmtools index -o idx.faiss --no-wait < v.jsonl", work)
    assert refused.returncode == 3 and "another mmtools process" in refused.stderr
    waited = shell("mmtools index -o idx.faiss < v.jsonl", work)
    holder.wait(30)
    assert waited.returncode == 0, waited.stderr
    assert "waiting for another mmtools process" in waited.stderr and "8 records" in waited.stderr


def test_export_merge_and_removal_lists(tmp_path, photos, siglip_dir):
    work = photos.parent
    env = {"MMTOOLS_MODEL": siglip_dir}
    assert shell("mmtools embed-images photos/nested | mmtools index -o a.faiss", work, **env).returncode == 0
    assert shell("mmtools embed-images photos/*.jpg | mmtools index -o b.faiss --kind hnsw", work,
                 **env).returncode == 0
    merged = shell("mmtools index -o all.faiss --merge a.faiss --merge b.faiss", work)
    assert merged.returncode == 0, merged.stderr
    assert "all.faiss: 8 records" in merged.stderr
    exported = shell("mmtools index --export -o all.faiss", work)
    records = [orjson.loads(line) for line in exported.stdout.splitlines()]
    assert len(records) == 8 and all("embedding" in r and r["embedding_model"] for r in records)
    rekinded = shell("mmtools index --export -o all.faiss | mmtools index -o flat.faiss --kind flat", work)
    assert "flat.faiss: 8 records" in rekinded.stderr, rekinded.stderr
    gone = "\n".join(r["id"] for r in records[:3]) + "\nno-such-id\n"
    removed = subprocess.run(["bash", "-c", "mmtools index -o all.faiss --remove-from -"], cwd=work,
                             input=gone, capture_output=True, text=True,
                             env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    assert removed.returncode == 1  # one id was not there: named on stderr
    assert "no-such-id: no record with this id" in removed.stderr and "3 removed" in removed.stderr
    other = tmp_path / "other-model"
    from mmtools.models.synthetic import build_random_model

    build_random_model(other, "clip-tiny")
    assert shell("mmtools embed-images photos/nested | mmtools index -o c.faiss", work,
                 MMTOOLS_MODEL=str(other)).returncode == 0
    refused = shell("mmtools index -o mixed.faiss --merge a.faiss --merge c.faiss", work)
    assert refused.returncode == 3 and "model" in refused.stderr and not (work / "mixed.faiss").exists()


def build_index_with_own_model(tmp_path, photos):
    from mmtools.models.synthetic import build_random_model

    model = tmp_path / "model"
    build_random_model(model, "siglip-tiny", seed=0)
    built = shell("mmtools embed-images photos/ | mmtools index -o idx.faiss", photos.parent,
                  MMTOOLS_MODEL=str(model))
    assert built.returncode == 0, built.stderr
    return model


def test_a_moved_model_still_matches(tmp_path, photos):
    model = build_index_with_own_model(tmp_path, photos)
    moved = tmp_path / "moved-model"
    shutil.move(str(model), moved)
    found = shell(f'mmtools search -k 2 --model {moved} "xe hơi"', photos.parent)
    assert found.returncode == 0, found.stderr
    assert len(found.stdout.splitlines()) == 2


def test_a_model_retrained_into_the_same_directory_is_refused(tmp_path, photos):
    from mmtools.models.synthetic import build_random_model

    model = build_index_with_own_model(tmp_path, photos)
    shutil.rmtree(model)
    build_random_model(model, "siglip-tiny", seed=1)
    refused = shell('mmtools search -k 2 "xe hơi"', photos.parent)
    assert refused.returncode == 3 and "has changed since the index was built" in refused.stderr
    update = shell("mmtools embed-images photos/nested | mmtools index -o idx.faiss", photos.parent,
                   MMTOOLS_MODEL=str(model))
    assert update.returncode == 1 and "has changed since the index was built" in update.stderr


def test_the_example_cron_script_runs_twice_and_the_second_run_changes_nothing(tmp_path, photos, siglip_dir):
    script = REPO / "examples" / "nightly-index.sh"
    env = {"MMTOOLS_MODEL": siglip_dir}
    first = shell(f"{script} {photos}", tmp_path, **env)
    assert first.returncode == 0, first.stderr
    assert "8 added" in first.stderr
    index = photos / ".mmtools" / "idx.faiss"
    written = index.stat().st_mtime_ns
    second = shell(f"{script} {photos}", tmp_path, **env)
    assert second.returncode == 0 and "8 unchanged" in second.stderr, second.stderr
    assert index.stat().st_mtime_ns == written
    assert ids_of(index) == sorted(str(p.relative_to(photos)) for p in photos.rglob("*.jpg")
                                   if ".mmtools" not in p.parts)
