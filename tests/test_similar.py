"""mmtools similar: "more like this" for records an index holds, through the real program and pipes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from mmtools.similar import without_themselves

BIN = Path(sys.executable).parent


def shell(command: str, cwd: Path, **extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1", **extra}
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture
def indexed(photos, siglip_dir):
    built = shell("mmtools embed-images photos | mmtools index -o idx.faiss", photos.parent, MMTOOLS_MODEL=siglip_dir)
    assert built.returncode == 0, built.stderr
    return photos.parent


@pytest.mark.slow
def test_hits_are_the_stored_vectors_search_less_the_record_itself(indexed):
    first = sorted((indexed / "photos").glob("*.jpg"))[0]
    found = shell(f"mmtools similar photos/{first.name} -i idx.faiss -k 3 | cat", indexed)
    assert found.returncode == 0, found.stderr
    hits = [orjson.loads(line) for line in found.stdout.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert all(h["id"] != str(first) and h["query_id"] == str(first) for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # the same as searching with the record's own exported vector, where the record itself comes first
    exported = shell(f"mmtools index --export -o idx.faiss | grep -F '\"{first}\"' | mmtools search -i idx.faiss "
                     "-k 4 | cat", indexed)
    assert exported.returncode == 0, exported.stderr
    plain = [orjson.loads(line) for line in exported.stdout.splitlines()]
    assert plain[0]["id"] == str(first) and plain[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [(h["id"], h["score"]) for h in plain[1:]] == [(h["id"], h["score"]) for h in hits]


@pytest.mark.slow
def test_an_id_not_in_the_index_is_named_and_the_others_are_answered(indexed):
    second = sorted((indexed / "photos").glob("*.jpg"))[1]
    found = shell(f"printf 'nope.jpg\\nphotos/{second.name}\\n' | mmtools similar - -k 2 --format paths", indexed)
    assert found.returncode == 1
    assert found.stderr.count("\n") == 1 and "nope.jpg" in found.stderr and "not in the index" in found.stderr
    paths = found.stdout.splitlines()
    assert len(paths) == 2 and all((indexed / p).is_file() and not p.endswith(second.name) for p in paths)


def test_without_themselves_drops_each_querys_own_record_and_ranks_again():
    hits = [{"query_id": "a", "id": "a", "rank": 1}, {"query_id": "a", "id": "b", "rank": 2},
            {"query_id": "a", "id": "c", "rank": 3}, {"query_id": "b", "id": "c", "rank": 1},
            {"query_id": "b", "id": "a", "rank": 2}, {"query_id": "b", "id": "b", "rank": 3}]
    assert [(h["query_id"], h["id"], h["rank"]) for h in without_themselves(hits, 2)] == [
        ("a", "b", 1), ("a", "c", 2), ("b", "c", 1), ("b", "a", 2)]
    assert [h["id"] for h in without_themselves(hits, 1)] == ["b", "c"]
