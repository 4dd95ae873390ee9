"""End to end: the installed `mmtools` program through real shell pipes, as users run it."""

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def shell(command, cwd, **env):
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=240)


def test_the_main_job_exactly_as_documented(tmp_path, photos, siglip_dir):
    """`mmtools embed-images photos/ | mmtools index -o idx.faiss` then `mmtools search "xe hơi màu đỏ"`."""
    work = photos.parent
    built = shell("mmtools embed-images photos/ | mmtools index -o idx.faiss", work, MMTOOLS_MODEL=siglip_dir)
    assert built.returncode == 0, built.stderr
    assert built.stdout == ""
    assert "idx.faiss: 8 records" in built.stderr
    found = shell('mmtools search "xe hơi màu đỏ"', work)  # the model comes from the index
    assert found.returncode == 0, found.stderr
    hits = [orjson.loads(line) for line in found.stdout.splitlines()]
    assert len(hits) == 8 and [h["rank"] for h in hits] == list(range(1, 9))
    assert all(h["path"].startswith("photos/") for h in hits)
    assert hits == sorted(hits, key=lambda h: -h["score"])


def test_index_named_by_environment_and_nightly_update(tmp_path, photos, siglip_dir):
    work = photos.parent
    env = {"MMTOOLS_MODEL": siglip_dir, "MMTOOLS_INDEX": str(tmp_path / "library.faiss")}
    first = shell("mmtools embed-images photos/nested | mmtools index", work, **env)
    assert first.returncode == 0, first.stderr
    again = shell("mmtools embed-images photos/ | mmtools index", work, **env)
    assert "2 unchanged" in again.stderr and "6 added" in again.stderr  # unchanged photos are no-ops
    found = shell("mmtools search -k 1 xe", work, **env)
    assert found.returncode == 0 and len(found.stdout.splitlines()) == 1


def test_bad_inputs_in_a_pipeline_are_named_and_the_rest_goes_through(tmp_path, photos, broken_files, siglip_dir):
    work = photos.parent
    result = shell(f"mmtools embed-images photos/ {broken_files['text']} {broken_files['truncated']} "
                   "| mmtools index -o idx.faiss", work, MMTOOLS_MODEL=siglip_dir)
    assert result.returncode == 1  # pipefail: embed-images skipped two inputs
    lines = result.stderr.strip().splitlines()
    assert sum("mmtools embed-images: " in line for line in lines) == 3  # the two, and the closing line
    assert "mmtools embed-images: 8 embedded, 2 skipped, " in result.stderr
    assert "idx.faiss: 8 records" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_closed_pipe_ends_quietly(photos, siglip_dir):
    work = photos.parent
    result = shell("mmtools embed-images photos/ --batch-size 1 | head -n 1", work, MMTOOLS_MODEL=siglip_dir)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr == ""


def test_texts_through_a_pipe_into_search(tmp_path, photos, siglip_dir):
    work = photos.parent
    shell("mmtools embed-images photos/ | mmtools index -o idx.faiss", work, MMTOOLS_MODEL=siglip_dir)
    result = shell("printf 'xe hơi\\ncon mèo\\n' | mmtools embed-texts --lines | mmtools search -k 2", work,
                   MMTOOLS_MODEL=siglip_dir)
    assert result.returncode == 0, result.stderr
    hits = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [h["query"] for h in hits] == ["xe hơi", "xe hơi", "con mèo", "con mèo"]


def test_help_is_instant_and_imports_no_heavy_library(tmp_path):
    code = ("import sys, runpy; sys.argv = ['mmtools', '--help']\n"
            "try:\n    runpy.run_module('mmtools', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'faiss', 'underthesea', 'PIL', 'numpy') "
            "if m in sys.modules]\nprint('HEAVY', heavy, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in result.stderr
