"""Where an index's files are: `--sync` and search hits locate each record's file from any working folder."""

import os
import sqlite3

import numpy as np
import pytest
from PIL import Image

from mmtools.images import canonical_path_id
from mmtools.index import IndexReader, index_records
from mmtools.records import encode_vector

COUNT = 20


def unit_vectors(n, dim=16, seed=0):
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder with photos/ of 20 small images (two in a subfolder), as the working folder."""
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    for i in range(COUNT):
        name = f"sub/p{i}.jpg" if i < 2 else f"p{i}.jpg"
        Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(tmp_path / "photos" / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def embedded(root=None):
    """Records shaped as `mmtools embed-images photos` (or `--root photos photos`) writes them here."""
    paths = sorted(os.path.join("photos", p) for p in
                   [f"sub/p{i}.jpg" for i in range(2)] + [f"p{i}.jpg" for i in range(2, COUNT)])
    out = []
    for path, vector in zip(paths, unit_vectors(COUNT)):
        item_id = canonical_path_id(path, root)
        out.append({"id": item_id, "path": item_id if root is not None else path,
                    "embedding": encode_vector(vector), "embedding_model": "m"})
    return out


@pytest.mark.parametrize("root", [None, "photos"])
def test_sync_from_another_folder_keeps_every_record_whose_file_exists(work, monkeypatch, root):
    index = work / "idx.faiss"
    batch = embedded(root)
    index_records(batch, index, root=root)
    monkeypatch.chdir("/")
    problems = []
    summary = index_records(batch[:10], index, sync=True, on_problem=problems.append)
    assert summary.removed == 0 and summary.info.count == COUNT, problems
    # ... and still removes the record of a file that is really gone
    (work / "photos" / "sub" / "p1.jpg").unlink()  # not among the records fed again
    summary = index_records(batch[:10], index, sync=True, on_problem=problems.append)
    assert summary.removed == 1 and summary.info.count == COUNT - 1
    assert problems == []


def test_sync_keeps_and_names_a_record_whose_file_cannot_be_located(work, monkeypatch):
    index = work / "idx.faiss"
    odd = {"id": "album-cover", "path": "photos/p3.jpg", "embedding": encode_vector(unit_vectors(1, seed=5)[0]),
           "embedding_model": "m"}
    index_records(embedded() + [odd], index)
    monkeypatch.chdir("/")
    problems = []
    summary = index_records([], index, sync=True, on_problem=problems.append)
    assert summary.removed == 0 and summary.info.count == COUNT + 1
    assert [p.source for p in problems] == ["album-cover"]
    assert "cannot be located" in problems[0].reason and "kept" in problems[0].reason


@pytest.mark.parametrize("root", [None, "photos"])
def test_hit_paths_open_from_any_folder(work, monkeypatch, root):
    from mmtools.report import rows_from_records, write_html, write_montage
    from mmtools.search import Query, search

    index = work / "idx.faiss"
    batch = embedded(root)
    index_records(batch, index, root=root)
    monkeypatch.chdir("/")
    queries = [Query(f"q{i}", vector=v, model="m") for i, v in enumerate(unit_vectors(COUNT)[:4])]
    with IndexReader(index) as reader:
        hits = list(search(reader, queries, lambda: pytest.fail("no model needed"), k=5))
    assert len(hits) == 20
    assert all(os.path.isfile(hit["path"]) for hit in hits), [hit["path"] for hit in hits]
    assert [hit["id"] for hit in hits if hit["rank"] == 1] == [r["id"] for r in batch[:4]]  # ids as stored
    problems = []
    rows = rows_from_records(hits)
    write_montage(work / "sheet.png", rows, on_problem=problems.append)
    assert problems == []  # no grey cells
    page = work / "out" / "hits.html"
    page.parent.mkdir()
    write_html(page, rows)
    import re

    links = re.findall(r'<a href="([^"]+)"', page.read_text())
    assert len(links) == 20 and all((page.parent / link).is_file() for link in links)


def test_paths_format_from_root_opens_with_ls(work, monkeypatch):
    """`mmtools search --format paths | xargs ls` from / for a --root index (the README's cron recipe)."""
    import subprocess
    import sys

    index = work / "idx.faiss"
    index_records(embedded("photos"), index, root="photos")
    query = encode_vector(unit_vectors(1)[0])
    bin_dir = os.path.dirname(sys.executable)
    run = subprocess.run(
        ["bash", "-o", "pipefail", "-c",
         f"echo '{{\"id\": \"q\", \"embedding\": \"{query}\", \"embedding_model\": \"m\"}}' | "
         f"{bin_dir}/mmtools search -i {index} -k 3 --format paths | xargs ls"],
        cwd="/", capture_output=True, text=True, timeout=120, env={**os.environ, "MMTOOLS_NO_SERVER": "1"})
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.split()) == 3


def test_ivfpq_on_a_small_index_says_once_that_its_sample_is_small(tmp_path, capfd):
    vectors = unit_vectors(50, dim=32)
    batch = [{"id": f"r{i}", "embedding": encode_vector(v), "embedding_model": "m"} for i, v in enumerate(vectors)]
    summary = index_records(batch, tmp_path / "idx.faiss", kind="ivfpq")
    err = capfd.readouterr().err
    assert "WARNING clustering" not in err  # FAISS's own warning, once per sub-quantiser
    assert len(summary.notes) == 1 and "50 vectors" in summary.notes[0]
    with IndexReader(tmp_path / "idx.faiss") as reader:
        assert reader.search(vectors[:5], k=1)[0][0].id == "r0"


def test_the_root_of_a_rooted_index_is_recorded(work):
    index = work / "idx.faiss"
    index_records(embedded("photos"), index, root="photos")
    with sqlite3.connect(f"{index}.meta.sqlite") as db:
        values = dict(db.execute("SELECT key, value FROM info"))
    assert str(work / "photos") in values["root"]
