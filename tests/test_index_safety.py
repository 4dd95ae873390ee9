"""What cron jobs need from an index: one commit point under kill -9, waiting writers, bounded growth,
stable ids, removal that says what it did, and vectors that come back out."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from mmtools.errors import IndexFileError
from mmtools.index import IndexReader, IndexWriter, fulltext, index_records, metadata_path
from mmtools.index.info import FORMAT_VERSION
from mmtools.records import decode_vector, encode_vector

HELPERS = Path(__file__).parent / "helpers"
sys.path.insert(0, str(HELPERS))
from states import generation_records, generation_vectors  # noqa: E402

KINDS_TO_TEST = ["flat", "hnsw", "ivf", "ivfpq"]


def unit_vectors(n, dim=16, seed=0):
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def records(vectors, prefix="r", **fields):
    return [{"id": f"{prefix}{i}", "embedding": encode_vector(v), "embedding_model": "m", **fields}
            for i, v in enumerate(vectors)]


def generation_of(path):
    """'old' or 'new' when the index is wholly one write; fails the test on any mixture."""
    with IndexReader(path) as reader:
        stored = [reader.get(item_id) for item_id in reader.ids()]
        generations = {record["generation"] for record in stored}
        assert len(generations) == 1, f"records from two writes: {generations}"
        generation = generations.pop()
        assert len(stored) == 300
        hits = reader.search(generation_vectors(generation), k=1)
        right = sum(h[0].id == f"r{i}" for i, h in enumerate(hits) if h)
        assert right >= 290, f"{generation} metadata paired with other vectors ({right}/300 found themselves)"
        texts = {word: len(fulltext.search(reader.connection, word, 1000)) for word in ("cu", "moi")}
        assert texts == ({"cu": 300, "moi": 0} if generation == "old" else {"cu": 0, "moi": 300}), texts
        return generation


def index_files(folder):
    return sorted(p.name for p in folder.iterdir())


def kill_after_every_step(tmp_path, base, kind, *flags):
    """Run the update of crash_writer.py stopped after its 1st, 2nd... effect on disk, each on a copy of
    ``base``; after each, the index must be wholly old or new, and the next write must repair it."""
    expected_files = index_files(base)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    seen = []
    for step in range(1, 80):
        work = tmp_path / f"step{step}"
        shutil.copytree(base, work)
        mode = ["kill"] if step % 2 else []
        run = subprocess.run([sys.executable, str(HELPERS / "crash_writer.py"), str(work / "idx.faiss"), kind,
                              str(step), *mode, *flags], env=env, capture_output=True, text=True, timeout=60)
        if run.returncode == 0:
            assert generation_of(work / "idx.faiss") == "new"
            assert index_files(work) == expected_files
            break
        assert run.returncode in (99, -9), run.stderr
        seen.append(generation_of(work / "idx.faiss"))
        # The next write repairs what the killed one left and sweeps its temporary files.
        index_records(generation_records("new"), work / "idx.faiss")
        assert generation_of(work / "idx.faiss") == "new"
        assert index_files(work) == expected_files, "stale temporary files were left behind"
        assert segment_files(work) == segment_files_named(work), "segment files no manifest names were left"
        shutil.rmtree(work)
    else:
        pytest.fail("the update never finished")
    assert "old" in seen and "new" in seen
    return work


def segment_files(folder):
    return sorted(p.name for p in (folder / "idx.faiss.segments").iterdir())


def segment_files_named(folder):
    import sqlite3

    with IndexReader(folder / "idx.faiss") as reader:
        quantizer = [reader.info.quantizer] if reader.info.quantizer else []
    db = sqlite3.connect(metadata_path(folder / "idx.faiss"))
    try:
        return sorted([name for (name,) in db.execute("SELECT name FROM segments")] + quantizer)
    finally:
        db.close()


def old_index(folder, kind, build=index_records):
    folder.mkdir()
    build(generation_records("old"), folder / "idx.faiss", kind=kind,
          params={"nprobe": 64} if kind.startswith("ivf") else None)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS_TO_TEST)
def test_a_writer_killed_after_any_rename_or_write_leaves_the_index_wholly_old_or_wholly_new(tmp_path, kind):
    kill_after_every_step(tmp_path, old_index(tmp_path / "base", kind), kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_a_writer_killed_during_a_merge_leaves_the_index_wholly_old_or_wholly_new(tmp_path, kind, monkeypatch):
    from mmtools.index import merging

    monkeypatch.setattr(merging, "segment_limit", lambda dim: 50)  # the old state in 6 segments
    base = old_index(tmp_path / "base", kind)
    with IndexReader(base / "idx.faiss") as reader:
        assert reader.segment_count == 6
    finished = kill_after_every_step(tmp_path, base, kind, "merge")
    with IndexReader(finished / "idx.faiss") as reader:
        assert reader.segment_count == 1  # the write merged the six segments it wrote


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flat"])
def test_a_writer_killed_while_upgrading_a_format_2_index_leaves_it_wholly_old_or_wholly_new(tmp_path, kind):
    import store_v2

    def build(records, path, **options):
        store_v2.build(path, records, **options)

    base = old_index(tmp_path / "base", kind, build)
    with IndexReader(base / "idx.faiss") as reader:
        assert reader.info.format_version == 2
    expected = {"idx.faiss", "idx.faiss.lock", "idx.faiss.meta.sqlite"}
    assert set(index_files(base)) == expected
    upgraded = tmp_path / "upgraded"
    shutil.copytree(base, upgraded)
    index_records(generation_records("new"), upgraded / "idx.faiss")
    # (SQLite's log may stay beside the metadata until a reader closes: the writer does not checkpoint it.)
    left = {name for name in index_files(upgraded) if not name.endswith(("-wal", "-shm"))}
    assert left == expected | {"idx.faiss.segments"}
    # After an upgrade the folder holds the segments folder: compare with that, not the format-2 listing.
    (base / "idx.faiss.segments").mkdir()
    kill_after_every_step(tmp_path, base, kind)


def test_a_second_writer_waits_for_the_first_then_goes_on(tmp_path):
    path = tmp_path / "idx.faiss"
    first = IndexWriter(path, model="m")
    first.add("a", unit_vectors(1)[0], {}, model="m")
    finished = []

    def second():
        index_records(records(unit_vectors(2, seed=1), prefix="b"), path)
        finished.append(True)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)
    assert not finished  # still waiting for the lock
    first.commit()
    thread.join(10)
    assert finished
    with IndexReader(path) as reader:
        assert sorted(reader.ids()) == ["a", "b0", "b1"]


def test_no_wait_and_lock_timeout_give_up_with_a_clear_message(tmp_path):
    path = tmp_path / "idx.faiss"
    with IndexWriter(path, model="m") as writer:
        writer.add("a", unit_vectors(1)[0], {}, model="m")
        started = time.monotonic()
        with pytest.raises(IndexFileError, match="another mmtools process"):
            IndexWriter(path, lock_timeout=0.3)
        assert time.monotonic() - started >= 0.3
        with pytest.raises(IndexFileError, match="another mmtools process"):
            IndexWriter(path, lock_timeout=0)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_rerunning_an_unchanged_pipeline_adds_no_tombstones(tmp_path, kind):
    path = tmp_path / "idx.faiss"
    batch = records(unit_vectors(300), n=1)
    index_records(batch, path, kind=kind)
    for _night in range(3):
        summary = index_records(batch, path)
        assert (summary.added, summary.replaced, summary.unchanged) == (0, 0, 300)
    with IndexReader(path) as reader:
        assert (reader.info.count, reader.info.ntotal) == (300, 300)


def test_changed_fields_with_the_same_vector_update_in_place(tmp_path):
    path = tmp_path / "idx.faiss"
    vectors = unit_vectors(50)
    index_records(records(vectors, n=1), path, kind="hnsw")
    summary = index_records(records(vectors, n=2), path)
    assert summary.replaced == 50
    with IndexReader(path) as reader:
        assert reader.info.ntotal == 50
        assert reader.search(vectors[:1], k=1)[0][0].record["n"] == 2


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_tombstones_are_compacted_when_they_pass_a_fraction(tmp_path, kind):
    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(300)), path, kind=kind)
    for night in range(1, 4):  # every vector changes every night
        index_records(records(unit_vectors(300, seed=night)), path)
    with IndexReader(path) as reader:
        assert reader.info.count == 300
        assert reader.info.ntotal <= 300 * 1.25
        hits = reader.search(unit_vectors(300, seed=3)[:20], k=1)
    assert [h[0].id for h in hits] == [f"r{i}" for i in range(20)]


def test_compact_on_demand(tmp_path):
    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(100)), path, kind="hnsw")
    index_records([], path, remove_ids=[f"r{i}" for i in range(10)])
    with IndexReader(path) as reader:
        assert reader.info.ntotal == 100  # under the automatic threshold
    index_records([], path, compact=True)
    with IndexReader(path) as reader:
        assert (reader.info.count, reader.info.ntotal) == (90, 90)


def test_an_ivf_index_grown_well_past_its_training_size_is_retrained(tmp_path):
    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(100)), path, kind="ivf")
    with IndexReader(path) as reader:
        assert reader.info.trained["on"] == 100
    index_records(records(unit_vectors(900, seed=1), prefix="more"), path)
    with IndexReader(path) as reader:
        assert reader.info.trained["on"] == 1000
        assert reader.info.trained["nlist"] > 2


def test_removing_an_unknown_id_says_so(tmp_path):
    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(3)), path)
    problems = []
    summary = index_records([], path, remove_ids=["r1", "nope"], on_problem=problems.append)
    assert summary.removed == 1
    assert [(p.source, p.reason) for p in problems] == [("nope", "no record with this id in the index; "
                                                                 "nothing removed")]


def test_ids_in_nfd_and_nfc_are_one_id(tmp_path):
    path = tmp_path / "idx.faiss"
    nfc = "photos/H\u00e0 N\u1ed9i.jpg"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    index_records([{"id": nfd, "embedding": encode_vector(unit_vectors(1)[0]), "embedding_model": "m"}], path)
    summary = index_records([], path, remove_ids=[nfc])
    assert summary.removed == 1


@pytest.mark.parametrize("kind", KINDS_TO_TEST)
def test_export_gives_back_the_records_with_their_vectors(tmp_path, kind):
    path = tmp_path / "idx.faiss"
    vectors = unit_vectors(120)
    index_records(records(vectors, album="Huế"), path, kind=kind)
    with IndexReader(path) as reader:
        exported = list(reader.export())
    assert [r["id"] for r in exported] == [f"r{i}" for i in range(120)]
    assert exported[5]["album"] == "Huế" and exported[5]["embedding_model"] == "m"
    got = np.stack([decode_vector(r["embedding"]) for r in exported])
    np.testing.assert_allclose(got, vectors, atol=1e-5)
    # ... so an index can change kind without embedding again
    other = tmp_path / "other.faiss"
    index_records(exported, other, kind="flat")
    with IndexReader(other) as reader:
        assert [h[0].id for h in reader.search(vectors[:10], k=1)] == [f"r{i}" for i in range(10)]


def test_merge_joins_parts_and_refuses_other_models(tmp_path):
    from mmtools.index import merge_parts

    a, b, bad = tmp_path / "a.faiss", tmp_path / "b.faiss", tmp_path / "bad.faiss"
    vectors = unit_vectors(40)
    index_records(records(vectors[:25]), a)
    index_records(records(vectors[25:], prefix="s"), b)
    index_records([{**r, "embedding_model": "other"} for r in records(vectors[:2], prefix="x")], bad)
    summary = index_records(merge_parts([a, b]), tmp_path / "all.faiss")
    assert summary.info.count == 40
    with pytest.raises(IndexFileError, match="model"):
        list(merge_parts([a, bad]))


@pytest.mark.parametrize("kind", KINDS_TO_TEST)
def test_a_reader_during_a_write_sees_the_old_index_whole_and_keeps_it_after_the_commit(tmp_path, kind,
                                                                                        monkeypatch):
    import mmtools.index.writer as writer

    path = tmp_path / "idx.faiss"
    index_records(generation_records("old"), path, kind=kind,
                  params={"nprobe": 64} if kind.startswith("ivf") else None)
    seen, kept = [], []
    real_commit = writer.commit_transaction

    def look_then_commit(db):
        seen.append(generation_of(path))  # the new segment and rows are written, not committed
        kept.append(IndexReader(path))
        real_commit(db)

    monkeypatch.setattr(writer, "commit_transaction", look_then_commit)
    index_records(generation_records("new"), path)
    assert seen == ["old"]
    assert generation_of(path) == "new"
    with kept[0] as reader:  # opened before the commit: still the old state, records, texts and vectors
        assert {reader.get(i)["generation"] for i in reader.ids()} == {"old"}
        hits = reader.search(generation_vectors("old")[:20], k=1)
        assert sum(h[0].id == f"r{i}" for i, h in enumerate(hits)) >= 19


def test_the_next_write_sweeps_what_a_killed_writer_left_and_nothing_else(tmp_path):
    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(5)), path)
    stale = [".idx.faiss.k1l2e3d4.tmp", ".idx.faiss.meta.sqlite.a1b2c3d4.tmp",
             ".idx.faiss.meta.sqlite.a1b2c3d4.tmp-journal", "idx.faiss.meta.sqlite-journal", "idx.faiss.prev"]
    kept = [".other.faiss.k1l2e3d4.tmp", "idx.faiss.notes", ".idx.faiss.x.tmp"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"left over")
    index_records(records(unit_vectors(5, seed=1), prefix="s"), path)
    names = set(index_files(tmp_path))
    assert not names & set(stale)
    assert set(kept) <= names
    with IndexReader(path) as reader:
        assert reader.info.count == 10


def test_metadata_paths_never_lead_outside_the_root(tmp_path):
    from mmtools.index import gone_records, safe_path

    root = tmp_path / "photos"
    root.mkdir()
    assert safe_path("a/b.jpg", root) == str(root / "a" / "b.jpg")
    for escaping in ("../secret.jpg", "/etc/passwd", "a/../../x.jpg", "a\0b"):
        assert safe_path(escaping, root) is None
    stored = [("in", {"path": "missing.jpg"}), ("out", {"path": "../missing.jpg"}), ("none", {})]
    assert list(gone_records(stored, set(), root)) == ["in"]


def test_an_index_from_a_newer_mmtools_is_refused_for_writing_too(tmp_path):
    import sqlite3

    path = tmp_path / "idx.faiss"
    index_records(records(unit_vectors(3)), path)
    with sqlite3.connect(metadata_path(path)) as db:
        db.execute("UPDATE info SET value = '99' WHERE key = 'format_version'")
    before = path.read_bytes()
    with pytest.raises(IndexFileError, match="newer mmtools"):
        index_records(records(unit_vectors(3, seed=1), prefix="n"), path)
    assert path.read_bytes() == before


def test_an_index_written_by_format_1_is_read_and_upgraded(tmp_path):
    import sqlite3

    import faiss

    path = tmp_path / "idx.faiss"
    vectors = unit_vectors(4)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(16))
    index.add_with_ids(vectors, np.arange(4, dtype=np.int64))
    faiss.write_index(index, str(path))
    with sqlite3.connect(metadata_path(path)) as db:
        db.executescript("CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                         "CREATE TABLE items (row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, record BLOB);")
        info = {"format": "mmtools-index", "format_version": 1, "model": "m", "dim": 16, "kind": "flat",
                "params": {}, "count": 4, "ntotal": 4, "next_row": 4}
        db.executemany("INSERT INTO info VALUES (?, ?)", [(k, json.dumps(v)) for k, v in info.items()])
        db.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, f"r{i}", b'{"n": 1}') for i in range(4)])
    with IndexReader(path) as reader:
        assert reader.search(vectors[2:3], k=1)[0][0].id == "r2"
    summary = index_records(records(vectors), path)
    assert summary.info.format_version == FORMAT_VERSION and summary.info.count == 4
    with IndexReader(path) as reader:
        assert reader.search(vectors[2:3], k=1)[0][0].id == "r2"


def test_a_run_that_changes_nothing_writes_nothing_and_reads_no_vectors(tmp_path, monkeypatch):
    import faiss

    path = tmp_path / "idx.faiss"
    batch = records(unit_vectors(20))
    index_records(batch, path)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    monkeypatch.setattr(faiss, "read_index", lambda *a, **k: pytest.fail("a FAISS file was read"))
    summary = index_records(batch, path)
    assert summary.unchanged == 20
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_ivfpq_is_filled_part_by_part_searched_memory_mapped_and_reranked_exactly(tmp_path):
    import faiss

    from mmtools.index import merge_parts

    vectors = unit_vectors(1200, dim=32)
    parts = []
    for number, start in enumerate(range(0, 1200, 400)):
        part = tmp_path / f"part{number}.faiss"
        index_records(records(vectors[start:start + 400], prefix=f"p{number}-"), part)
        parts.append(part)
    merged = tmp_path / "big.faiss"
    summary = index_records(merge_parts(parts), merged, kind="ivfpq", params={"pq_m": 8, "nprobe": 64})
    assert summary.info.count == 1200 and summary.info.trained["pq_m"] == 8
    with IndexReader(merged) as reader:
        lists = faiss.downcast_InvertedLists(reader._segments[0].index.invlists)
        assert type(lists).__name__ == "OnDiskInvertedLists"  # memory-mapped, not loaded
        hits = reader.search(vectors[:50], k=1)
    assert sum(h[0].id == f"p0-{i}" for i, h in enumerate(hits)) >= 48
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-5)  # exact scores from the kept vectors


def test_an_embedding_cache_from_a_newer_mmtools_is_not_used(tmp_path):
    import sqlite3

    from mmtools.embed_cache import CacheUnavailable, EmbeddingCache

    path = tmp_path / "cache.sqlite"
    EmbeddingCache(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE info SET value = '99' WHERE key = 'format'")
    with pytest.raises(CacheUnavailable, match="newer mmtools"):
        EmbeddingCache(path)
