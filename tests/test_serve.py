"""mmtools serve: the micro-batcher, the socket and HTTP doors, and the CLI's transparent use of a server."""

from __future__ import annotations

import io
import os
import socket as socketlib
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from mmtools.cli.fast import search_args
from mmtools.serve.batcher import MicroBatcher
from mmtools.serve.server import parse_host_port


# ------------------------------------------------------------------------------------------ unit pieces


def test_concurrent_calls_share_batches_and_each_gets_its_own_results():
    release = threading.Event()
    sizes = []

    def run(items):
        sizes.append(len(items))
        if len(sizes) == 1:
            release.wait(5)  # hold the first batch so that the others queue up behind it
        return [item * 10 for item in items]

    batcher = MicroBatcher(run, max_batch=64)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher, [0])
        time.sleep(0.1)
        rest = [pool.submit(batcher, [i, i + 100]) for i in range(1, 8)]
        time.sleep(0.2)
        release.set()
        assert first.result() == [0]
        assert [f.result() for f in rest] == [[i * 10, (i + 100) * 10] for i in range(1, 8)]
    assert sizes[0] == 1 and sum(sizes) == 15 and len(sizes) < 8  # the 7 queued calls shared passes
    batcher.close()


def test_a_failing_input_fails_only_its_own_caller():
    def run(items):
        if "bad" in items:
            raise ValueError("bad input")
        return [item.upper() for item in items]

    batcher = MicroBatcher(run)
    assert batcher(["a", "b"]) == ["A", "B"]
    with pytest.raises(ValueError):
        batcher(["bad"])
    from concurrent.futures import Future

    good, bad = Future(), Future()
    batcher._run_requests([(["x"], good), (["bad"], bad)])
    assert good.result() == ["X"]
    with pytest.raises(ValueError):
        bad.result()
    batcher.close()


