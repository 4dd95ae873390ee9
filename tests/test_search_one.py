"""One search, whichever door it comes through (mmtools.search_plan): the same hits, order and scores from the
CLI in-process, through the socket (the request itself, and a command line forwarded by the fast path) and
over HTTP; scores that mean one thing each; fused and temporal searches planned like a plain one."""

from __future__ import annotations

import io
import logging
import os
import shutil
import socket as socketlib
import sys
import threading
import time
import types

import orjson
import pytest
from typer.testing import CliRunner

from mmtools.cli import app

runner = CliRunner()
CAPTIONS = ["xe hơi màu đỏ đỗ bên đường", "chiếc xe máy màu xanh", "con mèo nằm trên ghế", "bãi biển lúc hoàng hôn",
            "thuyền đánh cá trên biển", "con chó chạy trên bãi biển", "xe buýt trên đường phố", "đĩa phở bò nóng"]
VIDEOS = 6  # channel A: videos 0, 2, 4; B: 1, 3, 5
MOMENTS = 4


def _picture(i: int):
    from PIL import Image

    image = Image.new("RGB", (64, 48), ((37 * i) % 256, 240 - (23 * i) % 200, (60 + 29 * i) % 256))
    image.paste(((250 - 17 * i) % 256, (12 * i) % 256, 180), ((3 * i) % 40, 4, (3 * i) % 40 + 16, 30))
    return image


