"""Milvus collections through the same index interface as FAISS, tested on Milvus Lite (embedded) and on
`milvus-lite server` (the Milvus protocol over gRPC, for the many-writers case); no real cluster here."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from mmtools.errors import IndexFileError, MissingDependencyError  # noqa: E402
from mmtools.index import index_records  # noqa: E402
from mmtools.index.backends import (index_exists, open_reader, open_writer, resolve_location,  # noqa: E402
                                    short_name)
from mmtools.index.milvus import parse_location, string_literal  # noqa: E402
from mmtools.records import decode_vector, encode_vector  # noqa: E402

BIN = Path(sys.executable).parent


def unit_vectors(n, dim=16, seed=0):
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def records(vectors, model="m", prefix="r", **fields):
    return [{"id": f"{prefix}{i}", "embedding": encode_vector(v), "embedding_model": model, "n": i, **fields}
            for i, v in enumerate(vectors)]


@pytest.fixture(scope="module")
def lite_file(tmp_path_factory):
    """One Milvus Lite file for the module (each test its own collection): opening one costs ~0.2 s."""
    return tmp_path_factory.mktemp("milvus") / "test.db"


@pytest.fixture
def collection(lite_file, request):
    name = request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:60]
    return f"milvus-lite://{lite_file}/{name}"


# ------------------------------------------------------------------------------------------------ locations


@pytest.mark.parametrize("location, uri, name", [
    ("milvus://db.example:19531/photos", "http://db.example:19531", "photos"),
    ("milvus://db.example/photos", "http://db.example:19530", "photos"),
    ("milvus://[::1]:19530/_p2", "http://[::1]:19530", "_p2"),
    ("milvus-lite:///data/x.db/photos", "/data/x.db", "photos"),
])
def test_locations_name_a_server_or_a_file_and_a_collection(location, uri, name):
    where = parse_location(location)
    assert (where.uri, where.collection, short_name(location)) == (uri, name, name)


def test_a_milvus_lite_path_is_the_same_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_location("milvus-lite://x.db/c") == f"milvus-lite://{tmp_path}/x.db/c"
    assert resolve_location("milvus-lite://x.db/c", cwd="/srv") == "milvus-lite:///srv/x.db/c"
    assert resolve_location("idx.faiss", cwd="/srv") == "/srv/idx.faiss"


@pytest.mark.parametrize("location, message", [
    ("milvus-lite://x.txt/c", "does not name a Milvus Lite file"),
    ("milvus://host:19530/9lives", "is not a Milvus collection name"),
    ("milvus://host:19530/a/b", "is not a Milvus collection name"),
    ("milvus://host:port/c", "is not a Milvus address"),
    ("milvus://user:secret@host/c", "is not a Milvus address"),
])
def test_bad_locations_are_refused_in_words(location, message):
    with pytest.raises(IndexFileError, match=message):
        parse_location(location)


def test_an_unreachable_server_is_one_clear_error():
    started = time.monotonic()
    with pytest.raises(IndexFileError, match="cannot reach the Milvus server at 127.0.0.1:1") as caught:
        open_reader("milvus://127.0.0.1:1/photos")
    assert "MMTOOLS_MILVUS_TOKEN" in caught.value.hint and time.monotonic() - started < 15


def test_a_missing_extra_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError) as caught:
        open_writer("milvus://127.0.0.1:19530/photos")
    assert "mmtools[milvus]" in caught.value.hint


def test_a_missing_collection_or_file_is_no_index(lite_file, tmp_path):
    with pytest.raises(IndexFileError, match="no index at"):
        open_reader(f"milvus-lite://{tmp_path}/absent.db/photos")
    assert not (tmp_path / "absent.db").exists()  # looking did not create it
    assert not index_exists(f"milvus-lite://{tmp_path}/absent.db/photos")


# ------------------------------------------------------------------------------------------------ behaviour


def test_flat_collection_gives_the_flat_faiss_ranking(collection, tmp_path):
    vectors = unit_vectors(500, dim=32)
    index_records(records(vectors), collection)
    index_records(records(vectors), tmp_path / "idx.faiss")
    queries = unit_vectors(5, dim=32, seed=1)
    with open_reader(collection) as milvus, open_reader(tmp_path / "idx.faiss") as flat:
        ours, theirs = milvus.search(queries, k=5), flat.search(queries, k=5)
        assert milvus.info.count == 500 and milvus.info.kind == "flat"
    assert [[h.id for h in hits] for hits in ours] == [[h.id for h in hits] for hits in theirs]
    assert np.allclose([[h.score for h in hits] for hits in ours], [[h.score for h in hits] for hits in theirs],
                       atol=1e-5)
    assert ours[0][0].record == theirs[0][0].record == {"id": ours[0][0].id, "n": int(ours[0][0].id[1:])}


def test_updates_replace_by_id_skip_the_unchanged_and_remove(collection):
    vectors = unit_vectors(20)
    first = index_records(records(vectors), collection)
    again = index_records(records(vectors), collection)
    assert (first.added, again.added, again.unchanged) == (20, 0, 20)
    problems = []
    summary = index_records([{"id": "r0", "embedding": encode_vector(vectors[5]), "embedding_model": "m",
                              "n": "new"}], collection, remove_ids=["r1", "nobody"], on_problem=problems.append)
    assert (summary.added, summary.replaced, summary.removed, summary.info.count) == (0, 1, 1, 19)
    assert [p.source for p in problems] == ["nobody"]
    with open_reader(collection) as reader:
        assert {h.id for h in reader.search(vectors[5:6], k=2)[0]} == {"r0", "r5"}
        assert reader.get("r0")["n"] == "new" and reader.get("r1") is None
        assert sorted(reader.ids()) == sorted(f"r{i}" for i in range(20) if i != 1)


def test_export_gives_every_record_with_its_vector(collection, tmp_path):
    vectors = unit_vectors(2500)  # more than one batch of the query iterator
    index_records(records(vectors, tags=["phố"]), collection)
    with open_reader(collection) as reader:
        exported = list(reader.export())
    assert len(exported) == 2500 and len({r["id"] for r in exported}) == 2500
    by_id = {r["id"]: r for r in exported}
    assert np.array_equal(decode_vector(by_id["r7"]["embedding"]), vectors[7])
    assert {k: v for k, v in by_id["r7"].items() if k != "embedding"} == \
        {"id": "r7", "n": 7, "tags": ["phố"], "embedding_model": "m"}
    # ... and it reads back into a FAISS index: the way from one backend to the other.
    summary = index_records(exported, tmp_path / "back.faiss")
    assert summary.info.count == 2500


def test_ids_with_quotes_backslashes_and_line_breaks_round_trip(collection):
    ids = ['a"b\\c\'d ảnh.jpg', "tab\there\nline", "🙂/ảnh"]
    vectors = unit_vectors(3)
    index_records([{"id": i, "embedding": encode_vector(v), "embedding_model": "m"} for i, v in zip(ids, vectors)],
                  collection)
    with open_reader(collection) as reader:
        assert all(reader.get(i) == {"id": i} for i in ids)
    summary = index_records([], collection, remove_ids=ids[:2])
    assert (summary.removed, summary.info.count) == (2, 1)
    assert string_literal('x"\n') == '"x\\"\\n"'


def test_other_models_are_refused_with_the_faiss_index_message(collection, tmp_path):
    index_records(records(unit_vectors(4)), collection)
    index_records(records(unit_vectors(4)), tmp_path / "idx.faiss")
    messages = []
    for where in (collection, str(tmp_path / "idx.faiss")):
        with pytest.raises(IndexFileError) as caught:
            index_records(records(unit_vectors(1), model="other"), where, model="other")
        messages.append((caught.value.message.replace(where, "INDEX"), caught.value.hint))
    assert messages[0] == messages[1]
    assert "holds vectors from model m, not other" in messages[0][0]
    problems = []
    summary = index_records(records(unit_vectors(1), model="other", prefix="x")
                            + records(unit_vectors(1, dim=8), prefix="y"), collection, on_problem=problems.append)
    assert summary.skipped == 2 and summary.info.count == 4
    assert "but index" in problems[0].reason and "8 dimensions" in problems[1].reason


def test_rebuild_switches_to_a_new_collection_only_when_it_is_complete(collection):
    index_records(records(unit_vectors(6)), collection)
    with open_reader(collection) as reader:
        before = reader.collection
    summary = index_records(records(unit_vectors(3, dim=8), model="new"), collection, rebuild=True)
    assert (summary.added, summary.info.count, summary.info.model, summary.info.dim) == (3, 3, "new", 8)
    with open_reader(collection) as reader:
        assert reader.collection != before and reader.info.model == "new"
    with pytest.raises(IndexFileError, match="no embeddings to index"):
        index_records([], collection, rebuild=True)
    with open_reader(collection) as reader:
        assert reader.info.count == 3  # the failed rebuild left it alone


def test_a_failed_write_sends_nothing(collection):
    index_records(records(unit_vectors(3)), collection)

    def stream():
        yield from records(unit_vectors(3, seed=2), prefix="new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        index_records(stream(), collection, remove_ids=["r0"])
    with open_reader(collection) as reader:
        assert sorted(reader.ids()) == ["r0", "r1", "r2"]


def test_sync_removes_records_whose_file_is_gone(collection, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (folder / name).write_bytes(b"x")
    vectors = unit_vectors(3)
    stream = [{"id": n, "path": n, "embedding": encode_vector(v), "embedding_model": "m"}
              for n, v in zip(("a.jpg", "b.jpg", "c.jpg"), vectors)]
    index_records(stream, collection, sync=True, root=folder)
    (folder / "b.jpg").unlink()
    summary = index_records([stream[0], stream[2]], collection, sync=True, root=folder)
    assert (summary.removed, summary.unchanged, summary.info.count) == (1, 2, 2)


def test_kinds_and_filters(collection):
    vectors = unit_vectors(300)
    index_records(records(vectors), collection, kind="hnsw", params={"m": 8})
    with open_reader(collection) as reader:
        assert (reader.info.kind, reader.info.params["m"]) == ("hnsw", 8)
        assert [hits[0].id for hits in reader.search(vectors[:20], k=1)] == [f"r{i}" for i in range(20)]
        filtered = reader.search(vectors[:1], k=5, where='record["n"] >= 100')[0]
        assert len(filtered) == 5 and all(h.record["n"] >= 100 for h in filtered)
    with pytest.raises(IndexFileError, match="is a hnsw index, not flat"):
        index_records(records(vectors[:1]), collection, kind="flat")
    with pytest.raises(IndexFileError, match="not ivfpq"):
        open_writer(collection + "_pq", kind="ivfpq")


HOLDER = """
import sys, time
from mmtools.index.backends import open_reader
with open_reader(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_milvus_lite_file_open_elsewhere_is_waited_for_or_refused(collection):
    index_records(records(unit_vectors(2)), collection)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, collection, "2"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexFileError, match="open in another process") as caught:
            open_writer(collection, lock_timeout=0)
        assert "milvus-lite server" in caught.value.hint
        waits = []
        summary = index_records(records(unit_vectors(1, seed=3), prefix="w"), collection, on_wait=lambda: waits.append(1))
        assert waits == [1] and summary.info.count == 3
    finally:
        holder.kill()
        holder.wait()