@pytest.mark.parametrize("text, expected", [("8000", ("127.0.0.1", 8000)), (":9", ("127.0.0.1", 9)),
                                            ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:8080", ("::1", 8080))])
def test_http_addresses(text, expected):
    assert parse_host_port(text) == expected


def test_a_bad_http_address_is_a_usage_error():
    from mmtools.errors import UsageError

    with pytest.raises(UsageError):
        parse_host_port("localhost:http")


def test_fast_path_only_forwards_the_command_line():
    assert search_args(["-q", "search", "xe hơi", "-k", "5"]) == (["xe hơi", "-k", "5"], True)
    assert search_args(["search", "--mode", "fuzzy"]) == (["--mode", "fuzzy"], False)
    assert search_args(["index", "x"]) is None and search_args(["-q"]) is None


def test_a_forwarded_command_line_is_read_by_the_commands_own_parser(tmp_path):
    """The server reads a forwarded command line with typer's parser and the client's environment: the same
    request the command builds; what the command must say or draw itself is declined."""
    from mmtools.serve.argv import Declined, search_request

    def header(*args, env=None, stdout_tty=False, stdin_tty=True):
        return {"argv": list(args), "cwd": str(tmp_path), "env": env or {}, "stdin_tty": stdin_tty,
                "stdout_tty": stdout_tty}

    request, accepted = search_request(header("xe hoi", "-k", "5", "--mode=keyword", "--where", "n>2",
                                              "--no-restore", "--then", "xe chạy", "-o", "out.jsonl",
                                              env={"MMTOOLS_INDEX": "b.faiss"}))
    assert (request.texts, request.k, request.mode, request.where, request.restore, request.then) == \
        (["xe hoi"], 5, "keyword", ["n>2"], False, ["xe chạy"])
    assert request.indexes == ["b.faiss"] and request.cwd == str(tmp_path)  # the client's environment
    assert accepted == {"inputs": None, "output": "out.jsonl"}
    request, accepted = search_request(header("-i", "a.faiss", "-i", "b.faiss", "--weights", "1,2",
                                              stdin_tty=False))
    assert request.indexes == ["a.faiss", "b.faiss"] and request.weights == [1.0, 2.0]
    assert request.inputs == "records" and accepted["inputs"] == "records"
    for args, kw in ((["--help"], {}), (["-k", "zero", "x"], {}), (["-k", "0", "x"], {}), (["--mode", "fuzzy", "x"], {}),
                     (["--device", "cpu", "x"], {}), (["--unknown", "x"], {}), (["x"], {"stdout_tty": True}),
                     (["x", "--montage", "m.png"], {}), ([], {}), (["x", "--then", "y", "--group-by", "video"], {}),
                     (["x", "--runtime", "torch"], {}), (["x"], {"env": {"MMTOOLS_DEVICE": "cpu"}}),
                     (["x", "--folder", "photos"], {})):  # the client brings the folder's index up to date first
        with pytest.raises(Declined):
            search_request(header(*args, **kw))


# --------------------------------------------------------------------------------------- a live server


@pytest.fixture(scope="module")
def served(tmp_path_factory, siglip_dir):
    """An index of 8 photos and a server (socket + HTTP on a free port) running in this process."""
    from PIL import Image

    from mmtools.embed import embed_images
    from mmtools.images import discover_images
    from mmtools.index import index_records
    from mmtools.models import load_encoder
    from mmtools.serve.engine import Engine
    from mmtools.serve.server import serve

    root = tmp_path_factory.mktemp("served")
    photos = root / "photos"
    photos.mkdir()
    for i in range(8):
        image = Image.new("RGB", (48 + 4 * i, 40), (30 * i, 255 - 30 * i, 90))
        image.paste((255 - 20 * i, 10 * i, 200), (i * 4, 0, i * 4 + 12, 20))
        image.save(photos / f"img{i}.jpg")
    chdir = pytest.MonkeyPatch()
    chdir.chdir(root)  # relative paths in records and queries, as users have them
    records = list(embed_images(discover_images(["photos"]), load_encoder(siglip_dir, "cpu")))
    index_records(records, root / "idx.faiss")
    stop, ready = threading.Event(), []
    engine = Engine(device="cpu", indexes=[str(root / "idx.faiss")], max_pixels=1_000_000)
    sock = root / "run" / "s.sock"
    thread = threading.Thread(target=serve, args=(engine,), kwargs=dict(
        socket=str(sock), http=("127.0.0.1", 0), max_body_bytes=200_000, on_ready=ready.append, stop=stop))
    thread.start()
    for _ in range(300):
        if ready or not thread.is_alive():
            break
        time.sleep(0.05)
    assert ready, "server did not start"
    yield {"root": root, "socket": sock, "http": ready[0].http, "engine": engine, "model": siglip_dir}
    stop.set()
    thread.join(10)
    chdir.undo()


def _remote_search(served, monkeypatch, **options):
    from mmtools.serve import client

    monkeypatch.setenv("MMTOOLS_SERVER", str(served["socket"]))
    out = io.BytesIO()
    problems = []
    from mmtools.search_plan import SearchRequest

    options.setdefault("k", 3)
    request = SearchRequest(indexes=[options.pop("index", "idx.faiss")], cwd=os.getcwd(), **options)
    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(buffer=out, flush=lambda: None))
    try:
        handled = client.search(request, output=None, on_problem=problems.append)
    finally:
        monkeypatch.undo()
    return handled, [orjson.loads(line) for line in out.getvalue().splitlines()], problems


def assert_same_records(got, expected):
    """Equal records; vectors equal to float32 rounding (batches of other sizes round differently)."""
    import numpy as np

    from mmtools.records import decode_vector

    assert [{k: v for k, v in r.items() if k != "embedding"} for r in got] == \
        [{k: v for k, v in r.items() if k != "embedding"} for r in expected]
    for a, b in zip(got, expected):
        assert np.allclose(decode_vector(a["embedding"]), decode_vector(b["embedding"]), atol=1e-5)


def assert_same_hits(got, expected):
    """The same hits in the same order; scores equal to float32 rounding of differently sized batches."""
    assert [{k: v for k, v in h.items() if k != "score"} for h in got] == \
        [{k: v for k, v in h.items() if k != "score"} for h in expected]
    assert got == [] or max(abs(a["score"] - b["score"]) for a, b in zip(got, expected)) < 1e-5


def _local_search(served, texts=(), images=(), k=3, relative=True):
    from mmtools.index import IndexReader
    from mmtools.models import load_encoder
    from mmtools.search import Query, search
    from mmtools.search_plan import relative_paths

    queries = [Query(f"q{i}", text=t) for i, t in enumerate(texts, 1)] + [Query(p, image=p) for p in images]
    with IndexReader(served["root"] / "idx.faiss") as reader:
        return list(relative_paths(search(reader, queries, lambda: load_encoder(served["model"], "cpu"), k=k),
                                   os.getcwd() if relative else None))


def test_socket_search_gives_what_in_process_search_gives(served, monkeypatch):
    image = sorted(os.listdir(served["root"] / "photos"))[2]
    handled, hits, problems = _remote_search(served, monkeypatch, texts=["xe hơi màu đỏ", "con mèo"],
                                             images=[f"photos/{image}"])
    assert handled and not problems
    assert_same_hits(hits, _local_search(served, ["xe hơi màu đỏ", "con mèo"], [f"photos/{image}"]))
    assert hits[-3]["query"] == f"photos/{image}" and hits[-3]["id"].endswith(f"/photos/{image}")  # itself, first


def test_socket_problems_come_back_to_the_client(served, monkeypatch):
    handled, hits, problems = _remote_search(served, monkeypatch, texts=["xe"], images=["photos/missing.jpg"])
    assert handled and len(hits) == 3
    assert [p.reason for p in problems] == ["no such file"]


def test_socket_errors_come_back_with_their_exit_status(served, monkeypatch):
    from mmtools.errors import MmtoolsError

    with pytest.raises(MmtoolsError, match="no index at") as caught:
        _remote_search(served, monkeypatch, texts=["xe"], index="nowhere.faiss")
    assert caught.value.exit_code == 3


def test_concurrent_socket_clients_each_get_their_own_answers(served, monkeypatch):
    from mmtools.serve import client

    monkeypatch.setenv("MMTOOLS_SERVER", str(served["socket"]))
    texts = [f"truy vấn số {i}" for i in range(16)]

    def ask(text):
        out = io.BytesIO()
        from mmtools.search_plan import SearchRequest

        request = SearchRequest(indexes=[str(served["root"] / "idx.faiss")], k=2, texts=[text], cwd=os.getcwd())
        client.call("search", {"request": request.to_json()}, None, out, lambda p: None)
        return [orjson.loads(line) for line in out.getvalue().splitlines()]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, texts))
    for text, answer in zip(texts, answers):
        assert_same_hits(answer, _local_search(served, [text], k=2))


