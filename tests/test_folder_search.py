"""mmtools search --folder: a folder searched in one step (its own index, kept up to date), through the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from mmtools.folder_index import folder_index_path
from mmtools.models import resolve_model

BIN = Path(sys.executable).parent


def shell(command: str, cwd: Path, **extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1", **extra}
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def hits(done: subprocess.CompletedProcess) -> list[dict]:
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def test_folder_is_indexed_once_then_follows_its_files(photos, siglip_dir, tmp_path, monkeypatch):
    cache = tmp_path / "own-cache"
    env = {"MMTOOLS_MODEL": siglip_dir, "MMTOOLS_CACHE_DIR": str(cache)}
    first = shell("mmtools search 'a photo' --folder photos -k 20 | cat", photos.parent, **env)
    found = hits(first)
    on_disk = sorted(str(p.relative_to(photos.parent)) for p in photos.rglob("*.jpg"))
    assert sorted(h["path"] for h in found) == on_disk  # every photo, paths relative to where it ran
    assert "8 photos indexed (8 added" in first.stderr
    monkeypatch.setenv("MMTOOLS_CACHE_DIR", str(cache))
    index = folder_index_path(photos, resolve_model(siglip_dir).name)
    assert index.exists() and orjson.loads((index.parent / "folder.json").read_bytes())["folder"] == str(
        photos.resolve())

    # the same as building the index by hand and searching it
    built = shell("mmtools embed-images photos | mmtools index -o idx.faiss && "
                  "mmtools search 'a photo' -i idx.faiss -k 20 | cat", photos.parent, **env)
    by_hand = hits(built)
    assert [h["path"] for h in by_hand] == [h["path"] for h in found]
    assert [round(h["score"], 4) for h in by_hand] == [round(h["score"], 4) for h in found]

    # nothing changed: nothing is said, nothing is encoded (the model is not even loaded)
    again = shell("mmtools search 'a photo' --folder photos -k 20 | cat", photos.parent, **env)
    assert [h["path"] for h in hits(again)] == [h["path"] for h in found]
    assert "indexed" not in again.stderr

    # a photo removed and one added, named from another folder: the same index follows them
    gone = sorted(photos.glob("*.jpg"))[0]
    gone.unlink()
    shutil.copy(sorted(photos.rglob("*.jpg"))[-1], photos / "new copy.jpg")
    elsewhere = shell(f"mmtools search 'a photo' --folder {photos} -k 20 | cat", tmp_path.parent, **env)
    paths = {Path(h["path"]).name for h in hits(elsewhere)}
    assert gone.name not in paths and "new copy.jpg" in paths and len(paths) == 8
    assert "(1 added, 0 replaced, 1 removed)" in elsewhere.stderr


def test_folder_errors_are_sentences(photos, siglip_dir, tmp_path):
    env = {"MMTOOLS_MODEL": siglip_dir, "MMTOOLS_CACHE_DIR": str(tmp_path / "own-cache")}
    missing = shell("mmtools search 'x' --folder nowhere", photos.parent, **env)
    assert missing.returncode == 2 and "nowhere: no such folder" in missing.stderr
    (photos.parent / "empty").mkdir()
    empty = shell("mmtools search 'x' --folder empty", photos.parent, **env)
    assert empty.returncode == 2 and "no photos in this folder" in empty.stderr
    both = shell("mmtools search 'x' --folder photos -i idx.faiss", photos.parent, **env)
    assert both.returncode == 2 and "leave out --index" in both.stderr


@pytest.mark.slow
def test_unreadable_photo_is_named_and_the_rest_are_searched(photos, siglip_dir, tmp_path):
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    env = {"MMTOOLS_MODEL": siglip_dir, "MMTOOLS_CACHE_DIR": str(tmp_path / "own-cache")}
    done = shell("mmtools search 'a photo' --folder photos -k 20 | cat", photos.parent, **env)
    assert done.returncode == 1 and "broken.jpg" in done.stderr
    assert len([orjson.loads(line) for line in done.stdout.splitlines()]) == 8