def test_a_warm_server_follows_a_rebuilt_collection(collection):
    from mmtools.search import Query
    from mmtools.serve.engine import Engine

    vectors = unit_vectors(5)
    index_records(records(vectors), collection)
    engine = Engine(indexes=[collection])
    assert engine.named_index(short_name(collection)) == resolve_location(collection)

    def top(vector):
        hits = engine.search(collection, [Query("q", vector=vector, model="m")], k=1)
        return [h["id"] for h in hits]

    assert top(vectors[2]) == ["r2"]
    index_records(records(unit_vectors(1, seed=7), prefix="t"), collection)  # a nightly write: one more
    with engine.reader(collection) as reader:
        assert reader.info.count == 6  # opened again: the new generation of the write
    index_records(records(vectors[::-1].copy(), prefix="s"), collection, rebuild=True)
    assert top(vectors[2]) == ["s2"]
    from mmtools.index.milvus import connection

    folder = parse_location(collection).uri
    assert connection.lite_users[folder] == 1  # the replaced reader was closed: no connection left behind
    engine.close()
    assert folder not in connection.lite_users  # and the file is free for other processes


# ------------------------------------------------------------------------------------------------ many writers


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_many_processes_write_into_one_collection_of_a_server(tmp_path):
    """`milvus-lite server` speaks the Milvus protocol: the same path as a real Milvus server."""
    port = _free_port()
    # its console script may be in another environment's bin (a worktree's venv reusing main's packages)
    launcher = [sys.executable, "-c", "import sys; from milvus_lite.cmdline import main; sys.argv[0] = "
                "'milvus-lite'; sys.exit(main())"]
    server = subprocess.Popen([*launcher, "server", "--data-dir", str(tmp_path / "srv.db"),
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    location = f"milvus://127.0.0.1:{port}/photos"
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and server.poll() is None, "milvus-lite server did not start"
            time.sleep(0.1)
        vectors = unit_vectors(90)
        parts = []
        for shard in range(3):  # shards of 30 records; every shard also writes the shared ids s0..s4
            part = tmp_path / f"part{shard}.jsonl"
            shared = [{**r, "n": shard} for r in records(vectors[:5], prefix="s")]
            lines = records(vectors[30 * shard:30 * (shard + 1)], prefix=f"p{shard}-") + shared
            part.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
            parts.append(part)
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        writers = [subprocess.Popen(["mmtools", "index", "-o", location, str(part)], env=env,
                                    stderr=subprocess.PIPE, text=True) for part in parts]
        for writer in writers:
            assert writer.wait(timeout=120) == 0, writer.stderr.read()
        with open_reader(location) as reader:
            assert reader.info.count == 95
            assert {reader.get(f"s{i}")["n"] for i in range(5)} <= {0, 1, 2}  # each shared id whole
            assert [h[0].id for h in reader.search(vectors[30:33], k=1)] == ["p1-0", "p1-1", "p1-2"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_collection_from_before_keyword_search_gains_its_texts_on_the_next_write(collection, monkeypatch):
    """A collection made without the text columns searches by vector and says keyword search needs a write;
    the next write copies it into a collection with texts (same records and vectors), switched to whole."""
    from mmtools.errors import IndexFileError as Refused
    from mmtools.index.milvus import texts as milvus_texts
    from mmtools.ranking import channels_for, default_mode

    vectors = unit_vectors(6)
    captioned = [{**r, "caption": f"con mèo số {r['n']}"} for r in records(vectors)]
    monkeypatch.setattr(milvus_texts, "add_to_schema", lambda schema, index: None)  # the old schema
    monkeypatch.setattr(milvus_texts, "columns", lambda record, fields: {})
    index_records(captioned, collection)
    monkeypatch.undo()
    with open_reader(collection) as reader:
        assert not reader.keeps_texts and default_mode(reader) == "vector"
        assert reader.keyword_search("con meo", 10) == []
        with pytest.raises(Refused, match="holds no texts for keyword search"):
            channels_for("keyword", reader, lambda: None)
        before = reader.collection
    summary = index_records(captioned[:2] + [{**captioned[2], "caption": "con chó"}], collection,
                            remove_ids=["r5"])
    assert (summary.added, summary.replaced, summary.unchanged, summary.removed) == (0, 1, 4, 1)
    assert any("copied into a new collection" in note for note in summary.notes)
    with open_reader(collection) as reader:
        assert reader.keeps_texts and reader.collection != before and default_mode(reader) == "hybrid"
        assert sorted(h.id for h in reader.keyword_search("con meo", 10)) == ["r0", "r1", "r3", "r4"]
        assert [h.id for h in reader.keyword_search("chó", 10)] == ["r2"]
        exported = {r["id"]: decode_vector(r["embedding"]) for r in reader.export()}
    assert sorted(exported) == ["r0", "r1", "r2", "r3", "r4"]
    assert all(np.allclose(exported[f"r{i}"], vectors[i]) for i in range(5))
    assert index_records(captioned[:1], collection).notes == []  # copied once


def test_a_write_killed_while_copying_into_a_collection_with_texts_leaves_the_old_one(collection, monkeypatch):
    """kill -9 in the middle of the one-time copy (after the first batch went into the new collection): the
    alias still names the old collection, whole; the next write does the copy again and completes it."""
    from mmtools.index.milvus import texts as milvus_texts

    vectors = unit_vectors(600)
    captioned = [{**r, "caption": f"con mèo số {r['n']}"} for r in records(vectors)]
    with monkeypatch.context() as patch:
        patch.setattr(milvus_texts, "add_to_schema", lambda schema, index: None)  # the old schema
        patch.setattr(milvus_texts, "columns", lambda record, fields: {})
        index_records(captioned, collection)
    child = ("import os, signal, pymilvus\n"
             "from mmtools.index import index_records\n"
             "real, calls = pymilvus.MilvusClient.upsert, []\n"
             "def upsert(self, *args, **kwargs):\n"
             "    calls.append(1)\n"
             "    if len(calls) == 2:\n"
             "        os.kill(os.getpid(), signal.SIGKILL)\n"
             "    return real(self, *args, **kwargs)\n"
             "pymilvus.MilvusClient.upsert = upsert\n"
             f"index_records([], {collection!r})\n")
    killed = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    with open_reader(collection) as reader:
        assert not reader.keeps_texts and reader.info.count == 600
        assert [h.id for h in reader.search(vectors[7:8], k=1)[0]] == ["r7"]
    summary = index_records([], collection)
    assert summary.unchanged == 600 and any("copied" in note for note in summary.notes)
    with open_reader(collection) as reader:
        assert reader.keeps_texts and reader.info.count == 600
        assert len(reader.keyword_search("con meo", 1000)) == 600
        assert [h.id for h in reader.keyword_search("mèo số 42", 5)] == ["r42"]


def test_where_filters_select_as_on_faiss(collection, tmp_path):
    """--where's conditions (filters.select: scan, then search among the rows) give what they give on FAISS."""
    from mmtools.ranking import plan

    vectors = unit_vectors(300, dim=16)
    tagged = [{**r, "tags": ["biển"] if i % 60 == 0 else ["phố"]} for i, r in enumerate(records(vectors))]
    index_records(tagged, collection)
    index_records(tagged, tmp_path / "idx.faiss")
    found = {}
    for name, location in (("milvus", collection), ("faiss", tmp_path / "idx.faiss")):
        with open_reader(location) as reader:
            mode, selection = plan(reader, "vector", ["tags=biển", "n>=60"])
            assert mode == "vector" and len(selection) == 4
            plan(reader, "vector", ["n<10"])  # another request's scan meanwhile renumbers nothing
            found[name] = [[h.id for h in hits] for hits in
                           reader.search(vectors[:3], k=5, among=selection.rows.keys())]
    assert found["milvus"] == found["faiss"] and all(sorted(hits) == ["r120", "r180", "r240", "r60"]
                                                     for hits in map(sorted, found["milvus"]))


def test_texts_longer_than_a_milvus_varchar_are_cut_at_a_word():
    from mmtools.index.milvus import texts as milvus_texts

    record = {"caption": "đầu tiên", "ocr_text": " ".join(["chữ"] * 30_000), "path": "/p/ảnh.jpg"}
    columns = milvus_texts.columns(record, [])
    for column in (milvus_texts.EXACT, milvus_texts.FOLDED):
        text = columns[column]
        assert len(text.encode("utf-8")) <= milvus_texts.MAX_TEXT_BYTES
        assert text.startswith("đầu tiên" if column == milvus_texts.EXACT else "dau tien")
        assert text.split()[-1] in ("chữ", "chu")
    assert columns[milvus_texts.COUNT] == 2  # caption and OCR text; the file name does not count


def test_a_milvus_before_2_5_gets_collections_searched_by_vector_and_says_why(collection, monkeypatch):
    """Milvus 2.4 has no BM25 functions: collections are made without texts (not refused), keyword search says
    why, writes do not try to copy; once the server is upgraded, the next write adds the texts."""
    import pymilvus

    from mmtools.errors import IndexFileError as Refused
    from mmtools.ranking import channels_for, default_mode

    vectors = unit_vectors(5)
    captioned = [{**r, "caption": f"bãi biển {r['n']}"} for r in records(vectors)]
    with monkeypatch.context() as patch:
        patch.setattr(pymilvus.MilvusClient, "get_server_version", lambda self, **kw: "v2.4.9")
        made = index_records(captioned, collection)
        assert any("Milvus (v2.4.9) keeps no full text" in note for note in made.notes)
        with open_reader(collection) as reader:
            assert not reader.keeps_texts and default_mode(reader) == "vector"
            with pytest.raises(Refused) as refused:
                channels_for("keyword", reader, lambda: None)
            assert "v2.4.9" in refused.value.hint and "2.5 or later" in refused.value.hint
        again = index_records([{**captioned[0], "caption": "núi"}], collection)
        assert again.replaced == 1 and again.notes == []  # nothing copied, no nightly warning
    upgraded = index_records([], collection)
    assert upgraded.unchanged == 5 and any("copied" in note for note in upgraded.notes)
    with open_reader(collection) as reader:
        assert sorted(h.id for h in reader.keyword_search("bai bien", 10)) == ["r1", "r2", "r3", "r4"]
        assert [h.id for h in reader.keyword_search("núi", 10)] == ["r0"]
