"""-o FILE.npy: vectors of large embedding jobs as one NumPy array, the records beside it; -o FILE.parquet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from mmtools.records import decode_vector, encode_vector
from mmtools.vector_files import PARQUET_ROWS, npy_header, records_path, write_npy, write_parquet

BIN = Path(sys.executable).parent


def records(count: int, dim: int = 5) -> list[dict]:
    rng = np.random.default_rng(count)
    return [{"id": f"r{i}", "caption": f"ảnh {i}", "embedding": encode_vector(rng.normal(size=dim).astype(np.float32),
                                                                              "base64")} for i in range(count)]


def test_the_array_holds_every_vector_in_order_and_the_records_name_their_rows(tmp_path):
    given = records(7)
    assert write_npy(iter(given), tmp_path / "v.npy") == 7
    array = np.load(tmp_path / "v.npy", mmap_mode="r")
    assert array.shape == (7, 5) and array.dtype == np.float32
    assert np.array_equal(array, np.stack([decode_vector(r["embedding"]) for r in given]))
    rest = [orjson.loads(line) for line in records_path(tmp_path / "v.npy").read_bytes().splitlines()]
    assert rest == [{"id": r["id"], "caption": r["caption"], "row": i} for i, r in enumerate(given)]
    assert records_path("out/v.npy") == Path("out/v.jsonl")


def test_an_empty_job_is_an_empty_array_and_big_shapes_fit_the_header(tmp_path):
    assert write_npy(iter([]), tmp_path / "e.npy") == 0
    assert np.load(tmp_path / "e.npy").shape == (0, 0)
    assert len(npy_header(10**12, 4096)) == len(npy_header(0, 0)) == 128


def test_a_vector_of_another_size_is_refused_and_what_was_there_stays(tmp_path):
    write_npy(iter(records(3)), tmp_path / "v.npy")
    before = (tmp_path / "v.npy").read_bytes(), (tmp_path / "v.jsonl").read_bytes()
    with pytest.raises(ValueError, match="dimensions"):
        write_npy(iter(records(2) + records(2, dim=8)), tmp_path / "v.npy")
    assert ((tmp_path / "v.npy").read_bytes(), (tmp_path / "v.jsonl").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.jsonl", "v.npy"]  # no temporaries left


def test_parquet_holds_every_record_and_vector_in_order_across_row_groups(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    given = records(PARQUET_ROWS + 3)
    given[1]["path"] = "photos/a.jpg"
    given[2]["tags"] = ["biển", "trời"]
    assert write_parquet(iter(given), tmp_path / "v.parquet") == len(given)
    table = pq.read_table(tmp_path / "v.parquet")
    assert table.column_names == ["id", "path", "embedding", "record"]
    assert pq.ParquetFile(tmp_path / "v.parquet").num_row_groups == 2
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(len(given), 5)
    assert np.array_equal(vectors, np.stack([decode_vector(r["embedding"]) for r in given]))
    assert table.column("id").to_pylist() == [r["id"] for r in given]
    assert table.column("path").to_pylist()[:3] == [None, "photos/a.jpg", None]
    rest = [orjson.loads(text) for text in table.column("record").to_pylist()[:3]]
    assert rest == [{"caption": "ảnh 0"}, {"caption": "ảnh 1"}, {"caption": "ảnh 2", "tags": ["biển", "trời"]}]


def test_parquet_refuses_a_vector_of_another_size_and_leaves_what_was_there(tmp_path):
    pytest.importorskip("pyarrow.parquet")
    write_parquet(iter(records(3)), tmp_path / "v.parquet")
    before = (tmp_path / "v.parquet").read_bytes()
    with pytest.raises(ValueError, match="dimensions"):
        write_parquet(iter(records(2) + records(2, dim=8)), tmp_path / "v.parquet")
    assert (tmp_path / "v.parquet").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.parquet"]
    assert write_parquet(iter([]), tmp_path / "empty.parquet") == 0


@pytest.mark.slow
def test_embed_texts_to_npy_gives_the_vectors_jsonl_would(tmp_path, siglip_dir):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MMTOOLS_MODEL": siglip_dir,
           "OMP_NUM_THREADS": "1"}
    texts = "xe hơi màu đỏ\ncon mèo\nngười đàn ông đang chơi bóng chày\n"
    plain = subprocess.run(["mmtools", "embed-texts", "--lines"], input=texts, cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
    to_npy = subprocess.run(["mmtools", "embed-texts", "--lines", "-o", "v.npy"], input=texts, cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600)
    assert plain.returncode == 0 and to_npy.returncode == 0, to_npy.stderr
    assert to_npy.stdout == "" and "3 vectors" in to_npy.stderr
    expected = np.stack([decode_vector(orjson.loads(line)["embedding"]) for line in plain.stdout.splitlines()])
    assert np.allclose(np.load(tmp_path / "v.npy"), expected, atol=1e-6)
    rows = [orjson.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == texts.splitlines() and [r["row"] for r in rows] == [0, 1, 2]
    to_parquet = subprocess.run(["mmtools", "embed-texts", "--lines", "-o", "v.parquet"], input=texts, cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=600)
    assert to_parquet.returncode == 0 and to_parquet.stdout == "", to_parquet.stderr
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "v.parquet")
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(3, -1)
    assert np.allclose(vectors, expected, atol=1e-6)