@pytest.fixture(scope="module")
def world(tmp_path_factory, siglip_dir, clip_dir):
    """Photos in two indexes (two models), video moments in a third, a model directory of its own (to retrain
    in place), and a server (socket + HTTP) on all three."""
    from mmtools.embed import embed_images, embedding_fields
    from mmtools.images import discover_images
    from mmtools.index import index_records
    from mmtools.models import load_encoder
    from mmtools.serve.engine import Engine

    from helpers.live_server import running_server

    root = tmp_path_factory.mktemp("one-search")
    model = root / "model"
    shutil.copytree(siglip_dir, model)
    (root / "photos").mkdir()
    records = []
    for i, caption in enumerate(CAPTIONS):
        path = root / "photos" / f"p{i}.jpg"
        _picture(i).save(path)
        records.append({"path": f"photos/p{i}.jpg", "caption": caption, "year": 2010 + i,
                        "score": 100 + i, "rank": "mine"})  # fields a hit also names
    (root / "photos.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    chdir = pytest.MonkeyPatch()
    chdir.chdir(root)
    siglip, clip = load_encoder(str(model), "cpu"), load_encoder(clip_dir, "cpu")
    index_records(embed_images(discover_images(["photos.jsonl"]), siglip), root / "a.faiss")
    index_records(embed_images(discover_images(["photos.jsonl"]), clip), root / "b.faiss")
    moments = []
    for video in range(VIDEOS):
        for step in range(MOMENTS):
            vector = siglip.encode_images([_picture(video * MOMENTS + step)])[0]
            moments.append({"id": f"v{video}.mp4#{step}", "path": f"{root}/v{video}.mp4", "time": 5.0 * step,
                            "channel": "AB"[video % 2], **embedding_fields(vector, siglip, "image", "base64")})
    index_records(moments, root / "v.faiss")
    engine = Engine(device="cpu", indexes=[str(root / name) for name in ("a.faiss", "b.faiss", "v.faiss")])
    with running_server(engine, str(root / "s.sock")) as ready:
        yield {"root": root, "socket": root / "s.sock", "http": ready.http, "engine": engine, "model": model}
    chdir.undo()


def searches(world) -> int:
    return sum(entry["searches"] for entry in world["engine"].health()["indexes"].values())


def cli(world, monkeypatch, args, *, server: bool):
    """`mmtools search ARGS` through the typer command, answered by the server (the request itself) or
    in-process; asserts which side answered."""
    monkeypatch.setenv("MMTOOLS_SERVER", str(world["socket"]) if server else "off")
    before = searches(world)
    result = runner.invoke(app, ["search", *args], catch_exceptions=False)
    assert (searches(world) > before) == server, "the wrong side answered"
    return result.exit_code, [orjson.loads(line) for line in result.stdout.splitlines()], result.stderr


def forwarded(world, monkeypatch, args):
    """`mmtools search ARGS` through the fast path: the command line as typed, parsed by the server."""
    from mmtools.cli.fast import try_search

    monkeypatch.setenv("MMTOOLS_SERVER", str(world["socket"]))
    out = io.BytesIO()
    stdout = types.SimpleNamespace(buffer=out, flush=lambda: None, isatty=lambda: False)
    stdin = types.SimpleNamespace(isatty=lambda: True)
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", stdout)
        patch.setattr(sys, "stdin", stdin)
        code = try_search(["search", *args])
    assert code is not None, "the server left the command line to the command"
    return code, [orjson.loads(line) for line in out.getvalue().splitlines()]


def http(world, body, image=None):
    import httpx

    with httpx.Client(base_url=world["http"], timeout=120) as client:
        if image is None:
            answer = client.post("/search", json=body)
        else:
            answer = client.post("/search", data={k: str(v) for k, v in body.items()},
                                 files={"image": (os.path.basename(image), open(image, "rb").read(), "image/jpeg")})
    assert answer.status_code == 200, answer.text
    return answer.json()["hits"]


def ranked(hits):
    """What must agree across doors: ids (or videos and moments), order, and every score."""
    from mmtools.search import hit_value

    return [(h.get("id") or os.path.basename(h["path"]), h["rank"], "score" in h, round(hit_value(h), 3),
             sorted((h.get("scores") or {}).items()), [s.get("id") for s in h.get("steps", [])]) for h in hits]


def close(got, expected):
    assert [r[:3] + r[5:] for r in got] == [r[:3] + r[5:] for r in expected]
    assert all(abs(a[3] - b[3]) <= 1e-3 for a, b in zip(got, expected))
    for a, b in zip(got, expected):
        assert [name for name, _ in a[4]] == [name for name, _ in b[4]]
        assert all(abs(x[1] - y[1]) <= 1e-3 for x, y in zip(a[4], b[4]))


PARITY = {
    "vector": (["xe hơi màu đỏ", "--mode", "vector", "-i", "a.faiss", "-k", "4"],
               {"query": "xe hơi màu đỏ", "mode": "vector", "index": "a", "k": 4}),
    "hybrid": (["bãi biển", "--mode", "hybrid", "-i", "a.faiss", "-k", "4"],
               {"query": "bãi biển", "mode": "hybrid", "index": "a", "k": 4}),
    "where": (["xe", "-i", "a.faiss", "--where", "year>=2012", "-k", "3"],
              {"query": "xe", "index": "a", "where": ["year>=2012"], "k": 3}),
    "fused": (["con mèo", "-i", "a.faiss", "-i", "b.faiss", "-k", "4"],
              {"query": "con mèo", "indexes": ["a", "b"], "k": 4}),
    "then": (["cảnh một", "--then", "cảnh hai", "-i", "v.faiss", "-k", "3", "--within", "20"],
             {"query": "cảnh một", "then": ["cảnh hai"], "index": "v", "k": 3, "within": 20}),
}


@pytest.mark.parametrize("case", sorted(PARITY))
def test_the_same_request_gives_the_same_hits_through_every_door(world, monkeypatch, case):
    args, body = PARITY[case]
    code, here, _ = cli(world, monkeypatch, args, server=False)
    assert code == 0 and here
    code, served, _ = cli(world, monkeypatch, args, server=True)
    assert code == 0
    close(ranked(served), ranked(here))
    assert served == here  # the socket writes what the command writes, paths relative to the client's folder
    code, fast = forwarded(world, monkeypatch, args)
    assert code == 0 and fast == here
    close(ranked(http(world, body)), ranked(here))


def test_an_indexed_photo_searched_by_itself_comes_first_with_its_similarity_everywhere(world, monkeypatch):
    args = ["--image", "photos/p3.jpg", "-i", "a.faiss", "-k", "3"]  # the index holds texts: hybrid by default
    _, here, _ = cli(world, monkeypatch, args, server=False)
    _, served, _ = cli(world, monkeypatch, args, server=True)
    _, fast = forwarded(world, monkeypatch, args)
    over_http = http(world, {"index": "a", "k": 3}, image=str(world["root"] / "photos" / "p3.jpg"))
    for hits in (here, served, fast, over_http):
        assert hits[0]["id"].endswith("photos/p3.jpg") and "fusion" not in hits[0]
        assert abs(hits[0]["score"] - 1.0) < 1e-3  # the cosine similarity, not a reciprocal rank
    close(ranked(over_http), ranked(here))
    assert served == here == fast


def test_scores_are_named_for_what_they_are(world, monkeypatch):
    _, vector, _ = cli(world, monkeypatch, ["xe", "-i", "a.faiss", "--mode", "vector"], server=False)
    assert all("score" in h and "fusion" not in h and "scores" not in h for h in vector)
    _, hybrid, _ = cli(world, monkeypatch, ["xe", "-i", "a.faiss", "--mode", "hybrid"], server=False)
    assert all("fusion" in h and "score" not in h and set(h["scores"]) <= {"vector", "keyword"} for h in hybrid)
    both = next(h for h in hybrid if h["matched"] == ["vector", "keyword"])
    same = next(h for h in vector if h["id"] == both["id"])
    assert abs(both["scores"]["vector"] - same["score"]) < 1e-5  # each channel's own score beside the fusion
    _, fused, _ = cli(world, monkeypatch, ["xe", "-i", "a.faiss", "-i", "b.faiss"], server=False)
    assert all("fusion" in h and set(h["scores"]) <= {"a", "b"} for h in fused)
    code, _, stderr = cli(world, monkeypatch, ["xe", "-i", "a.faiss", "--mode", "keyword", "--min-score", "0.1"],
                          server=False)
    assert code == 2 and "similarity" in stderr


def test_min_score_bounds_the_vector_similarity_in_every_mode(world, monkeypatch):
    _, vector, _ = cli(world, monkeypatch, ["xe", "-i", "a.faiss", "--mode", "vector", "-k", "8"], server=False)
    bound = sorted(h["score"] for h in vector)[4]
    _, kept, _ = cli(world, monkeypatch, ["xe", "-i", "a.faiss", "--mode", "vector", "-k", "8", "--min-score",
                                          str(bound)], server=False)
    assert kept and all(h["score"] >= bound for h in kept)
    _, hybrid, _ = cli(world, monkeypatch, ["xe", "-i", "a.faiss", "--mode", "hybrid", "-k", "8", "--min-score",
                                            str(bound)], server=False)
    assert all(h["scores"]["vector"] >= bound for h in hybrid if "vector" in h["scores"])
    assert {h["id"] for h in hybrid if "vector" in h["scores"]} == {h["id"] for h in kept}


def test_stored_fields_a_hit_also_names_are_kept_not_lost(world, monkeypatch):
    _, hits, _ = cli(world, monkeypatch, ["xe", "-i", "a.faiss", "--mode", "vector", "-k", "8"], server=False)
    for hit in hits:
        number = int(os.path.basename(hit["id"])[1:-len(".jpg")])
        assert hit["stored"] == {"score": 100 + number, "rank": "mine"}
        assert isinstance(hit["score"], float) and isinstance(hit["rank"], int)


def test_then_where_keeps_every_step_inside_the_filter(world, monkeypatch):
    for server in (False, True):
        code, results, _ = cli(world, monkeypatch, ["cảnh", "--then", "cảnh khác", "-i", "v.faiss", "-k", "6",
                                                    "--where", "channel=A"], server=server)
        assert code == 0 and results
        assert all(int(os.path.basename(r["path"])[1]) % 2 == 0 for r in results)  # channel A videos only
        code, results, stderr = cli(world, monkeypatch, ["cảnh", "--then", "cảnh khác", "-i", "v.faiss",
                                                         "--where", "channel=Z"], server=server)
        assert code == 0 and results == [] and "meets --where channel=Z" in stderr


def _retrained_copy(world, tmp_path):
    """An index whose model directory is then retrained in place (a copy of the model, so others are spared)."""
    from mmtools.embed import embed_images
    from mmtools.images import discover_images
    from mmtools.index import index_records
    from mmtools.models import ModelCache
    from mmtools.models.synthetic import build_random_model

    model = tmp_path / "model"
    shutil.copytree(world["model"], model)
    # A cache of its own: the process-wide one must first meet the model retrained, as a new command would.
    index_records(embed_images(discover_images([str(world["root"] / "photos.jsonl")]),
                               ModelCache().get(str(model), "cpu")), tmp_path / "old.faiss")
    build_random_model(model, "siglip-tiny", seed=11)
    return tmp_path / "old.faiss"


def test_fused_and_temporal_searches_refuse_an_index_whose_model_changed(world, monkeypatch, tmp_path):
    old = str(_retrained_copy(world, tmp_path))
    monkeypatch.setenv("MMTOOLS_SERVER", "off")
    for args in (["xe", "-i", old], ["xe", "-i", old, "-i", "b.faiss"],
                 ["xe", "--then", "đường", "-i", old, "--mode", "vector"]):
        result = runner.invoke(app, ["search", *args])
        assert result.exit_code == 3 and result.stdout == "", (args, result.stdout)
        assert "rebuild" in result.stderr


def test_a_hedged_restoration_fuses_its_alternatives_by_weight(world):
    """The accent restorer's alternatives (mmtools.text.restore.AccentRestorer.alternatives): each encoded, the
    rankings fused by weight; a hit's score is the weighted mean of its similarities to the alternatives."""
    from mmtools.index import IndexReader
    from mmtools.models import load_encoder
    from mmtools.search import Query, search

    encoder = load_encoder(str(world["model"]), "cpu")
    with IndexReader(world["root"] / "a.faiss") as reader:
        def alone(text):
            return {h["id"]: h["score"] for h in search(reader, [Query("q", text=text)], lambda: encoder, k=8)}

        hedged = list(search(reader, [Query("q", text="xe hoi")], lambda: encoder, k=8,
                             restore=lambda text: [("xe hơi", 0.7), ("xe hội", 0.3)]))
        first, second = alone("xe hơi"), alone("xe hội")
    assert hedged and all(h["query_restored"] == "xe hơi" for h in hedged)
    assert hedged[0]["query_alternatives"] == [{"text": "xe hơi", "weight": 0.7}, {"text": "xe hội", "weight": 0.3}]
    for hit in hedged:
        assert abs(hit["score"] - (0.7 * first[hit["id"]] + 0.3 * second[hit["id"]])) < 1e-4
    with IndexReader(world["root"] / "a.faiss") as reader:
        sure = list(search(reader, [Query("q", text="xe hoi")], lambda: encoder, k=2,
                           restore=lambda text: [("xe hơi", 1.0)]))
    assert "query_alternatives" not in sure[0] and sure[0]["query_restored"] == "xe hơi"


# ------------------------------------------------------------------------------------------ serve items


def test_a_stuck_server_costs_one_wait_then_the_command_works_alone(tmp_path, monkeypatch):
    """A socket whose server never accepts (a SIGSTOPped server): the fast path waits once; the command's own
    attempt that follows, in the same process, does not wait again."""
    from mmtools.search_plan import SearchRequest
    from mmtools.serve import client

    sock = tmp_path / "stuck.sock"
    listener = socketlib.socket(socketlib.AF_UNIX)
    listener.bind(str(sock))
    listener.listen(8)
    monkeypatch.setenv("MMTOOLS_SERVER", str(sock))
    monkeypatch.setattr(client, "ACCEPT_TIMEOUT_S", 0.3)
    monkeypatch.setattr(client, "_passed_by", set())
    try:
        assert client.forward_search(["xe"], on_problem=print, on_warning=print) is False
        assert client.connect() is None  # passed by for the rest of this process
        assert client.search(SearchRequest(texts=["xe"]), output=None, on_problem=print) is False
    finally:
        listener.close()


def test_a_locked_reader_holds_the_lock_at_every_step_of_a_scan():
    from mmtools.serve.engine import _LockedReader

    lock = threading.Lock()
    seen = []

    class Reader:
        info = None

        def scan(self):
            for row in range(3):
                seen.append(lock.locked())
                yield row, f"id{row}", {}

    rows = [row for row, _, _ in _LockedReader(Reader(), lock).scan()]
    assert rows == [0, 1, 2] and seen == [True, True, True] and not lock.locked()


def test_reading_the_umask_never_opens_it_to_everyone(monkeypatch):
    from mmtools import records

    asked = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: (asked.append(mask), real(mask))[1])
    mask = records._umask()
    assert 0 not in asked and 0 <= mask <= 0o777


