"""Segments: a write adds a small file and leaves the others alone; readers merge the segments' results;
merging keeps their number bounded; format-2 indexes upgrade in place."""

import sys
from pathlib import Path

import numpy as np
import pytest

from mmtools.index import IndexReader, IndexWriter, filters, fulltext, index_records, merging
from mmtools.index.info import FORMAT_VERSION
from mmtools.records import decode_vector, encode_vector

sys.path.insert(0, str(Path(__file__).parent / "helpers"))


def unit_vectors(n, dim=16, seed=0):
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def records(vectors, prefix="r", start=0, **fields):
    return [{"id": f"{prefix}{i}", "embedding": encode_vector(v), "embedding_model": "m", "n": i,
             "caption": f"ảnh số {i}", **fields} for i, v in enumerate(vectors, start)]


def segment_files(path):
    folder = Path(f"{path}.segments")
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf", "ivfpq"])
def test_an_update_writes_one_new_segment_and_reads_no_existing_vectors(tmp_path, kind, monkeypatch):
    import faiss

    path = tmp_path / "idx.faiss"
    vectors = unit_vectors(600)
    index_records(records(vectors), path, kind=kind)
    before = segment_files(path)
    if kind in ("flat", "hnsw"):  # IVF kinds read their trained empty index, which holds no vectors
        monkeypatch.setattr(faiss, "read_index", lambda *a, **k: pytest.fail("a FAISS file was read"))
    new = unit_vectors(10, seed=5)
    index_records(records(new, start=100), path)  # replaces r100..r109
    monkeypatch.undo()
    after = segment_files(path)
    assert {n: v for n, v in after.items() if n in before} == before  # untouched, not even rewritten
    assert len(set(after) - set(before)) == 1
    with IndexReader(path) as reader:
        assert (reader.info.count, reader.segment_count) == (600, 2)
        hits = reader.search(new, k=1)
        assert [h[0].id for h in hits] == [f"r{i}" for i in range(100, 110)]
        old_hits = reader.search(vectors[100:110], k=3)  # the replaced vectors are dead: never found
        assert all(h.id != f"r{100 + i}" or h.score < 0.99 for i, hs in enumerate(old_hits) for h in hs)
        assert [h[0].id for h in reader.search(vectors[:5], k=1)] == [f"r{i}" for i in range(5)]


def test_readers_merge_segments_for_search_filters_vectors_and_export(tmp_path):
    path = tmp_path / "idx.faiss"
    vectors = unit_vectors(90)
    for part in range(3):  # three writes, three segments
        index_records(records(vectors[part * 30:(part + 1) * 30], start=part * 30, album=f"a{part}"), path)
    index_records([], path, remove_ids=["r31"])
    with IndexReader(path) as reader:
        assert reader.segment_count == 3 and reader.info.count == 89
        hits = reader.search(vectors, k=1)
        assert [hits[i][0].id for i in range(90) if i != 31] == [f"r{i}" for i in range(90) if i != 31]
        assert hits[31][0].id != "r31"
        rows = [row for row, _, record in reader.scan() if record["album"] == "a1"]
        ranked = reader.search(vectors[40:41], k=5, among=rows)[0]
        assert ranked[0].id == "r40" and all(h.record["album"] == "a1" for h in ranked)
        everything = [row for row, _, _ in reader.scan()]
        got = reader.vectors_of(everything[::-1])
        np.testing.assert_allclose(got, np.delete(vectors, 31, axis=0)[::-1], atol=1e-6)
        exported = list(reader.export())
        assert [r["id"] for r in exported] == [f"r{i}" for i in range(90) if i != 31]
        np.testing.assert_allclose(decode_vector(exported[40]["embedding"]), vectors[41], atol=1e-6)
        assert len(fulltext.search(reader.connection, "ảnh", 1000)) == 89
    sel = filters.select(IndexReader(path), filters.parse_conditions(["album=a2"]))
    assert len(sel) == 30


def test_small_writes_are_merged_so_segments_stay_few(tmp_path):
    path = tmp_path / "idx.faiss"
    vectors = unit_vectors(200)
    for part in range(20):
        index_records(records(vectors[part * 10:(part + 1) * 10], start=part * 10), path)
    with IndexReader(path) as reader:
        assert reader.segment_count < merging.MERGE_WIDTH
        assert reader.info.count == 200 == reader.info.ntotal
        assert [h[0].id for h in reader.search(vectors, k=1)] == [f"r{i}" for i in range(200)]
    summary = index_records([], path, compact=True)
    assert summary.compacted and summary.info.segments == 1


def test_the_merge_policy():
    stat = merging.SegmentStat
    limit = 10**6
    small = [stat(i, f"s{i}", 10, 10) for i in range(merging.MERGE_WIDTH)]
    assert merging.plan(small[:-1], limit) == ([], [])
    assert merging.plan(small, limit) == ([], small)
    big = stat(99, "big", 100_000, 100_000)
    dead = stat(98, "dead", 100_000, 60_000)
    assert merging.plan([big, dead, *small[:2]], limit) == ([], [dead])  # dead rows first
    gone = stat(97, "gone", 50, 0)
    assert merging.plan([big, gone], limit) == ([gone], [])
    assert merging.plan([big, *small[:2]], limit, everything=True) == ([], [big, *small[:2]])
    assert merging.plan([big], limit, everything=True) == ([], [])


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_a_format_2_index_is_read_then_upgraded_without_copying_its_vectors(tmp_path, kind):
    import store_v2

    path = tmp_path / "idx.faiss"
    vectors = unit_vectors(300)
    store_v2.build(path, records(vectors), kind=kind)
    inode = path.stat().st_ino
    with IndexReader(path) as reader:
        assert reader.info.format_version == 2
        assert [h[0].id for h in reader.search(vectors[:20], k=1)] == [f"r{i}" for i in range(20)]
    new = unit_vectors(5, seed=9)
    summary = index_records(records(new, prefix="n"), path)
    assert summary.info.format_version == FORMAT_VERSION and summary.info.count == 305
    assert inode in {p.stat().st_ino for p in Path(f"{path}.segments").iterdir()}  # a link, not a copy
    with IndexReader(path) as reader:
        assert reader.segment_count == 2
        assert [h[0].id for h in reader.search(new, k=1)] == [f"n{i}" for i in range(5)]
        assert [h[0].id for h in reader.search(vectors[:20], k=1)] == [f"r{i}" for i in range(20)]
        assert len(fulltext.search(reader.connection, "anh", 1000)) == 305