def test_refused_request_falls_back(served, monkeypatch):
    """A server speaking another protocol version answers '!', and the client does the work itself."""
    from mmtools.serve import client, protocol

    with socketlib.socket(socketlib.AF_UNIX) as raw:
        raw.connect(str(served["socket"]))
        raw.sendall(b'{"v": 999, "op": "search"}\n')
        assert raw.makefile("rb").readline().startswith(protocol.REFUSED)
    monkeypatch.setenv("MMTOOLS_SERVER", str(served["socket"]))
    assert client.call("an-operation-from-the-future", {}, None, io.BytesIO(), lambda p: None) is False


def test_a_stuck_server_is_passed_by_and_the_inputs_stay_unread(tmp_path, monkeypatch):
    """A socket that is bound but never answers (a server stuck in start-up): the client works alone."""
    from mmtools.serve import client

    sock = tmp_path / "stuck.sock"
    listener = socketlib.socket(socketlib.AF_UNIX)
    listener.bind(str(sock))
    listener.listen(8)  # connections wait in the backlog; nobody accepts them
    monkeypatch.setenv("MMTOOLS_SERVER", str(sock))
    monkeypatch.setattr(client, "ACCEPT_TIMEOUT_S", 0.5)
    consumed = []

    def inputs():
        consumed.append(True)
        yield {"line": "xe"}

    try:
        started = time.monotonic()
        assert client.call("search", {"texts": ["x"]}, inputs(), io.BytesIO(), lambda p: None) is False
        assert time.monotonic() - started < 10 and not consumed
    finally:
        listener.close()


