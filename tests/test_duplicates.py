"""mmtools duplicates: generated copies of real photos group exactly, through the real program and pipes."""

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from conftest import TEST_PHOTOS

pytest.importorskip("imagehash", reason="pip install 'mmtools[duplicates]' (the dev extra has it)")

BIN = Path(sys.executable).parent
ORIGINALS = 5
SAME_SCENE = ("0001201.jpg", "0002381.jpg")  # one tennis serve, a moment apart: different photos


def shell(command, cwd, **env):
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def collection(tmp_path_factory, model_dirs):
    """5 originals with a shrunk and a cropped copy each, 3 other photos and 2 shots of one scene, indexed
    through `embed-images | index`; the expected groups by file name."""
    from mmtools.duplicates.copies import write_copies

    images = [p for p in sorted((TEST_PHOTOS / "images").glob("*.jpg"))[28:] if p.name not in SAME_SCENE]
    assert len(images) == ORIGINALS + 3, f"the duplicates test's photos are missing from {TEST_PHOTOS}"
    work = tmp_path_factory.mktemp("duplicates")
    photos = work / "photos"
    photos.mkdir()
    rng = random.Random(5)
    expected = set()
    for n, photo in enumerate(images + [TEST_PHOTOS / "images" / s for s in SAME_SCENE]):
        shutil.copy(photo, photos / photo.name)
        if n < ORIGINALS:
            copies = write_copies(photo, photos, rng)
            expected.add(frozenset({photo.name, copies["small"].name, copies["crop"].name}))
    built = shell("mmtools embed-images photos/ | mmtools index -o idx.faiss", work,
                  MMTOOLS_MODEL=model_dirs["clip-tiny"])
    assert built.returncode == 0, built.stderr
    return work, expected


def test_copies_group_exactly_and_shots_of_one_scene_do_not(collection):
    work, expected = collection
    found = shell("mmtools duplicates -i idx.faiss | cat", work)
    assert found.returncode == 0, found.stderr
    groups = [orjson.loads(line) for line in found.stdout.splitlines()]
    assert {frozenset(Path(m["path"]).name for m in g["members"]) for g in groups} == expected
    assert len(groups) == ORIGINALS
    for group in groups:
        assert 0.8 <= group["score"] <= group["score_mean"] <= 1.0 + 1e-6
        for member in group["members"]:
            assert (work / member["path"]).is_file()  # opens from where the command ran
            assert member["id"].endswith(Path(member["path"]).name) and "sha256" in member


def test_paths_format_gives_one_tab_separated_line_per_group(collection):
    work, expected = collection
    found = shell("mmtools duplicates -i idx.faiss --format paths | sort", work)
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert {frozenset(Path(p).name for p in line.split("\t")) for line in lines} == expected
    assert all((work / p).is_file() for line in lines for p in line.split("\t"))


def test_a_missing_file_is_named_and_the_rest_goes_on(collection):
    work, expected = collection
    gone = sorted(next(iter(sorted(expected, key=sorted))))[1]  # one copy of the first group
    aside = work / gone
    (work / "photos" / gone).rename(aside)
    try:
        found = shell("mmtools duplicates -i idx.faiss", work)
    finally:
        aside.rename(work / "photos" / gone)
    assert found.returncode == 1
    assert f"mmtools duplicates: photos/{gone}: no such file" in found.stderr
    groups = {frozenset(Path(m["path"]).name for m in orjson.loads(line)["members"])
              for line in found.stdout.splitlines()}
    assert groups == {group - {gone} for group in expected}


def test_a_table_on_a_terminal_format(collection):
    work, _ = collection
    found = shell("mmtools duplicates -i idx.faiss --format table", work, COLUMNS="200")
    assert found.returncode == 0, found.stderr
    assert "size" in found.stdout and "photos" in found.stdout
    assert found.stdout.count("-small.jpg") == ORIGINALS


def test_an_index_without_exact_vectors_is_refused_clearly():
    from mmtools.duplicates import find_duplicates
    from mmtools.errors import IndexFileError

    class CodesOnly:
        path = "idx.faiss"

        def scan(self):
            yield 0, "a.jpg", {"path": "a.jpg"}

        def hit_path(self, item_id, record):
            return record["path"]

        def vectors_of(self, rows):
            return None

    with pytest.raises(IndexFileError, match="keeps no exact vectors") as caught:
        list(find_duplicates(CodesOnly()))
    assert "keep_vectors=1" in caught.value.hint


def test_without_imagehash_the_error_says_what_to_install(monkeypatch):
    from mmtools.duplicates import find_duplicates
    from mmtools.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "imagehash", None)
    with pytest.raises(MissingDependencyError) as caught:
        list(find_duplicates(object()))
    assert "mmtools[duplicates]" in caught.value.hint


def test_a_milvus_location_groups_the_same(collection, model_dirs):
    pytest.importorskip("pymilvus", reason="pip install 'mmtools[milvus]'")
    work, expected = collection
    location = f"milvus-lite://{work}/milvus.db/photos"
    built = shell(f"mmtools embed-images photos/ | mmtools index -o {location}", work,
                  MMTOOLS_MODEL=model_dirs["clip-tiny"])
    assert built.returncode == 0, built.stderr
    found = shell(f"mmtools duplicates -i {location} --format paths", work)
    assert found.returncode == 0, found.stderr
    assert {frozenset(Path(p).name for p in line.split("\t")) for line in found.stdout.splitlines()} == expected


@pytest.mark.parametrize("pairs_per_batch", [1, 7, 1 << 22])
def test_range_search_batches_find_every_pair_within_the_threshold_once(pairs_per_batch):
    import faiss
    import numpy as np

    from mmtools.duplicates import candidate_pairs

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((40, 8)).astype("float32")
    vectors[20:30] = vectors[:10] + 0.05 * rng.standard_normal((10, 8)).astype("float32")  # near copies
    faiss.normalize_L2(vectors)
    flat = faiss.IndexFlatIP(8)
    flat.add(vectors)
    cosines = vectors @ vectors.T
    expected = {(i, j) for i in range(40) for j in range(i + 1, 40) if cosines[i, j] >= 0.9}
    found = list(candidate_pairs(flat, 0.9, pairs_per_batch=pairs_per_batch))
    assert {(i, j) for i, j, _ in found} == expected and len(found) == len(expected)
    assert {(i, i + 20) for i in range(10)} <= expected
    assert all(abs(score - cosines[i, j]) < 1e-5 for i, j, score in found)


def test_the_commands_default_threshold_is_the_librarys():
    import inspect

    from mmtools.cli.duplicates import duplicates_command
    from mmtools.duplicates import DEFAULT_THRESHOLD

    assert inspect.signature(duplicates_command).parameters["threshold"].default == DEFAULT_THRESHOLD
