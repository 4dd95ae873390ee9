import sqlite3
from pathlib import Path

import faiss
import numpy as np
import pytest

from mmtools.errors import IndexFileError
from mmtools.index import IndexReader, IndexWriter, index_records, metadata_path
from mmtools.records import encode_vector


def unit_vectors(n, dim=16, seed=0):
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def records(vectors, model="m", prefix="r", fmt="base64"):
    return [{"id": f"{prefix}{i}", "embedding": encode_vector(v, fmt), "embedding_model": model, "n": i}
            for i, v in enumerate(vectors)]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_each_kind_finds_every_vector_first(tmp_path, kind):
    vectors = unit_vectors(400)
    path = tmp_path / "idx.faiss"
    summary = index_records(records(vectors), path, kind=kind)
    assert (summary.added, summary.info.count, summary.info.kind) == (400, 400, kind)
    with IndexReader(path) as reader:
        hits = reader.search(vectors[:50], k=3)
    assert [h[0].id for h in hits] == [f"r{i}" for i in range(50)]
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-3)  # exact re-ranking gives exact scores
    assert hits[7][0].record == {"id": "r7", "n": 7}  # the record without its embedding
    # plain FAISS opens each segment file (the IVF kinds' shared trained index holds no vectors)
    segment_files = sorted(Path(f"{path}.segments").glob("*.faiss"))
    assert sum(faiss.read_index(str(f)).ntotal for f in segment_files) == 400


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_updates_replace_by_id_and_remove(tmp_path, kind):
    vectors = unit_vectors(20)
    path = tmp_path / "idx.faiss"
    index_records(records(vectors), path, kind=kind)
    summary = index_records([{"id": "r0", "embedding": encode_vector(vectors[5]), "embedding_model": "m",
                              "n": "new"}], path, remove_ids=["r1"])
    assert (summary.added, summary.replaced, summary.removed, summary.info.count) == (0, 1, 1, 19)
    with IndexReader(path) as reader:
        top = reader.search(vectors[5:6], k=2)[0]
        assert {h.id for h in top} == {"r0", "r5"}
        assert next(h for h in top if h.id == "r0").record["n"] == "new"
        assert all(h.id != "r1" for h in reader.search(vectors[1:2], k=20)[0])
        assert len(reader.search(vectors[1:2], k=100)[0]) == 19


def test_other_models_and_dimensions_are_refused_record_by_record(tmp_path):
    path = tmp_path / "idx.faiss"
    good = records(unit_vectors(5))
    bad_model = records(unit_vectors(1), model="other", prefix="x")
    bad_dim = records(unit_vectors(1, dim=8), prefix="y")
    problems = []
    summary = index_records(good[:2] + bad_model + bad_dim + [{"id": "z", "embedding": "!!"}, {"n": 1}]
                            + good[2:], path, on_problem=problems.append)
    assert summary.added == 5 and summary.skipped == 4
    reasons = {p.source: p.reason for p in problems}
    assert "model other" in reasons["x0"] and "holds model m" in reasons["x0"]
    assert "8 dimensions" in reasons["y0"]
    assert "base64" in reasons["z"]
    assert "no 'id'" in reasons["record 6"]


def test_an_index_for_one_model_refuses_to_be_rebuilt_silently_for_another(tmp_path):
    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(3)), path)
    with pytest.raises(IndexFileError, match="holds vectors from model m"):
        index_records(records(unit_vectors(3), model="n"), path, model="n")
    summary = index_records(records(unit_vectors(3), model="n"), path, model="n", rebuild=True)
    assert summary.info.model == "n"


def test_a_failing_run_leaves_the_existing_index_whole(tmp_path):
    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(10)), path)
    before = (path.read_bytes(), metadata_path(path).read_bytes())

    def dies_halfway():
        yield from records(unit_vectors(5, seed=1), prefix="new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        index_records(dies_halfway(), path)
    assert (path.read_bytes(), metadata_path(path).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx.faiss", "idx.faiss.lock", "idx.faiss.meta.sqlite",
                                                          "idx.faiss.segments"]


def test_nothing_to_index_writes_nothing(tmp_path):
    with pytest.raises(IndexFileError, match="no embeddings"):
        index_records([], tmp_path / "idx.faiss")
    assert not (tmp_path / "idx.faiss").exists()


def test_a_second_writer_is_told_to_wait(tmp_path):
    path = tmp_path / "idx.faiss"
    with IndexWriter(path) as writer:
        writer.add("a", unit_vectors(1)[0], {}, model="m")
        with pytest.raises(IndexFileError, match="another mmtools process"):
            IndexWriter(path, lock_timeout=0)


def test_metadata_out_of_step_with_the_index_is_detected(tmp_path):
    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(10)), path)
    other = tmp_path / "other.faiss"
    index_records(records(unit_vectors(4)), other)
    path.write_bytes(other.read_bytes())
    with pytest.raises(IndexFileError, match="different writes"):
        IndexReader(path)


def test_missing_corrupt_and_newer_indexes_have_clear_messages(tmp_path):
    with pytest.raises(IndexFileError, match="no index at"):
        IndexReader(tmp_path / "nope.faiss")
    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(3)), path)
    with sqlite3.connect(metadata_path(path)) as db:
        db.execute("UPDATE info SET value = '7' WHERE key = 'format_version'")
    with pytest.raises(IndexFileError, match="newer mmtools"):
        IndexReader(path)
    path.write_bytes(b"garbage")
    with pytest.raises(IndexFileError):
        IndexReader(path)


def test_min_score_and_list_encoded_vectors(tmp_path):
    vectors = unit_vectors(10)
    path = tmp_path / "idx.faiss"
    index_records(records(vectors, fmt="list"), path)
    with IndexReader(path) as reader:
        hits = reader.search(vectors[:1], k=10, min_score=0.99)[0]
    assert [h.id for h in hits] == ["r0"]


def test_search_parameters_can_change_but_build_parameters_need_a_rebuild(tmp_path):
    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(50)), path, kind="hnsw", params={"m": 16, "ef_search": 32})
    with IndexWriter(path, params={"ef_search": 64}) as writer:
        writer.remove(["r0"])
    with IndexReader(path) as reader:
        assert reader.info.params == {"m": 16, "ef_construction": 200, "ef_search": 64}
    with pytest.raises(IndexFileError, match="fixed when the index is built"):
        IndexWriter(path, params={"m": 8})
    with pytest.raises(IndexFileError, match="does not apply"):
        index_records(records(unit_vectors(5)), tmp_path / "new.faiss", kind="flat", params={"nprobe": 4})


def test_refused_and_empty_writes_leave_no_temporary_files(tmp_path):
    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(3)), path)
    with pytest.raises(IndexFileError):
        index_records(records(unit_vectors(3), model="n"), path, model="n")
    with pytest.raises(IndexFileError):
        index_records([], tmp_path / "empty.faiss")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