def test_no_server_means_no_client(tmp_path, monkeypatch):
    from mmtools.serve import client

    stale = tmp_path / "stale.sock"
    listener = socketlib.socket(socketlib.AF_UNIX)
    listener.bind(str(stale))
    listener.close()  # the file stays: what a killed server leaves
    for value in (str(stale), str(tmp_path / "absent.sock"), "off"):
        monkeypatch.setenv("MMTOOLS_SERVER", value)
        assert client.call("search", {"texts": ["x"]}, None, io.BytesIO(), lambda p: None) is False


def test_socket_embed_texts_gives_what_embed_texts_gives(served, monkeypatch):
    from mmtools.embed import embed_texts, text_items_from_lines
    from mmtools.models import load_encoder
    from mmtools.serve import client

    monkeypatch.setenv("MMTOOLS_SERVER", str(served["socket"]))
    texts = ["một con mèo", "xe hơi màu đỏ trên đường phố Hà Nội vào buổi sáng", "nhà"]
    items = list(text_items_from_lines((str(i), t) for i, t in enumerate(texts)))
    out = io.BytesIO()
    assert client.call("embed-texts", {"model": served["model"], "batch_size": 2}, 
                       ({"id": i.id, "text": i.text, "record": i.record} for i in items), out, lambda p: None)
    remote = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert_same_records(remote, list(embed_texts(items, load_encoder(served["model"], "cpu"))))


def test_an_updated_index_is_opened_again(served, monkeypatch, tmp_path):
    """A nightly `mmtools index` replaces the files; the warm server must not answer from the old copy."""
    import shutil

    from mmtools.index import index_records, metadata_path
    from mmtools.records import encode_vector

    copy = served["root"] / "copy.faiss"
    shutil.copy(served["root"] / "idx.faiss", copy)
    shutil.copy(metadata_path(served["root"] / "idx.faiss"), metadata_path(copy))
    shutil.copytree(f'{served["root"] / "idx.faiss"}.segments', f"{copy}.segments")  # the vectors
    from mmtools.models import load_encoder

    _, before, _ = _remote_search(served, monkeypatch, texts=["xe"], index=str(copy), k=100)
    query = load_encoder(served["model"], "cpu").encode_texts(["xe"])[0]  # the query's own vector: ranks first
    index_records([{"id": "new", "embedding": encode_vector(query), "embedding_model": served["model"]}], copy)
    _, after, _ = _remote_search(served, monkeypatch, texts=["xe"], index=str(copy), k=100)
    assert len(after) == len(before) + 1 and after[0]["id"] == "new"


def test_opening_a_big_index_holds_up_no_other_index(served, monkeypatch):
    """While one index takes long to open, a search of another is answered (no global lock around opening)."""
    import shutil

    import mmtools.index.store
    from mmtools.index import metadata_path
    from mmtools.serve.engine import Engine

    slow = served["root"] / "slow.faiss"
    shutil.copy(served["root"] / "idx.faiss", slow)
    shutil.copy(metadata_path(served["root"] / "idx.faiss"), metadata_path(slow))
    shutil.copytree(f'{served["root"] / "idx.faiss"}.segments', f"{slow}.segments")  # the vectors
    engine = Engine(device="cpu", indexes=[str(served["root"] / "idx.faiss")])
    engine.warm_up()
    opening, release = threading.Event(), threading.Event()
    real = mmtools.index.store.IndexReader

    def reader(path, *args, **kwargs):
        if Path(path).name == "slow.faiss":
            opening.set()
            release.wait(30)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(mmtools.index.store, "IndexReader", reader)  # what mmtools.index.backends opens
    from mmtools.search import Query

    with ThreadPoolExecutor(2) as pool:
        slow_search = pool.submit(lambda: list(engine.search(slow, [Query("q1", text="xe")], k=1)))
        assert opening.wait(10)
        other = pool.submit(lambda: list(engine.search(served["root"] / "idx.faiss", [Query("q1", text="xe")], k=1)))
        try:
            assert len(other.result(timeout=15)) == 1
        finally:
            release.set()
        assert len(slow_search.result(timeout=30)) == 1
    engine.close()


