"""Search through the warm server in every mode, with --where filters and restored accents, as `mmtools search`
answers in-process: the same hits through the socket (the CLI forwarding to it) and through HTTP /search; on a
FAISS index and on a Milvus collection (the keyword channel is Milvus's BM25 there)."""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from typer.testing import CliRunner

from mmtools.cli import app

pytest.importorskip("fastapi")

runner = CliRunner()
CAPTIONS = [
    ("xe hơi màu đỏ đỗ bên đường", ["xe", "đường phố"]),
    ("chiếc xe máy màu xanh", ["xe"]),
    ("con mèo nằm trên ghế", ["mèo"]),
    ("bãi biển lúc hoàng hôn", ["biển"]),
    ("thuyền đánh cá trên biển", ["biển"]),
    ("người đàn ông chơi bóng chày", ["thể thao"]),
    ("xe buýt trên đường phố", ["xe", "đường phố"]),
    ("đĩa phở bò nóng", ["thức ăn"]),
    ("con chó chạy trên bãi biển", ["biển", "chó"]),
    ("cửa hàng bán hoa quả", ["chợ"]),
    ("xe đạp dựng trước nhà", ["xe"]),
    ("trẻ em chơi đá bóng", ["thể thao"]),
]


@pytest.fixture(scope="module", params=["faiss", "milvus"])
def served(tmp_path_factory, siglip_dir, request):
    """An index of 12 captioned pictures (so it holds texts: hybrid by default) and a server on it."""
    from PIL import Image

    from mmtools.embed import embed_images
    from mmtools.images import discover_images
    from mmtools.index import index_records
    from mmtools.models import load_encoder
    from mmtools.serve.engine import Engine

    from helpers.live_server import running_server

    root = tmp_path_factory.mktemp("served-modes")
    (root / "photos").mkdir()
    records = []
    for i, (caption, tags) in enumerate(CAPTIONS):
        path = root / "photos" / f"p{i:02d}.jpg"
        image = Image.new("RGB", (64, 48), (20 * i, 240 - 20 * i, 60 + 10 * i))
        image.paste((250 - 15 * i, 12 * i, 180), (3 * i, 4, 3 * i + 16, 30))
        image.save(path)
        records.append({"path": str(path), "caption": caption, "tags": tags, "year": 2010 + i})
    (root / "photos.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    embedded = list(embed_images(discover_images([str(root / "photos.jsonl")]), load_encoder(siglip_dir, "cpu")))
    if request.param == "milvus":
        pytest.importorskip("milvus_lite")
        index = f"milvus-lite://{root}/idx.db/photos"
    else:
        index = str(root / "idx.faiss")
    index_records(embedded, index)
    engine = Engine(device="cpu", indexes=[index])
    with running_server(engine, str(root / "s.sock")) as ready:
        yield {"root": root, "socket": root / "s.sock", "http": ready.http, "engine": engine, "index": index,
               "backend": request.param}


def searches(served) -> int:
    return served["engine"].health()["indexes"][served["index"]]["searches"]


def cli_search(served, monkeypatch, args, *, through_server):
    """`mmtools search ARGS -i IDX` as JSONL, answered by the server or in-process (MMTOOLS_SERVER=off);
    asserts which of the two answered."""
    monkeypatch.setenv("MMTOOLS_SERVER", str(served["socket"]) if through_server else "off")
    before = searches(served)
    result = runner.invoke(app, ["search", *args, "-i", served["index"], "-k", "5"], catch_exceptions=False)
    assert (searches(served) > before) == through_server, "the wrong side answered"
    return result.exit_code, [orjson.loads(line) for line in result.stdout.splitlines()], result.stderr


NUMBERS = ("score", "fusion", "scores")


def same_hits(got, expected):
    from mmtools.search import hit_value

    assert [{k: v for k, v in h.items() if k not in NUMBERS} for h in got] == \
        [{k: v for k, v in h.items() if k not in NUMBERS} for h in expected]
    assert [("score" in h, "fusion" in h) for h in got] == [("score" in h, "fusion" in h) for h in expected]
    assert all(abs(hit_value(a) - hit_value(b)) < 1e-5 for a, b in zip(got, expected))


@pytest.mark.parametrize("args", [
    ["xe hơi màu đỏ", "--mode", "keyword"],
    ["xe hoi", "--mode", "keyword"],  # folded: the keyword channel matches without accents
    ["bãi biển", "--mode", "hybrid"],
    ["con mèo"],  # the default: hybrid, since the index holds captions
    ["xe", "--mode", "vector"],
])
def test_every_mode_through_the_server_gives_the_clis_own_hits(served, monkeypatch, args):
    code, remote, _ = cli_search(served, monkeypatch, args, through_server=True)
    _, local, _ = cli_search(served, monkeypatch, args, through_server=False)
    assert code == 0 and remote
    same_hits(remote, local)
    if "vector" not in args:
        assert all("matched" in hit for hit in remote)
    if "keyword" in args:  # words that match, found by the words
        assert all(hit["matched"] == ["keyword"] and "[" in hit["snippet"] for hit in remote)


def test_where_through_the_server(served, monkeypatch):
    args = ["xe", "--where", "tags=xe", "--where", "year>=2015"]
    code, remote, _ = cli_search(served, monkeypatch, args, through_server=True)
    _, local, _ = cli_search(served, monkeypatch, args, through_server=False)
    assert code == 0
    same_hits(remote, local)
    assert {hit["caption"] for hit in remote} == {"xe buýt trên đường phố", "xe đạp dựng trước nhà"}
    code, remote, stderr = cli_search(served, monkeypatch, ["xe", "--where", "year"], through_server=True)
    assert code == 2 and remote == [] and "--where" in stderr
    none = ["xe", "--where", "tags=không có"]  # nothing meets it: no hits, and the same warning
    said = [cli_search(served, monkeypatch, none, through_server=side)[::2] for side in (True, False)]
    assert said[0] == said[1] and said[0][0] == 0
    assert f"warning: no record of {served['index']} meets --where tags=không có" in said[0][1]


def test_a_query_typed_without_accents_is_restored_by_the_server(served, monkeypatch):
    args = ["xe hoi mau do", "--mode", "vector"]
    _, remote, _ = cli_search(served, monkeypatch, args, through_server=True)
    _, local, _ = cli_search(served, monkeypatch, args, through_server=False)
    same_hits(remote, local)
    assert remote[0]["query_restored"] == "xe hơi màu đỏ" and remote[0]["query"] == "xe hoi mau do"
    _, plain, _ = cli_search(served, monkeypatch, [*args, "--no-restore"], through_server=True)
    assert "query_restored" not in plain[0]


def test_http_search_takes_mode_where_and_restore(served):
    import httpx

    from mmtools.text.restore import load_restorer

    with httpx.Client(base_url=served["http"], timeout=60) as http:
        answer = http.post("/search", json={"query": "bai bien", "k": 4, "mode": "hybrid",
                                            "where": ["tags=biển"]})
        assert answer.status_code == 200, answer.text
        hits = answer.json()["hits"]
        assert sorted(h["caption"] for h in hits) == sorted(c for c, tags in CAPTIONS if "biển" in tags)
        assert all("biển" in h["tags"] for h in hits) and hits[0]["query_restored"] == "bãi biển"
        form = http.post("/search", data={"query": "xe", "mode": "keyword", "where": ["tags=xe", "year<2012"]})
        found = [h["caption"] for h in form.json()["hits"]]
        if served["backend"] == "milvus":  # BM25 over a record's texts together: the order may differ
            found.sort(reverse=True)
        assert found == ["xe hơi màu đỏ đỗ bên đường", "chiếc xe máy màu xanh"]
        bad = http.post("/search", json={"query": "xe", "where": ["year"]})
        assert bad.status_code == 400 and bad.json()["error"].startswith("where:")
        unknown = http.post("/search", json={"query": "xe", "mode": "fuzzy"})
        assert unknown.status_code == 422
    assert load_restorer(served["index"]).restore("bai bien") == "bãi biển"


def test_a_filter_reads_the_records_once_per_state_of_the_index(served, monkeypatch):
    """The warm server keeps what --where selected for each opened state of an index: the same filter again
    reads no record (a scan of a million records takes seconds); another filter is selected anew."""
    from mmtools.search import Query

    engine = served["engine"]
    scans = []
    with engine._opened(served["index"]) as entry:
        real = entry.reader.scan
        monkeypatch.setattr(entry.reader, "scan", lambda: (scans.append(1), real())[1])

    def captions(where):
        return sorted(hit["caption"] for hit in engine.search(served["index"], [Query("q", text="xe")], k=12,
                                                                mode="keyword", where=where))
    first = captions(["tags=xe", "year>=2016"])  # a filter no other test asked for
    assert captions(["tags=xe", "year>=2016"]) == first == ["xe buýt trên đường phố", "xe đạp dựng trước nhà"]
    assert len(scans) == 1
    assert captions(["tags=xe", "year<2013"]) and len(scans) == 2