def test_the_engines_tables_are_bounded(world, monkeypatch, tmp_path):
    from mmtools.models import agreement
    from mmtools.serve import engine as engine_module

    engine = world["engine"]
    monkeypatch.setattr(engine_module, "MAX_OPEN_INDEXES", 4)
    for i in range(4):  # indexes a client names, beyond those named at start-up
        copy = tmp_path / f"c{i}.faiss"
        shutil.copy(world["root"] / "a.faiss", copy)
        shutil.copy(f"{world['root'] / 'a.faiss'}.meta.sqlite", f"{copy}.meta.sqlite")
        if (world["root"] / "a.faiss.segments").exists():
            shutil.copytree(world["root"] / "a.faiss.segments", f"{copy}.segments")
        with engine.reader(copy):
            pass
    assert len(engine._indexes) <= 4
    assert {str(world["root"] / n) for n in ("a.faiss", "b.faiss", "v.faiss")} <= set(engine._indexes)
    decided = agreement._Decided(limit=3)
    for i in range(10):
        decided.put(("export", f"index{i}"), True)
    assert len(decided) == 3 and decided.get(("export", "index9")) and decided.get(("export", "index0")) is None


def test_a_fallback_to_the_general_restorer_is_said(world, caplog, tmp_path):
    restore = world["engine"].restorer(str(tmp_path / "gone.faiss"))
    with caplog.at_level(logging.WARNING, logger="mmtools"):
        alternatives = restore("xe hoi")
    assert alternatives and alternatives[0][0] != "xe hoi"  # restored all the same, by the general model
    assert any("general model" in record.getMessage() for record in caplog.records)