def test_a_model_retrained_in_place_is_followed(served, tmp_path):
    """Retrain into the same directory and rebuild the index: the warm engine answers as a fresh process."""
    import shutil

    from mmtools.embed import embed_images
    from mmtools.images import discover_images
    from mmtools.index import index_records
    from mmtools.models import ModelCache
    from mmtools.models.synthetic import build_random_model
    from mmtools.search import Query
    from mmtools.serve.engine import Engine

    model = tmp_path / "model"
    shutil.copytree(served["model"], model)
    photos = discover_images([str(served["root"] / "photos")])
    index_records(embed_images(photos, ModelCache().get(str(model), "cpu")), tmp_path / "idx.faiss")
    engine = Engine(device="cpu", indexes=[str(tmp_path / "idx.faiss")])
    engine.warm_up()
    before = list(engine.search(tmp_path / "idx.faiss", [Query("q1", text="xe hơi")], k=3))
    build_random_model(model, "siglip-tiny", seed=7)  # retrained in place
    retrained = ModelCache().get(str(model), "cpu")
    index_records(embed_images(discover_images([str(served["root"] / "photos")]), retrained),
                  tmp_path / "idx.faiss", rebuild=True)
    after = list(engine.search(tmp_path / "idx.faiss", [Query("q1", text="xe hơi")], k=3))
    from mmtools.index import IndexReader
    from mmtools.search import search

    with IndexReader(tmp_path / "idx.faiss") as reader:
        expected = list(search(reader, [Query("q1", text="xe hơi")], lambda: retrained, k=3))
    assert_same_hits(after, expected)
    assert [h["score"] for h in after] != [h["score"] for h in before]
    assert engine.health()["models"][str(model.resolve())]["fingerprint"] == retrained.fingerprint
    engine.close()


# ---------------------------------------------------------------------------------------------- HTTP


def _http(served):
    import httpx

    return httpx.Client(base_url=served["http"], timeout=30)


def test_http_health_and_openapi(served):
    with _http(served) as http:
        health = http.get("/health").json()
        assert health["status"] == "ok" and str(served["root"] / "idx.faiss") in health["indexes"]
        spec = http.get("/openapi.json").json()
        assert {"/health", "/search", "/embed", "/tag"} <= set(spec["paths"])
        assert "multipart/form-data" in spec["paths"]["/search"]["post"]["requestBody"]["content"]
        assert http.get("/docs").status_code == 200


def test_http_search_with_text_and_with_an_uploaded_image(served):
    image = sorted((served["root"] / "photos").iterdir())[1]
    with _http(served) as http:
        text = http.post("/search", json={"query": "xe hơi màu đỏ", "k": 3})
        assert text.status_code == 200
        # an HTTP client has no folder of the server's: paths are absolute
        assert_same_hits(text.json()["hits"], _local_search(served, ["xe hơi màu đỏ"], relative=False))
        upload = http.post("/search", files={"image": (image.name, image.read_bytes(), "image/jpeg")},
                           data={"k": "2", "index": "idx"})
        hits = upload.json()["hits"]
        assert upload.status_code == 200 and len(hits) == 2
        assert hits[0]["id"].endswith(f"/photos/{image.name}") and hits[0]["query"] == image.name


def test_http_embed_gives_cli_records(served):
    from mmtools.embed import embed_texts, text_items_from_lines
    from mmtools.models import load_encoder

    image = sorted((served["root"] / "photos").iterdir())[0]
    with _http(served) as http:
        texts = http.post("/embed", json={"texts": ["con mèo", "nhà"]})
        assert texts.status_code == 200
        items = text_items_from_lines([("0", "con mèo"), ("1", "nhà")])
        assert_same_records(texts.json()["records"], list(embed_texts(items, load_encoder(served["model"], "cpu"))))
        both = http.post("/embed", data={"texts": "con mèo"}, files=[("image", (image.name, image.read_bytes()))])
        records = both.json()["records"]
        assert [r["embedding_kind"] for r in records] == ["text", "image"]
        assert records[1]["id"] == image.name and records[1]["embedding_model"] == served["model"]