def test_a_warm_reader_sees_that_a_write_committed(tmp_path):
    from mmtools.index.backends import signature

    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(10)), path)
    first = signature(path)
    assert signature(path) == first
    index_records(records(unit_vectors(2, seed=3), prefix="x"), path)
    assert signature(path) != first


def test_a_rebuild_replaces_every_segment(tmp_path):
    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(30)), path)
    index_records(records(unit_vectors(30, seed=1), prefix="x"), path)
    with IndexWriter(path, rebuild=True, kind="hnsw") as writer:
        writer.add("only", unit_vectors(1, seed=4)[0], {}, model="m")
    with IndexReader(path) as reader:
        assert list(reader.ids()) == ["only"] and reader.info.kind == "hnsw" and reader.segment_count == 1
    assert len(segment_files(path)) == 1


def centroids_in_file(path):
    import faiss

    return faiss.extract_index_ivf(faiss.read_index(str(path))).quantizer.ntotal


@pytest.mark.parametrize("kind", ["ivf", "ivfpq"])
def test_ivf_segments_share_the_trained_centroids_instead_of_repeating_them(tmp_path, kind):
    path = tmp_path / "idx.faiss"
    vectors = unit_vectors(2000, dim=32)
    index_records(records(vectors), path, kind=kind)
    before = set(segment_files(path))
    new = unit_vectors(10, dim=32, seed=7)
    index_records(records(new, prefix="n"), path)
    folder = Path(f"{path}.segments")
    added = folder / (set(segment_files(path)) - before).pop()
    with IndexReader(path) as reader:
        nlist = reader.info.trained["nlist"]
        trained = folder / reader.info.quantizer
        assert [h[0].id for h in reader.search(new, k=1)] == [f"n{i}" for i in range(10)]
        assert [h[0].id for h in reader.search(vectors[:20], k=1)] == [f"r{i}" for i in range(20)]
    assert centroids_in_file(trained) == nlist > 1
    assert centroids_in_file(added) == 0
    assert added.stat().st_size < nlist * 32 * 4  # less than the centroids alone
    summary = index_records([], path, compact=True)  # a merge of segments without centroids
    assert summary.info.segments == 1
    with IndexReader(path) as reader:
        assert [h[0].id for h in reader.search(new, k=1)] == [f"n{i}" for i in range(10)]
        assert [h[0].id for h in reader.search(vectors[:20], k=1)] == [f"r{i}" for i in range(20)]


def test_segments_with_their_own_centroids_still_open_merge_and_retrain(tmp_path, monkeypatch):
    import contextlib

    from mmtools.index import segments

    path = tmp_path / "idx.faiss"
    vectors = unit_vectors(400, dim=32)
    monkeypatch.setattr(segments, "_centroids_left_out", lambda index: contextlib.nullcontext())
    index_records(records(vectors), path, kind="ivf")  # as a format-3 mmtools wrote it
    monkeypatch.undo()
    (first,) = set(segment_files(path)) - {n for n in segment_files(path) if n.startswith("trained-")}
    assert centroids_in_file(Path(f"{path}.segments") / first) > 1
    new = unit_vectors(10, dim=32, seed=7)
    index_records(records(new, prefix="n"), path)
    with IndexReader(path) as reader:
        assert reader.segment_count == 2
        assert [h[0].id for h in reader.search(new, k=1)] == [f"n{i}" for i in range(10)]
        assert [h[0].id for h in reader.search(vectors[:20], k=1)] == [f"r{i}" for i in range(20)]
        trained_on = reader.info.trained["on"]
    more = unit_vectors(4 * trained_on, dim=32, seed=8)  # grown 4x past its sample: trained again
    summary = index_records(records(more, prefix="m"), path)
    assert summary.info.trained["on"] > trained_on and summary.info.segments == 1
    with IndexReader(path) as reader:
        for batch, prefix in ((new, "n"), (vectors[:20], "r"), (more[:20], "m")):
            assert [h[0].id for h in reader.search(batch, k=1)] == [f"{prefix}{i}" for i in range(len(batch))]


def test_a_segment_without_centroids_and_no_trained_index_to_take_them_from_is_refused(tmp_path):
    from mmtools.errors import IndexFileError
    from mmtools.index import segments

    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(400, dim=32)), path, kind="ivfpq")
    index_records(records(unit_vectors(5, dim=32, seed=3), prefix="n"), path)
    folder = Path(f"{path}.segments")
    with IndexReader(path) as reader:
        trained = reader.info.quantizer
    stripped = [n for n in segment_files(path) if not n.startswith("trained-")
                and centroids_in_file(folder / n) == 0]
    assert stripped
    with pytest.raises(IndexFileError, match="no centroids of its own"):
        segments.read_segment(folder, stripped[0], mmap=True)
    assert segments.read_segment(folder, stripped[0], mmap=True,
                                 trained=segments.read_trained(folder, trained)).ntotal > 0