def test_every_backend_gives_vectors_for_the_int8_agreement_check(tmp_path, siglip_dir):
    pytest.importorskip("milvus_lite")
    import numpy as np

    from mmtools.index import index_records
    from mmtools.index.backends import IndexBackend, open_reader
    from mmtools.models.agreement import index_sample

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [{"id": f"r{i}", "path": f"/x/r{i}.jpg", "embedding": v.tolist(), "embedding_model": "m"}
               for i, v in enumerate(vectors)]
    location = f"milvus-lite://{tmp_path}/m.db/things"
    index_records(records, location)
    with open_reader(location) as reader:
        assert isinstance(reader, IndexBackend)
        sample = index_sample(reader)
    assert sample is not None and sample.shape == (5, 8)


def test_a_video_moment_is_shown_as_the_frame_that_was_embedded(tmp_path):
    """The page's frame at time t is the one decoding for embedding takes: the last frame starting at or
    before t (within half a frame), counted from the stream's start."""
    av = pytest.importorskip("av")
    import numpy as np

    from mmtools.serve.thumbnails import video_frame
    from mmtools.video.decode import frames_at

    path = str(tmp_path / "steps.mp4")
    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for colour in colours:
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), colour, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    for moment in (0.2, 1.4, 2.3):
        shown = np.asarray(video_frame(path, moment)).reshape(-1, 3).mean(axis=0)
        embedded = np.asarray(next(frames_at(path, [moment]))[1].convert("RGB")).reshape(-1, 3).mean(axis=0)
        assert np.abs(shown - embedded).max() < 8, moment
        assert np.abs(shown - colours[int(moment + 0.5) if moment % 1 >= 0.5 else int(moment)]).max() < 40