def test_http_tag_scores_every_label(served):
    image = sorted((served["root"] / "photos").iterdir())[0]
    with _http(served) as http:
        answer = http.post("/tag", data={"text": "chiếc xe hơi màu đỏ", "labels": "xe, nhà,mèo"},
                           files={"image": (image.name, image.read_bytes())})
        assert answer.status_code == 200
        tags = answer.json()["tags"]
        assert sorted(t["label"] for t in tags) == ["mèo", "nhà", "xe"]
        assert all(0 <= t["score"] <= 1 for t in tags) and tags == sorted(tags, key=lambda t: -t["score"])
        json_tags = http.post("/tag", json={"text": "xe", "labels": ["xe", "nhà"]}).json()["tags"]
        assert len(json_tags) == 2


@pytest.mark.parametrize("request_args, status", [
    (dict(content=b"{not json", headers={"content-type": "application/json"}), 400),
    (dict(json=["a list"]), 400),
    (dict(json={"query": "x", "k": 0}), 422),
    (dict(json={"query": "x", "k": "many"}), 422),
    (dict(json={}), 400),
    (dict(json={"query": "   "}), 422),
    (dict(json={"query": "x", "index": "other"}), 404),
    (dict(content=b"x", headers={"content-type": "text/plain"}), 415),
    (dict(files={"image": ("a.jpg", b"not an image")}), 422),
    (dict(files={"image": ("big.jpg", b"\0" * 300_000)}), 413),
    (dict(files={"photo": ("a.jpg", b"x")}), 400),
])
def test_http_bad_requests_get_a_clear_4xx(served, request_args, status):
    with _http(served) as http:
        answer = http.post("/search", **request_args)
    assert answer.status_code == status
    assert answer.json()["error"] and answer.json()["hint"]


@pytest.mark.parametrize("method, path, status, hint", [
    ("GET", "/nowhere", 404, "POST /search"), ("GET", "/search", 405, "POST /search"),
    ("POST", "/health", 405, "GET /health"), ("DELETE", "/tag", 405, "POST /tag"),
])
def test_unknown_routes_and_wrong_methods_answer_error_and_hint(served, method, path, status, hint):
    with _http(served) as http:
        answer = http.request(method, path)
    assert answer.status_code == status
    assert set(answer.json()) == {"error", "hint"} and hint in answer.json()["hint"]


def test_every_upload_route_honours_max_pixels(served):
    """2000x2000 pixels against the server's 1 MP limit: refused by /search as by /embed and /tag."""
    import io as iolib

    from PIL import Image

    buffer = iolib.BytesIO()
    Image.new("RGB", (2000, 2000), (200, 30, 30)).save(buffer, "PNG")
    upload = {"image": ("big.png", buffer.getvalue(), "image/png")}
    with _http(served) as http:
        answers = [http.post("/search", files=upload), http.post("/embed", files=upload),
                   http.post("/tag", files=upload, data={"labels": "xe,nhà"})]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert "pixels" in answer.json()["error"] and "1,000,000" in answer.json()["hint"]


def test_tag_labels_stay_in_memory_and_the_memory_is_bounded(served, monkeypatch):
    from mmtools.paths import cache_dir
    from mmtools.serve import engine as engine_module

    def cached_files():
        folder = cache_dir() / "zero-shot"
        return sorted(folder.iterdir()) if folder.exists() else []

    before = cached_files()
    monkeypatch.setattr(engine_module, "LABEL_CACHE_LABELS", 4)
    with _http(served) as http:
        for i in range(5):
            answer = http.post("/tag", json={"text": "xe", "labels": [f"nhãn {i}", f"thẻ {i}"]})
            assert answer.status_code == 200
        again = http.post("/tag", json={"text": "xe", "labels": ["nhãn 4", "thẻ 4"]})
    assert again.json()["tags"] == answer.json()["tags"]
    assert cached_files() == before  # no file per label list
    assert sum(len(key[1]) for key in served["engine"]._label_vectors) <= 4


def test_docs_page_needs_no_network(served):
    import re

    with _http(served) as http:
        page = http.get("/docs")
        assert page.status_code == 200
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
        assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
        for url in urls:
            if not url.startswith("data:"):
                assert http.get(url).status_code == 200, url


def test_http_tag_and_embed_refuse_bad_input(served):
    with _http(served) as http:
        assert http.post("/tag", json={"text": "x", "labels": []}).status_code == 422
        assert http.post("/tag", json={"labels": ["a"]}).status_code == 400
        assert http.post("/embed", json={"texts": []}).status_code == 400
        assert http.post("/embed", json={"texts": ["a"], "model": "someone/else"}).status_code == 404


def test_a_slow_http_client_does_not_block_others(served):
    """A client that sends half a body and stalls; meanwhile other requests are answered."""
    host, port = served["http"].removeprefix("http://").rsplit(":", 1)
    slow = socketlib.create_connection((host, int(port)))
    slow.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"query\": ")
    try:
        with _http(served) as http:
            assert http.post("/search", json={"query": "xe", "k": 1}).status_code == 200
    finally:
        slow.close()


def test_concurrent_http_clients_each_get_their_own_answers(served):
    texts = [f"ảnh số {i}" for i in range(12)]

    def ask(text):
        with _http(served) as http:
            return http.post("/search", json={"query": text, "k": 2}).json()["hits"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, texts))
    for text, answer in zip(texts, answers):
        assert_same_hits(answer, _local_search(served, [text], k=2, relative=False))


def test_socket_paths(monkeypatch, tmp_path):
    from mmtools.serve import paths

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("MMTOOLS_SERVER")
    assert paths.socket_path() == str(tmp_path / "mmtools" / "server.sock")
    monkeypatch.setenv("MMTOOLS_SERVER", "off")
    assert paths.client_disabled() and paths.socket_path("off") == str(tmp_path / "mmtools" / "server.sock")
    monkeypatch.setenv("MMTOOLS_SERVER", "/x/y.sock")
    assert paths.socket_path() == "/x/y.sock" and paths.socket_path("/a.sock") == "/a.sock"


def test_a_socket_folder_others_can_enter_is_refused(tmp_path):
    from mmtools.serve import paths

    open_folder = tmp_path / "shared"
    open_folder.mkdir(mode=0o777)
    open_folder.chmod(0o777)
    with pytest.raises(paths.UnsafeRuntimeDir):
        paths.ensure_private_dir(str(open_folder))
    private = tmp_path / "private"
    paths.ensure_private_dir(str(private))
    assert (private.stat().st_mode & 0o777) == 0o700


def test_a_replaced_index_copy_closes_once_its_last_search_is_done(tmp_path):
    """A write makes the server open the index again; a search still running on the old copy finishes on
    it, and the old copy is closed when that search is done (a Milvus reader holds a connection)."""
    import sqlite3

    import numpy as np

    from mmtools.index import index_records
    from mmtools.records import encode_vector
    from mmtools.serve.engine import Engine

    vectors = np.eye(8, dtype=np.float32)
    index = tmp_path / "idx.faiss"
    index_records([{"id": f"r{i}", "embedding": encode_vector(v), "embedding_model": "m"}
                   for i, v in enumerate(vectors[:4])], index)
    engine = Engine(device="cpu", indexes=[str(index)])
    try:
        with engine.reader(index) as held:
            old = held._reader
            index_records([{"id": "r4", "embedding": encode_vector(vectors[4]), "embedding_model": "m"}], index)
            with engine.reader(index) as fresh:
                new = fresh._reader
                assert new is not old and fresh.info.count == 5
            assert held.search(vectors[1:2], k=1)[0][0].id == "r1"  # the old copy still answers its search
        with pytest.raises(sqlite3.ProgrammingError):  # ...and is closed once that search is done
            old.connection.execute("SELECT 1")
        with engine.reader(index) as again:
            assert again._reader is new and again.search(vectors[4:5], k=1)[0][0].id == "r4"
    finally:
        engine.close()
